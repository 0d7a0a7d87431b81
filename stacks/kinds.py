"""The building blocks of the stack file schema.

A :class:`Kind` checks one located value and returns it in canonical form (ints for
durations and sizes, lists for string-or-list keys, mappings for list-or-mapping keys), or
records an error in the :class:`Ctx` and returns None. Checking goes on after an error, so
one pass reports every problem in a file.
"""

from __future__ import annotations

import difflib
import re
import shlex
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from stacks.errors import StackError, StackWarning
from stacks.node import Node, describe

__all__ = [
    "Bool",
    "Command",
    "Ctx",
    "Deprecated",
    "Float",
    "Forbidden",
    "Ignored",
    "Int",
    "KeyValues",
    "Kind",
    "ListOf",
    "MapOf",
    "Obj",
    "Parsed",
    "Str",
    "StrList",
    "join",
]


def join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _last_key(path: str) -> str:
    return path.rsplit(".", 1)[-1]


@dataclass
class Ctx:
    """What a check pass found: errors, warnings, and keys that are ignored."""

    errors: list[StackError] = field(default_factory=list)
    warnings: list[StackWarning] = field(default_factory=list)
    unsupported: dict[str, None] = field(default_factory=dict)
    deprecated: dict[str, str] = field(default_factory=dict)

    def fail(self, node: Node, path: str, message: str) -> None:
        self.errors.append(node.error(path, message))

    def warn(self, node: Node, path: str, message: str) -> None:
        self.warnings.append(node.warning(path, message))


class Kind:
    def check(self, node: Node, path: str, ctx: Ctx) -> Node | None:
        raise NotImplementedError


def suggest(word: str, candidates: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def _choices(choices: Iterable[str]) -> str:
    return ", ".join(repr(c) for c in choices)


class Str(Kind):
    def __init__(
        self, *, numbers: bool = False, nonempty: bool = False, choices: tuple[str, ...] = ()
    ) -> None:
        self.numbers = numbers
        self.nonempty = nonempty
        self.choices = choices

    def check(self, node: Node, path: str, ctx: Ctx) -> Node | None:
        value = node.value
        if isinstance(value, int | float) and not isinstance(value, bool) and self.numbers:
            value = node.raw or str(value)
        if not isinstance(value, str):
            expected = f"one of {_choices(self.choices)}" if self.choices else "a string"
            ctx.fail(node, path, f"expected {expected}, found {describe(node)}")
            return None
        if self.choices and value not in self.choices:
            ctx.fail(
                node,
                path,
                f"expected one of {_choices(self.choices)}, found "
                f"{describe(value)}{suggest(value, self.choices)}",
            )
            return None
        if self.nonempty and not value.strip():
            ctx.fail(node, path, "expected a non-empty string")
            return None
        return node.with_value(value)


_INT = re.compile(r"^\s*[-+]?\d{1,30}\s*$")
_FLOAT = re.compile(r"^\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*$")
_TRUE = ("y", "yes", "true", "on")
_FALSE = ("n", "no", "false", "off")


class Int(Kind):
    """An integer; a string of digits is accepted too (variables substitute to strings).

    Without bounds, integers stay within 64 bits so that specs encode with msgpack.
    """

    def __init__(self, *, min: int | None = None, max: int | None = None) -> None:
        self.min = min
        self.max = max

    def check(self, node: Node, path: str, ctx: Ctx) -> Node | None:
        value = node.value
        if isinstance(value, str) and _INT.match(value):
            value = int(value)
        if not isinstance(value, int) or isinstance(value, bool):
            ctx.fail(node, path, f"expected an integer, found {describe(node)}")
            return None
        if not -(2**63) <= value < 2**63:
            ctx.fail(node, path, f"expected an integer that fits in 64 bits, found {value}")
            return None
        return _in_range(node, path, ctx, value, self.min, self.max, "an integer")


class Float(Kind):
    def __init__(self, *, min: float | None = None, max: float | None = None) -> None:
        self.min = min
        self.max = max

    def check(self, node: Node, path: str, ctx: Ctx) -> Node | None:
        value = node.value
        if isinstance(value, str) and _FLOAT.match(value):
            value = float(value)
        if not isinstance(value, int | float) or isinstance(value, bool) or value != value:
            ctx.fail(node, path, f"expected a number, found {describe(node)}")
            return None
        return _in_range(node, path, ctx, float(value), self.min, self.max, "a number")


def _in_range(
    node: Node,
    path: str,
    ctx: Ctx,
    value: float,
    low: float | None,
    high: float | None,
    what: str,
) -> Node | None:
    if (low is not None and value < low) or (high is not None and value > high):
        bounds = (
            f"between {low} and {high}"
            if low is not None and high is not None
            else f">= {low}"
            if low is not None
            else f"<= {high}"
        )
        ctx.fail(node, path, f"expected {what} {bounds}, found {describe(node)}")
        return None
    return node.with_value(value)


class Bool(Kind):
    def check(self, node: Node, path: str, ctx: Ctx) -> Node | None:
        value = node.value
        if isinstance(value, str) and value.lower() in _TRUE + _FALSE:
            value = value.lower() in _TRUE
        if not isinstance(value, bool):
            ctx.fail(node, path, f"expected true or false, found {describe(node)}")
            return None
        return node.with_value(value)


class Parsed(Kind):
    """A scalar turned into a canonical value by a parser that raises ValueError."""

    def __init__(self, parse: Callable[[object], object]) -> None:
        self.parse = parse

    def check(self, node: Node, path: str, ctx: Ctx) -> Node | None:
        value = node.value
        if isinstance(value, dict | list) or value is None:
            ctx.fail(node, path, f"expected a value, found {describe(node)}")
            return None
        try:
            return node.with_value(self.parse(value))
        except ValueError as exc:
            ctx.fail(node, path, str(exc))
            return None


def _scalar_text(node: Node) -> str | None:
    """The text of a string, number or boolean scalar (as written for numbers)."""
    value = node.value
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return node.raw if node.raw is not None else str(value).lower()
    if isinstance(value, int | float):
        return node.raw if node.raw is not None else str(value)
    return None


class StrList(Kind):
    """A list of strings (numbers allowed); with ``single``, a lone string is a list of one."""

    def __init__(self, *, single: bool = False, nonempty: bool = False) -> None:
        self.single = single
        self.nonempty = nonempty

    def check(self, node: Node, path: str, ctx: Ctx) -> Node | None:
        if self.single and isinstance(node.value, str):
            node = node.with_value([node])
        if not isinstance(node.value, list):
            expected = "a string or a list of strings" if self.single else "a list of strings"
            ctx.fail(node, path, f"expected {expected}, found {describe(node)}")
            return None
        items = []
        for i, item in enumerate(node.value):
            text = _scalar_text(item)
            if text is None or (self.nonempty and not text):
                ctx.fail(item, f"{path}[{i}]", f"expected a string, found {describe(item)}")
                continue
            items.append(item.with_value(text))
        return node.with_value(items)


class Command(Kind):
    """A command as a list of arguments; a string is split like a POSIX shell would."""

    def check(self, node: Node, path: str, ctx: Ctx) -> Node | None:
        if isinstance(node.value, str):
            try:
                words = shlex.split(node.value)
            except ValueError as exc:
                ctx.fail(node, path, f"cannot split the command into words: {exc}")
                return None
            return node.with_value([node.with_value(w) for w in words])
        return StrList().check(node, path, ctx) if node.value is not None else None


class KeyValues(Kind):
    """A mapping of strings, written as a mapping or as a list of ``KEY=VALUE``.

    With ``allow_null`` a key without a value maps to None (environment variables to take
    from the deploying environment); otherwise it maps to "".
    """

    def __init__(self, *, allow_null: bool = False, list_ok: bool = True) -> None:
        self.allow_null = allow_null
        self.list_ok = list_ok

    def check(self, node: Node, path: str, ctx: Ctx) -> Node | None:
        out: dict[str, Node] = {}
        empty = None if self.allow_null else ""
        if isinstance(node.value, dict):
            for key, item in node.value.items():
                if item.tag == "reset":
                    out[key] = item
                    continue
                text = _scalar_text(item)
                if text is None and item.value is not None:
                    ctx.fail(
                        item,
                        join(path, key),
                        f"expected a string, number or boolean, found {describe(item)}",
                    )
                    continue
                out[key] = item.with_value(empty if text is None else text)
        elif isinstance(node.value, list) and self.list_ok:
            for i, item in enumerate(node.value):
                if not isinstance(item.value, str) or not item.value.split("=", 1)[0]:
                    ctx.fail(
                        item,
                        f"{path}[{i}]",
                        f"expected a string like 'KEY=VALUE', found {describe(item)}",
                    )
                    continue
                key, sep, value = item.value.partition("=")
                out[key] = item.with_value(value if sep else empty)
        else:
            shape = "a mapping or a list of 'KEY=VALUE' strings" if self.list_ok else "a mapping"
            ctx.fail(node, path, f"expected {shape}, found {describe(node)}")
            return None
        return node.with_value(out)


class Ignored(Kind):
    """A key shoal accepts and ignores, as ``docker stack deploy`` does; it is warned about."""

    def check(self, node: Node, path: str, ctx: Ctx) -> Node | None:
        ctx.unsupported[_last_key(path)] = None
        return None


class Deprecated(Kind):
    def __init__(self, reason: str) -> None:
        self.reason = reason

    def check(self, node: Node, path: str, ctx: Ctx) -> Node | None:
        ctx.deprecated[_last_key(path)] = self.reason
        return None


class Forbidden(Kind):
    def __init__(self, reason: str) -> None:
        self.reason = reason

    def check(self, node: Node, path: str, ctx: Ctx) -> Node | None:
        ctx.fail(node, path, f"unsupported option: {self.reason}")
        return None


Post = Callable[[Node, str, Ctx], Node | None]


class Obj(Kind):
    """A mapping with known keys; ``x-`` keys are extensions and are dropped."""

    def __init__(
        self,
        fields: Mapping[str, Kind],
        *,
        required: tuple[str, ...] = (),
        null_ok: bool = False,
        post: Post | None = None,
    ) -> None:
        self.fields = fields
        self.required = required
        self.null_ok = null_ok
        self.post = post
        self.known = [k for k, v in fields.items() if not isinstance(v, Ignored | Deprecated)]

    def check(self, node: Node, path: str, ctx: Ctx) -> Node | None:
        if node.value is None and self.null_ok:
            node = node.with_value({})
        if not isinstance(node.value, dict):
            ctx.fail(node, path, f"expected a mapping, found {describe(node)}")
            return None
        out: dict[str, Node] = {}
        complete = True
        for key, child in node.value.items():
            kind = self.fields.get(key)
            if child.tag == "reset":  # removes the key when files merge
                if key in self.required or self.post is not None:
                    ctx.fail(child, join(path, key), "!reset cannot be used here")
                    complete = False
                else:
                    out[key] = child
                continue
            if child.tag == "invalid":  # a variable failed to substitute; already reported
                complete = False
                continue
            if kind is None:
                if not key.startswith("x-"):
                    ctx.fail(
                        child, join(path, key), f"unknown key {key!r}{suggest(key, self.known)}"
                    )
                continue
            result = kind.check(child, join(path, key), ctx)
            if result is not None:
                out[key] = result
            elif not isinstance(kind, Ignored | Deprecated):
                complete = False
        missing = [key for key in self.required if key not in node.value]
        for key in missing:
            ctx.fail(node, path, f"missing required key {key!r}")
        if any(key not in out for key in self.required):
            return None  # missing, or already reported as malformed
        result_node = node.with_value(out)
        if self.post is not None and complete:
            return self.post(result_node, path, ctx)
        return result_node


class MapOf(Kind):
    """A mapping of user-chosen names to values of one kind."""

    def __init__(self, kind: Kind, *, name: Callable[[str], str | None] | None = None) -> None:
        self.kind = kind
        self.name = name

    def check(self, node: Node, path: str, ctx: Ctx) -> Node | None:
        if node.value is None:
            return node.with_value({})
        if not isinstance(node.value, dict):
            ctx.fail(node, path, f"expected a mapping, found {describe(node)}")
            return None
        out = {}
        for key, child in node.value.items():
            if child.tag == "reset":
                out[key] = child
                continue
            problem = self.name(key) if self.name else None
            if problem:
                ctx.fail(child, join(path, key), problem)
                continue
            result = self.kind.check(child, join(path, key), ctx)
            if result is not None:
                out[key] = result
        return node.with_value(out)


class ListOf(Kind):
    def __init__(self, kind: Kind) -> None:
        self.kind = kind

    def check(self, node: Node, path: str, ctx: Ctx) -> Node | None:
        if not isinstance(node.value, list):
            ctx.fail(node, path, f"expected a list, found {describe(node)}")
            return None
        items = [self.kind.check(item, f"{path}[{i}]", ctx) for i, item in enumerate(node.value)]
        return node.with_value([item for item in items if item is not None])
