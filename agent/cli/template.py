"""``--format`` templates: the Go text/template language as Docker users write it. Pure.

``Template(fmt)`` parses once; ``render_all(rows)`` runs it on each row. A format starting with
``table`` gets a header row (the template run with every field standing for its column's
title, as Docker's headers are made) and tab-separated columns aligned. ``\\t`` and ``\\n`` in
the format are a tab and a newline, as in Docker. The language is in ``template_parse`` and the
functions in ``template_funcs``; what a value prints as is Go's (``gofmt``).

Fields are looked up under their own name, then in snake_case (``{{.CurrentState}}`` reads
``current_state``). A missing key is ``<no value>`` as in Go; with ``missingkey="error"`` it is
an error, and with the CLI's ``missingkey="fields"`` only a missing Capitalised name is (it
names a field of the object, as Docker reports an unknown field), while a missing lower-case
key of user data (``{{.Spec.Labels.region}}``) prints ``<no value>``.
"""

from __future__ import annotations

import re
import typing
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from agent.cli.gofmt import NO_VALUE, go_type, table, text
from agent.cli.template_funcs import (
    FUNCTIONS,
    HEADER_IDENTITY,
    ArgTypeError,
    CallError,
    truth,
)
from agent.cli.template_parse import (
    Action,
    Command,
    Control,
    Dot,
    Field,
    Func,
    Jump,
    Literal,
    Node,
    Operand,
    Pipe,
    Sub,
    TemplateError,
    Var,
    parse,
    position,
)

__all__ = ["Template", "TemplateError"]

MissingKey = typing.Literal["default", "error", "fields"]


def _arity(name: str) -> tuple[int, int | None] | None:
    function = FUNCTIONS.get(name)
    return None if function is None else (function.least, function.most)


def _keys(name: str) -> tuple[str, str, str]:
    """Where a field is found: its own name, snake_case, lowerCamelCase (``timeNano``)."""
    return (name, snake(name), name[:1].lower() + name[1:])


def snake(name: str) -> str:
    """``CurrentState`` to ``current_state``, ``NodeID`` to ``node_id``."""
    name = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name)
    return re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", name).lower()


class _Header:
    """The data a table's header row runs on: it prints as nothing."""

    def __str__(self) -> str:
        return ""


class Template:
    """A parsed ``--format`` template; a ``table`` template also has a header row."""

    def __init__(
        self,
        fmt: str,
        headers: Mapping[str, str] | None = None,
        missingkey: MissingKey = "fields",
    ) -> None:
        self.table = fmt.startswith("table")
        body = fmt[len("table") :] if self.table else fmt
        self.text = body.strip(" ").replace("\\t", "\t").replace("\\n", "\n")
        self.headers = dict(headers or {})
        self.missingkey = missingkey
        self.tree = parse(self.text, _arity)

    def render_all(self, rows: Sequence[Any]) -> str:
        outputs = [self.execute(row) for row in rows]
        if not self.table:
            return "\n".join(outputs)
        lines = [self.header(), *outputs]
        return table([line.split("\t") for out in lines for line in out.split("\n")])

    def execute(self, row: Any) -> str:
        return _Run(self, row, header=False).output()

    def header(self) -> str:
        """The header row; as in Docker, a template failing on it leaves what it printed."""
        run = _Run(self, _Header(), header=True)
        try:
            return run.output()
        except TemplateError:
            return "".join(run.out)

    def title(self, path: tuple[str, ...]) -> str:
        """A column's title: the listing's own for a field it has, else ``NODE ID`` style."""
        if not path:
            return ""
        if len(path) == 1:
            for key in (path[0], snake(path[0])):
                if key in self.headers:
                    return self.headers[key]
        return snake(path[-1]).replace("_", " ").upper()


class _Break(Exception):
    pass


class _Continue(Exception):
    pass


class _Run:
    """One execution of a template on one piece of data."""

    def __init__(self, template: Template, root: Any, header: bool) -> None:
        self.template = template
        self.header = header
        self.vars: list[tuple[str, Any]] = [("$", root)]
        self.root = root
        self.out: list[str] = []

    def output(self) -> str:
        self.walk(self.template.tree, self.root)
        return "".join(self.out)

    def error(self, node: object, at: int, message: str) -> TemplateError:
        line, column = position(self.template.text, at)
        return TemplateError(f'template: :{line}:{column}: executing "" at <{node}>: {message}')

    # the tree
    def walk(self, nodes: Sequence[Node], dot: Any) -> None:
        for node in nodes:
            if isinstance(node, str):
                self.out.append(node)
            elif isinstance(node, Action):
                value = self.pipeline(node.pipe, dot)
                if not node.pipe.decls:
                    self.out.append(text(value))
            elif isinstance(node, Jump):
                raise _Break() if node.kind == "break" else _Continue()
            elif node.kind == "range":
                self.range(node, dot)
            else:
                mark = len(self.vars)
                value = self.pipeline(node.pipe, dot)
                if truth(value):
                    self.walk(node.body, value if node.kind == "with" else dot)
                elif node.orelse is not None:
                    self.walk(node.orelse, dot)
                del self.vars[mark:]

    def range(self, node: Control, dot: Any) -> None:
        pipe = node.pipe
        value = self.pipeline(Pipe((), False, pipe.cmds, pipe.at), dot)
        ran = False
        for key, elem in self.items(value, pipe):
            ran = True
            mark = len(self.vars)
            if len(pipe.decls) == 2:
                self.vars += [(pipe.decls[0], key), (pipe.decls[1], elem)]
            elif pipe.decls:
                self.vars.append((pipe.decls[0], elem))
            try:
                self.walk(node.body, elem)
            except _Break:
                break
            except _Continue:
                continue
            finally:
                del self.vars[mark:]
        if not ran and node.orelse is not None:
            self.walk(node.orelse, dot)

    def items(self, value: Any, pipe: Pipe) -> Iterator[tuple[Any, Any]]:
        if value is None or value is NO_VALUE:
            return iter(())
        if isinstance(value, list | tuple):
            return enumerate(value)
        if isinstance(value, Mapping):
            return ((k, value[k]) for k in sorted(value))
        if isinstance(value, int) and not isinstance(value, bool):
            return ((i, i) for i in range(value))
        if self.header and isinstance(value, str):
            return iter([(0, value)])
        raise self.error(pipe, pipe.at, f"range can't iterate over {text(value)}")

    # pipelines
    def pipeline(self, pipe: Pipe, dot: Any) -> Any:
        value: Any = None
        for i, cmd in enumerate(pipe.cmds):
            value = self.command(cmd, dot, (value,) if i else ())
        if pipe.assign:
            name = pipe.decls[0]
            index = max(i for i, (n, _) in enumerate(self.vars) if n == name)
            self.vars[index] = (name, value)
        else:
            self.vars += [(name, value) for name in pipe.decls]
        return value

    def command(self, cmd: Command, dot: Any, piped: tuple[Any, ...]) -> Any:
        head = cmd.args[0]
        if isinstance(head, Func):
            return self.call(head, cmd, cmd.args[1:], dot, piped)
        return self.operand(head, dot)

    def operand(self, node: Operand, dot: Any) -> Any:
        if isinstance(node, Func):
            return self.call(node, node, (), dot, ())
        if isinstance(node, Literal):
            return node.value
        if isinstance(node, Dot):
            return dot
        if isinstance(node, Field):
            return self.fields(node, dot, node.path)
        if isinstance(node, Var):
            return (
                self.fields(node, self.variable(node), node.path)
                if node.path
                else self.variable(node)
            )
        value = self.pipeline(node.pipe, dot)
        return self.fields(node, value, node.path) if node.path else value

    def variable(self, node: Var) -> Any:
        for name, value in reversed(self.vars):
            if name == node.name:
                return value
        # declared in an {{if}}'s body and read in its {{else}}, as Go allows
        raise self.error(node, node.at, f"undefined variable: {node.name}")

    def fields(self, node: Field | Var | Sub, value: Any, path: tuple[str, ...]) -> Any:
        if self.header:
            return self.template.title(path)
        for name in path:
            if isinstance(value, Mapping):
                key = next((k for k in _keys(name) if k in value), None)
                if key is not None:
                    value = value[key]
                elif self._missing_is_error(name):
                    raise self.error(node, node.at, f'map has no entry for key "{name}"')
                else:
                    value = NO_VALUE
            elif value is None or value is NO_VALUE:
                raise self.error(node, node.at, f"nil pointer evaluating interface {{}}.{name}")
            else:
                message = f"can't evaluate field {name} in type {go_type(value)}"
                raise self.error(node, node.at, message)
        return value

    def _missing_is_error(self, name: str) -> bool:
        mode = self.template.missingkey
        return mode == "error" or (mode == "fields" and name[:1].isupper())

    def call(
        self,
        func: Func,
        cmd: Command | Func,
        operands: Sequence[Operand],
        dot: Any,
        piped: tuple[Any, ...],
    ) -> Any:
        name = func.name
        if name in ("and", "or"):
            return self.logic(name == "and", operands, dot, piped)
        args = [self.operand(a, dot) for a in operands] + list(piped)
        if self.header and name in HEADER_IDENTITY:
            return args[0]
        function: Callable[..., Any] = FUNCTIONS[name].call
        try:
            return function(*args)
        except CallError as exc:
            raise self.error(cmd, cmd.at, f"error calling {name}: {exc}") from None
        except ArgTypeError as exc:
            raise self.error(cmd, cmd.at, str(exc)) from None

    def logic(
        self, is_and: bool, operands: Sequence[Operand], dot: Any, piped: tuple[Any, ...]
    ) -> Any:
        """Go's ``and``/``or``: the first false (true) argument, else the last; lazily."""
        value: Any = None
        for i in range(len(operands) + len(piped)):
            value = self.operand(operands[i], dot) if i < len(operands) else piped[0]
            if truth(value) != is_and:
                return value
        return value
        return value
