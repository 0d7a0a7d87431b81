"""The functions a ``--format`` template may call: Go's builtins and Docker's own. Pure.

Each takes evaluated values and returns one; a problem is a ``CallError`` (reported by the
template as ``error calling <name>: ...``) or an ``ArgTypeError`` (``wrong type for value``).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from agent.cli.gofmt import NO_VALUE, go_type, sprint, sprintf, sprintln, to_json

__all__ = ["FUNCTIONS", "HEADER_IDENTITY", "ArgTypeError", "CallError", "Function", "truth"]


class CallError(Exception):
    """A function refused its arguments (``index out of range: 5``)."""


class ArgTypeError(Exception):
    """An argument of the wrong Go type (``expected string; got int``)."""


@dataclass(frozen=True, slots=True)
class Function:
    least: int  # fewest arguments
    most: int | None  # most arguments; None when variadic
    call: Callable[..., Any]


def truth(value: Any) -> bool:
    """Go's truth: false, 0, nil, and an empty string, list or map are false."""
    return bool(value)


def _string(value: Any) -> str:
    if value is None or value is NO_VALUE:
        return ""
    if not isinstance(value, str):
        raise ArgTypeError(f"wrong type for value; expected string; got {go_type(value)}")
    return value


def _int(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise ArgTypeError(f"wrong type for value; expected int; got {go_type(value)}")
    return value


def _strings(value: Any) -> list[Any]:
    if value is None or value is NO_VALUE:
        return []
    if not isinstance(value, list | tuple):
        raise ArgTypeError(f"wrong type for value; expected []string; got {go_type(value)}")
    return list(value)


def _index(item: Any, *indices: Any) -> Any:
    for index in indices:
        if item is None or item is NO_VALUE:
            raise CallError("index of untyped nil")
        if isinstance(item, Mapping):
            if not isinstance(index, str):
                raise CallError(f"value has type {go_type(index)}; should be string")
            item = item.get(index)
        elif isinstance(item, list | tuple | str):
            if not isinstance(index, int) or isinstance(index, bool):
                raise CallError(f"cannot index slice/array with type {go_type(index)}")
            seq = item.encode() if isinstance(item, str) else item
            if not 0 <= index < len(seq):
                raise CallError(f"index out of range: {index}")
            item = seq[index]
        else:
            raise CallError(f"can't index item of type {go_type(item)}")
    return item


def _slice(item: Any, *indices: Any) -> Any:
    if item is None or item is NO_VALUE:
        raise CallError("slice of untyped nil")
    if not isinstance(item, list | tuple | str):
        raise CallError(f"can't slice item of type {go_type(item)}")
    if len(indices) > (2 if isinstance(item, str) else 3):
        raise CallError(f"too many slice indexes: {len(indices)}")
    bounds = [_int(i) for i in indices]
    for i in bounds:
        if not 0 <= i <= len(item):
            raise CallError(f"index out of range: {i}")
    for low, high in itertools.pairwise(bounds):
        if low > high:
            raise CallError(f"invalid slice index: {low} > {high}")
    start = bounds[0] if bounds else 0
    stop = bounds[1] if len(bounds) > 1 else len(item)
    return item[start:stop]


def _len(item: Any) -> int:
    if item is None or item is NO_VALUE:
        raise CallError("len of nil pointer")
    if isinstance(item, str):
        return len(item.encode())
    if isinstance(item, list | tuple | Mapping):
        return len(item)
    raise CallError(f"len of type {go_type(item)}")


def _kind(value: Any) -> str:
    if value is None or value is NO_VALUE:
        return "nil"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "other"


def _eq(first: Any, *others: Any) -> bool:
    if not others:
        raise CallError("missing argument for comparison")
    for other in others:
        kinds = {_kind(first), _kind(other)}
        if "other" in kinds:
            raise CallError("non-comparable type")
        if "nil" in kinds:
            if kinds == {"nil"}:
                return True
            continue
        if len(kinds) > 1:
            raise CallError("incompatible types for comparison")
        if first == other:
            return True
    return False


def _less(a: Any, b: Any) -> bool:
    kinds = {_kind(a), _kind(b)}
    if kinds - {"number", "string"}:
        raise CallError("invalid type for comparison")
    if len(kinds) > 1:
        raise CallError("incompatible types for comparison")
    return bool(a < b)


def _printf(fmt: Any, *args: Any) -> str:
    return sprintf(_string(fmt), *args)


def _split(text: Any, sep: Any) -> list[str]:
    text, sep = _string(text), _string(sep)
    return list(text) if sep == "" else text.split(sep)


def _title(text: Any) -> str:
    """Go's ``strings.Title``: each word's first letter upper-cased, the rest left alone."""
    out = []
    previous = " "
    for char in _string(text):
        if previous.isascii():
            separator = not (previous.isalnum() or previous == "_")
        else:
            separator = previous.isspace()
        out.append(char.upper() if separator else char)
        previous = char
    return "".join(out)


def _pad(text: Any, prefix: Any, suffix: Any) -> str:
    text = _string(text)
    return text and " " * _int(prefix) + text + " " * _int(suffix)


def _truncate(text: Any, length: Any) -> str:
    return _string(text)[: _int(length)]


FUNCTIONS: dict[str, Function] = {
    # Go's builtins ("and" and "or" are evaluated lazily by the template)
    "and": Function(1, None, lambda *args: args[-1]),
    "or": Function(1, None, lambda *args: args[-1]),
    "not": Function(1, 1, lambda value: not truth(value)),
    "eq": Function(1, None, _eq),
    "ne": Function(2, 2, lambda a, b: not _eq(a, b)),
    "lt": Function(2, 2, _less),
    "le": Function(2, 2, lambda a, b: _less(a, b) or _eq(a, b)),
    "gt": Function(2, 2, lambda a, b: not (_less(a, b) or _eq(a, b))),
    "ge": Function(2, 2, lambda a, b: not _less(a, b)),
    "index": Function(1, None, _index),
    "slice": Function(1, None, _slice),
    "len": Function(1, 1, _len),
    "print": Function(0, None, sprint),
    "println": Function(0, None, sprintln),
    "printf": Function(1, None, _printf),
    # Docker's
    "json": Function(1, 1, to_json),
    "join": Function(2, 2, lambda items, sep: _string(sep).join(map(_string, _strings(items)))),
    "split": Function(2, 2, _split),
    "title": Function(1, 1, _title),
    "lower": Function(1, 1, lambda text: _string(text).lower()),
    "upper": Function(1, 1, lambda text: _string(text).upper()),
    "pad": Function(3, 3, _pad),
    "truncate": Function(2, 2, _truncate),
}

# In a table's header row these return their first argument, so the header keeps the column's
# name, as Docker's do; ``pad`` and ``printf`` still apply, to keep columns aligned.
HEADER_IDENTITY = frozenset(
    {"json", "join", "split", "title", "lower", "upper", "truncate", "index", "slice"}
)
