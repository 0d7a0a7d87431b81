"""The located value tree that every stage works on: YAML in, specs out.

A :class:`Node` is a value (a ``dict[str, Node]``, a ``list[Node]`` or a scalar) with the place
it came from. For a mapping value the place is its key's, so an error points at the key a user
wrote (``stack.yml:12:7`` for ``replicas:`` at column 7).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from typing import Any

from stacks.errors import StackError, StackWarning

__all__ = ["Node", "describe", "field_map", "field_strings", "field_value"]


@dataclass(slots=True, eq=False)
class Node:
    """``raw`` keeps a plain scalar's source text; ``tag`` is ``reset``/``override`` or None."""

    value: Any
    file: str
    line: int
    column: int
    raw: str | None = None
    tag: str | None = None

    def is_map(self) -> bool:
        return isinstance(self.value, dict)

    def as_map(self) -> dict[str, Node]:
        assert isinstance(self.value, dict), self.value
        return self.value

    def as_list(self) -> list[Node]:
        assert isinstance(self.value, list), self.value
        return self.value

    def get(self, key: str) -> Node | None:
        return self.value.get(key) if isinstance(self.value, dict) else None

    def items(self) -> Iterator[tuple[str, Node]]:
        return iter(self.as_map().items())

    def with_value(self, value: Any) -> Node:
        return replace(self, value=value)

    def plain(self) -> Any:
        """The value with every Node unwrapped (for tests and debugging)."""
        if isinstance(self.value, dict):
            return {k: v.plain() for k, v in self.value.items()}
        if isinstance(self.value, list):
            return [v.plain() for v in self.value]
        return self.value

    def error(self, path: str, message: str) -> StackError:
        return StackError(message, file=self.file, line=self.line, column=self.column, path=path)

    def warning(self, path: str, message: str) -> StackWarning:
        return StackWarning(message, file=self.file, line=self.line, column=self.column, path=path)


def describe(value: object) -> str:
    """How a value is named in a message: ``'three'``, ``42``, ``true``, ``a mapping``."""
    if isinstance(value, Node):
        if value.raw is not None and not isinstance(value.value, str):
            return value.raw
        value = value.value
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, str):
        shown = value if len(value) <= 60 else value[:57] + "..."
        return repr(shown)
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    return f"a {type(value).__name__}"


def field_value(node: Node | None, key: str, default: Any = None) -> Any:
    """The value under ``key`` of a mapping node, or ``default`` when either is missing."""
    child = node.get(key) if node is not None else None
    return default if child is None else child.value


def field_strings(node: Node | None, key: str) -> tuple[str, ...]:
    child = node.get(key) if node is not None else None
    return () if child is None else tuple(item.value for item in child.as_list())


def field_map(node: Node | None, key: str) -> dict[str, Any]:
    child = node.get(key) if node is not None else None
    return {} if child is None else {k: v.value for k, v in child.items()}
