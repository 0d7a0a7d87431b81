"""Reading untrusted mappings off the network field by field, and the rule every wire id follows.

:class:`FieldReader` raises the caller's error type naming the first bad field, never anything
else, so a decoder built on it trusts nothing it is given.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from agent.model.errors import AssignmentError, StatusError

__all__ = ["FieldReader", "is_id"]

# Ids travel in topic levels, label values, file and container names: no '.', '/', spaces.
_ID = re.compile(r"[0-9A-Za-z][0-9A-Za-z_-]{0,63}")


def is_id(value: object) -> bool:
    """True for a task, node, secret or config id: safe in topics, labels and file names."""
    return isinstance(value, str) and _ID.fullmatch(value) is not None


_MISSING = object()


@dataclass(slots=True)
class FieldReader:
    """Strict field access over an untrusted mapping, raising ``error(field, message)``."""

    obj: object
    error: type[AssignmentError] | type[StatusError]
    keys: frozenset[str]
    required: frozenset[str]
    where: str = ""
    data: Mapping[str, object] = field(init=False)

    def _error(self, key: str, message: str) -> AssignmentError | StatusError:
        return self.error(".".join(p for p in (self.where, key) if p), message)

    def __post_init__(self) -> None:
        if not isinstance(self.obj, Mapping):
            raise self._error("", f"expected a mapping, found {type(self.obj).__name__}")
        for key in self.obj:
            if not isinstance(key, str):
                raise self._error("", f"expected string keys, found {type(key).__name__}")
            if key not in self.keys:
                raise self._error(key, "unknown key")
        for key in sorted(self.required):
            if key not in self.obj:
                raise self._error(key, "required key is missing")
        self.data = self.obj

    def raw(self, key: str, default: object = _MISSING) -> object:
        value = self.data.get(key, default)
        if value is _MISSING:  # pragma: no cover - required keys are checked up front
            raise self._error(key, "required key is missing")
        return value

    def text(self, key: str, default: object = _MISSING) -> str:
        value = self.raw(key, default)
        if not isinstance(value, str):
            raise self._error(key, f"expected a string, found {type(value).__name__}")
        return value

    def data_bytes(self, key: str) -> bytes:
        value = self.raw(key)
        if not isinstance(value, bytes | bytearray):
            raise self._error(key, f"expected bytes, found {type(value).__name__}")
        return bytes(value)

    def id(self, key: str) -> str:
        return self.matching(key, _ID, "an id of 1 to 64 letters, digits, '-' or '_'")

    def matching(self, key: str, pattern: re.Pattern[str], what: str) -> str:
        value = self.text(key)
        if not pattern.fullmatch(value):
            raise self._error(key, f"expected {what}, found {value[:70]!r}")
        return value

    def integer(self, key: str, default: object = _MISSING, *, minimum: int | None = None) -> int:
        value = self.raw(key, default)
        if not isinstance(value, int) or isinstance(value, bool):
            raise self._error(key, f"expected an integer, found {type(value).__name__}")
        if minimum is not None and value < minimum:
            raise self._error(key, f"expected an integer >= {minimum}, found {value}")
        if not -(2**63) <= value < 2**63:
            raise self._error(key, "integer out of range")
        return value

    def optional_int(self, key: str, *, minimum: int | None = None) -> int | None:
        if self.data.get(key) is None:
            return None
        return self.integer(key, minimum=minimum)
