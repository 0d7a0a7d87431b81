"""The parse tree of a Go template, and the parser that builds it. Pure: no I/O.

Text and actions (``{{...}}``, with ``{{-`` and ``-}}`` trimming the space beside them, and
``{{/* comments */}}``); ``if``/``else if``/``else``, ``range`` (with ``$i, $v :=``, ``break``
and ``continue``), ``with``; variables ``$``, ``$x := ...``, ``$x = ...``; pipelines
``a | b``, parenthesised pipelines with fields after them; string, raw string, character,
number, boolean and nil literals. Errors read as Go's: ``template: :LINE: reason``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from agent.model.errors import ShoalError

__all__ = [
    "Action",
    "Command",
    "Control",
    "Dot",
    "Field",
    "Func",
    "Jump",
    "Literal",
    "Node",
    "Pipe",
    "Sub",
    "TemplateError",
    "Var",
    "parse",
]


class TemplateError(ShoalError):
    """A template that cannot be parsed or cannot run on the data it was given."""


def position(text: str, at: int) -> tuple[int, int]:
    """The line (from 1) and the column (from 0, as Go counts) of offset ``at``."""
    return text.count("\n", 0, at) + 1, at - (text.rfind("\n", 0, at) + 1)


# operands -----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Field:
    path: tuple[str, ...]
    at: int

    def __str__(self) -> str:
        return "." + ".".join(self.path)


@dataclass(frozen=True, slots=True)
class Dot:
    at: int

    def __str__(self) -> str:
        return "."


@dataclass(frozen=True, slots=True)
class Var:
    name: str
    path: tuple[str, ...]
    at: int

    def __str__(self) -> str:
        return "".join([self.name, *("." + p for p in self.path)])


@dataclass(frozen=True, slots=True)
class Literal:
    value: Any
    source: str
    at: int

    def __str__(self) -> str:
        return self.source


@dataclass(frozen=True, slots=True)
class Func:
    name: str
    at: int

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True, slots=True)
class Sub:
    """A parenthesised pipeline, maybe followed by fields: ``(index .Ports 0).PublishedPort``."""

    pipe: Pipe
    path: tuple[str, ...]
    at: int

    def __str__(self) -> str:
        return "".join([f"({self.pipe})", *("." + p for p in self.path)])


Operand = Field | Dot | Var | Literal | Func | Sub


@dataclass(frozen=True, slots=True)
class Command:
    args: tuple[Operand, ...]
    at: int

    def __str__(self) -> str:
        return " ".join(str(a) for a in self.args)


@dataclass(frozen=True, slots=True)
class Pipe:
    decls: tuple[str, ...]
    assign: bool  # ``$x = ...`` (set an existing variable) rather than ``$x := ...``
    cmds: tuple[Command, ...]
    at: int

    def __str__(self) -> str:
        decl = ", ".join(self.decls) + (" = " if self.assign else " := ") if self.decls else ""
        return decl + " | ".join(str(c) for c in self.cmds)


# the tree -----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Action:
    pipe: Pipe


@dataclass(frozen=True, slots=True)
class Control:
    kind: str  # "if", "range" or "with"
    pipe: Pipe
    body: tuple[Node, ...]
    orelse: tuple[Node, ...] | None


@dataclass(frozen=True, slots=True)
class Jump:
    kind: str  # "break" or "continue"


Node = str | Action | Control | Jump


# the lexer ----------------------------------------------------------------------------------
_TOKEN = re.compile(
    r"""(?P<field>\.[^\W\d]\w*)
      | (?P<declare>:=)
      | (?P<var>\$\w*)
      | (?P<string>"(?:[^"\\]|\\.)*")
      | (?P<raw>`[^`]*`)
      | (?P<char>'(?:[^'\\]|\\.)+')
      | (?P<number>[+-]?(?:0[xXoObB][0-9a-fA-F_]+|(?:\d[\d_]*(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?))
      | (?P<dot>\.)
      | (?P<ident>[^\W\d]\w*)
      | (?P<punct>[|(),=])
    """,
    re.VERBOSE | re.DOTALL,
)
_SPACE = " \t\r\n"
KEYWORDS = frozenset(
    {"if", "else", "end", "range", "with", "break", "continue", "define", "template", "block"}
)
_ESCAPE = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v"}
_ESCAPE |= {"\\": "\\", "'": "'", '"': '"'}


@dataclass(frozen=True, slots=True)
class Token:
    kind: str
    text: str
    at: int
    spaced: bool  # space before it: operands are separated by space, fields chain without


def unquote(quoted: str) -> str:
    """A Go string or character literal's value; ValueError when malformed."""
    body, out, i = quoted[1:-1], [], 0
    while i < len(body):
        char = body[i]
        if char != "\\":
            out.append(char)
            i += 1
            continue
        code = body[i + 1 : i + 2]
        if code in _ESCAPE:
            out.append(_ESCAPE[code])
            i += 2
            continue
        size = {"x": 2, "u": 4, "U": 8}.get(code)
        digits = body[i + 2 : i + 2 + size] if size else body[i + 1 : i + 4]
        base = 16 if size else 8
        if len(digits) != (size or 3) or not all(
            d in "0123456789abcdefABCDEF"[:base] for d in digits
        ):
            raise ValueError(quoted)
        out.append(chr(int(digits, base)))
        i += 2 + size if size else 4
    return "".join(out)


class _Lexer:
    """Splits a template into text and the tokens of each action."""

    def __init__(self, text: str) -> None:
        self.text = text

    def error(self, at: int, message: str) -> TemplateError:
        return TemplateError(f"template: :{position(self.text, at)[0]}: {message}")

    def items(self) -> list[tuple[str, int] | list[Token]]:
        """Texts (with their offset) and actions (their tokens, ending in a "}}" token)."""
        text, pos = self.text, 0
        items: list[tuple[str, int] | list[Token]] = []
        trim_next = False
        while (start := text.find("{{", pos)) >= 0:
            literal = text[pos:start]
            body = start + 2
            if text.startswith("-", body) and text[body + 1 : body + 2] in tuple(_SPACE):
                literal, body = literal.rstrip(_SPACE), body + 2
            if trim_next:
                literal = literal.lstrip(_SPACE)
            items.append((literal, pos))
            tokens, pos, trim_next = self._action(body, start)
            if tokens:
                items.append(tokens)
        literal = text[pos:]
        items.append((literal.lstrip(_SPACE) if trim_next else literal, pos))
        return [item for item in items if not isinstance(item, tuple) or item[0]]

    def _action(self, pos: int, start: int) -> tuple[list[Token], int, bool]:
        """The tokens of the action from ``pos``, where the text resumes, whether it trims."""
        text = self.text
        skipped = pos
        while pos < len(text) and text[pos] in _SPACE:
            pos += 1
        if text.startswith("/*", pos):
            return self._comment(pos)
        tokens: list[Token] = []
        while True:
            spaced = pos > skipped
            if text.startswith("}}", pos):
                tokens.append(Token("end", "}}", pos, spaced))
                return tokens, pos + 2, False
            if spaced and text.startswith("-}}", pos):
                tokens.append(Token("end", "}}", pos, spaced))
                return tokens, pos + 3, True
            if pos >= len(text):
                raise self.error(start, "unclosed action")
            match = _TOKEN.match(text, pos)
            if match is None:
                raise self.error(pos, f"unrecognized character in action: {_rune(text[pos])}")
            kind = match.lastgroup or ""
            if kind == "ident" and match.group() in KEYWORDS:
                kind = "keyword"
            elif kind == "ident" and match.group() in ("true", "false", "nil"):
                kind = match.group() if match.group() == "nil" else "bool"
            elif kind == "punct":
                kind = match.group()
            tokens.append(Token(kind, match.group(), pos, spaced))
            pos = skipped = match.end()
            while pos < len(text) and text[pos] in _SPACE:
                pos += 1

    def _comment(self, pos: int) -> tuple[list[Token], int, bool]:
        end = self.text.find("*/", pos + 2)
        if end < 0:
            raise self.error(pos, "unclosed comment")
        after = end + 2
        if self.text.startswith("}}", after):
            return [], after + 2, False
        if self.text[after : after + 1] in tuple(_SPACE) and self.text.startswith("-}}", after + 1):
            return [], after + 4, True
        raise self.error(pos, "comment ends before closing delimiter")


def _rune(char: str) -> str:
    return f"U+{ord(char):04X} {char!r}"


# the parser ---------------------------------------------------------------------------------
Arity = Callable[[str], tuple[int, int | None] | None]  # a function's (least, most) args


def parse(text: str, arity: Arity) -> tuple[Node, ...]:
    """``text`` as a tree; ``arity`` says which functions exist and how many args they take."""
    return _Parser(text, arity).parse()


class _Parser:
    def __init__(self, text: str, arity: Arity) -> None:
        self.text = text
        self.lexer = _Lexer(text)
        self.arity = arity
        self.items = self.lexer.items()
        self.next_item = 0
        self.vars = ["$"]
        self.ranges = 0
        self.tokens: list[Token] = []
        self.i = 0

    def error(self, at: int, message: str) -> TemplateError:
        return self.lexer.error(at, message)

    def parse(self) -> tuple[Node, ...]:
        nodes, stop = self._list()
        if stop is not None:
            raise self.error(stop[0].at, f"unexpected {{{{{stop[0].text}}}}}")
        return nodes

    def _list(self) -> tuple[tuple[Node, ...], list[Token] | None]:
        """Nodes up to an ``end`` or ``else`` (returned with its tokens) or the end of text."""
        nodes: list[Node] = []
        while self.next_item < len(self.items):
            item = self.items[self.next_item]
            self.next_item += 1
            if isinstance(item, tuple):
                nodes.append(item[0])
                continue
            self.tokens, self.i = item, 0
            first = item[0]
            if first.kind == "keyword" and first.text in ("end", "else"):
                return tuple(nodes), item
            nodes.append(self._action(first))
        return tuple(nodes), None

    def _take(self) -> Token:
        token = self.tokens[self.i]
        self.i += 1
        return token

    def _peek(self) -> Token:
        return self.tokens[self.i]

    def _action(self, first: Token) -> Node:
        if first.kind != "keyword":
            return Action(self._pipeline("command"))
        self.i += 1
        if first.text in ("if", "range", "with"):
            return self._control(first)
        if first.text in ("break", "continue"):
            if not self.ranges:
                raise self.error(first.at, f"{{{{{first.text}}}}} outside {{{{range}}}}")
            if self._peek().kind != "end":
                raise self.error(first.at, f"unexpected {self._peek().text} in {first.text}")
            return Jump(first.text)
        raise self.error(first.at, f"{{{{{first.text}}}}} is not supported")

    def _control(self, keyword: Token) -> Control:
        kind = keyword.text
        mark = len(self.vars)
        pipe = self._pipeline(kind)
        self.ranges += kind == "range"
        body, stop = self._list()
        self.ranges -= kind == "range"
        orelse: tuple[Node, ...] | None = None
        if stop is None:
            raise self.error(len(self.text), "unexpected EOF")
        if stop[0].text == "else":
            self.tokens, self.i = stop, 1
            chained = self._peek()
            if chained.kind == "keyword" and chained.text in ("if", "with"):
                self.i += 1
                orelse = (self._control(chained),)
            else:
                if chained.kind != "end":
                    raise self.error(chained.at, f"unexpected {chained.text!r} in else")
                orelse, stop = self._list()
                if stop is None:
                    raise self.error(len(self.text), "unexpected EOF")
                if stop[0].text != "end":
                    raise self.error(stop[0].at, "expected end; found {{else}}")
        elif len(stop) > 2:
            raise self.error(stop[1].at, f"unexpected {stop[1].text!r} in end")
        del self.vars[mark:]
        return Control(kind, pipe, body, orelse)

    def _pipeline(self, context: str) -> Pipe:
        """A pipeline up to the action's end (or, in parentheses, the closing one)."""
        start = self._peek().at
        decls, assign = self._decls(context)
        closer = ")" if context == "paren" else "end"
        cmds: list[Command] = []
        while True:
            token = self._peek()
            if token.kind == "|":
                raise self.error(token.at, "missing command before |")
            if token.kind in (closer, "end", ")"):
                break
            cmds.append(self._command(len(cmds)))
            if self._peek().kind == "|":
                self._take()
        token = self._peek()
        if token.kind != closer:
            what = "unclosed left paren" if closer == ")" else f"unexpected {token.text!r}"
            raise self.error(token.at, what)
        if context == "paren":
            self._take()
        if not cmds:
            raise self.error(start, "missing value for " + context)
        self.vars.extend(d for d in decls if not assign)
        return Pipe(decls, assign, tuple(cmds), start)

    def _decls(self, context: str) -> tuple[tuple[str, ...], bool]:
        t = self.tokens[self.i :]
        if len(t) > 1 and t[0].kind == "var" and t[1].kind in ("declare", "="):
            if t[1].kind == "=" and t[0].text not in self.vars:
                raise self.error(t[0].at, f"undefined variable {t[0].text!r}".replace("'", '"'))
            self.i += 2
            return (t[0].text,), t[1].kind == "="
        if len(t) > 3 and t[0].kind == "var" and t[1].kind == "," and t[2].kind == "var":
            if context != "range":
                raise self.error(t[1].at, f"too many declarations in {context}")
            if t[3].kind != "declare":
                raise self.error(t[3].at, "expected :=")
            self.i += 4
            return (t[0].text, t[2].text), False
        return (), False

    def _command(self, stage: int) -> Command:
        args: list[Operand] = []
        while self._peek().kind not in ("end", "|", ")"):
            token = self._peek()
            if args and not token.spaced:
                raise self.error(token.at, f"unexpected {token.text!r} in operand")
            args.append(self._operand())
        head = args[0]
        if not isinstance(head, Func) and (len(args) > 1 or stage):
            raise self.error(head.at, f"can't give argument to non-function {head}")
        if isinstance(head, Literal) and head.value is None:
            raise self.error(head.at, "nil is not a command")
        if isinstance(head, Func):
            self._check_arity(head, len(args) - 1 + (1 if stage else 0))
        for arg in args[1:]:
            if isinstance(arg, Func):
                self._check_arity(arg, 0)
        return Command(tuple(args), head.at)

    def _check_arity(self, func: Func, count: int) -> None:
        least, most = self.arity(func.name) or (0, None)
        if count < least or (most is not None and count > most):
            want = f"at least {least}" if most is None else str(most)
            line, column = position(self.text, func.at)
            raise TemplateError(
                f'template: :{line}:{column}: executing "" at <{func.name}>: '
                f"wrong number of args for {func.name}: want {want} got {count}"
            )

    def _operand(self) -> Operand:
        token = self._take()
        kind, at = token.kind, token.at
        if kind == "field":
            return Field(self._fields(token.text[1:]), at)
        if kind == "dot":
            return Dot(at)
        if kind == "var":
            if token.text not in self.vars:
                raise self.error(at, f'undefined variable "{token.text}"')
            return Var(token.text, self._fields(), at)
        if kind == "(":
            pipe = self._pipeline("paren")
            return Sub(pipe, self._fields(), at)
        if kind == "ident":
            if self.arity(token.text) is None:
                raise self.error(at, f'function "{token.text}" not defined')
            return Func(token.text, at)
        literal = self._literal(token)
        if self._peek().kind == "field" and not self._peek().spaced:
            raise self.error(self._peek().at, f"unexpected . after term {token.text!r}")
        return literal

    def _fields(self, *first: str) -> tuple[str, ...]:
        path = list(first)
        while self._peek().kind == "field" and not self._peek().spaced:
            path.append(self._take().text[1:])
        return tuple(path)

    def _literal(self, token: Token) -> Literal:
        kind, source, at = token.kind, token.text, token.at
        try:
            if kind == "string":
                return Literal(unquote(source), source, at)
            if kind == "char":
                value = unquote(source)
                if len(value) != 1:
                    raise ValueError(source)
                return Literal(ord(value), source, at)
        except ValueError:
            raise self.error(at, f"malformed string {source}") from None
        if kind == "raw":
            return Literal(source[1:-1], source, at)
        if kind == "number":
            return Literal(_number(source), source, at)
        if kind == "bool":
            return Literal(source == "true", source, at)
        if kind == "nil":
            return Literal(None, source, at)
        if kind == "keyword":
            raise self.error(at, f"unexpected <{source}> in command")
        raise self.error(at, f"unexpected {source!r} in command")


def _number(source: str) -> int | float:
    try:
        return int(source, 0)
    except ValueError:
        pass
    try:
        return int(source.replace("_", ""))
    except ValueError:
        return float(source.replace("_", ""))
