"""How each field of a store object is kept in Raft entries and snapshots: one decoder and one
encoder per annotation.

Decoding happens once, when an entry is applied or a snapshot restored; the objects a view
hands out are already typed. A decoder raises ``ValueError`` (``SpecError`` and
``StatusError`` are ones) and the object's ``from_dict`` names the object and field.
Encoders give back exactly the maps and values the store has always kept: enums as their
plain strings, an absent spec, status or update status as ``{}``.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Callable
from typing import Any

import msgpack

from agent.manager.store.fields import (
    ClientRole,
    NodeAvailability,
    NodeRole,
    NodeStatus,
    TaskEndpoint,
    UpdateStatus,
)
from agent.model.spec import ServiceSpec, TaskSpec
from agent.model.tasks import DesiredState, TaskStatus

__all__ = ["CODECS", "Codec", "task_spec_map"]

Codec = tuple[Callable[[Any], Any], Callable[[Any], Any]]  # (decode, encode)


def _plain(expected: type | tuple[type, ...]) -> Codec:
    def decode(value: Any) -> Any:
        if not isinstance(value, expected):
            raise ValueError(type(value).__name__)
        return value

    return decode, _same


def _same(value: Any) -> Any:
    return value


def _decode_sequence(value: Any) -> tuple[Any, ...]:
    if not isinstance(value, list | tuple):
        raise ValueError(type(value).__name__)
    return tuple(value)


def _decode_map(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ValueError(type(value).__name__)
    return value


def _enum(cls: type[enum.StrEnum]) -> Codec:
    def decode(value: Any) -> Any:
        if not isinstance(value, str):
            raise ValueError(type(value).__name__)
        try:
            return cls(value)
        except ValueError:
            raise ValueError(f"unknown value {value[:40]!r}") from None

    return decode, str


def _optional(decode: Callable[[Any], Any]) -> Codec:
    """``{}`` stands for "none" (a service never updated, a task no one reported on)."""

    def decode_optional(value: Any) -> Any:
        return None if isinstance(value, dict) and not value else decode(value)

    return decode_optional, lambda value: {} if value is None else value.to_dict()


def _to_dict(value: Any) -> dict[str, Any]:
    out: dict[str, Any] = value.to_dict()
    return out


class _Shared:
    """Decode and encode specs through a bounded cache: the tasks of one service carry the
    same spec, so each distinct spec is parsed once and its map built once, and the tasks
    share one frozen value. A map is known by its packed bytes (exact: 1, 1.0 and true
    differ); a value by identity. Maps handed out are shared: read them, never change them."""

    LIMIT = 4096

    def __init__(self, decode: Callable[[Any], Any]) -> None:
        self._decode = decode
        self._values: dict[bytes, Any] = {}
        self._maps: dict[int, tuple[Any, dict[str, Any]]] = {}

    def decode(self, raw: Any) -> Any:
        try:
            key = msgpack.packb(raw, use_bin_type=True)
        except (TypeError, ValueError, OverflowError):
            return self._decode(raw)  # no map of the log is like this: it fails in decode
        value = self._values.get(key)
        if value is None:
            value = self._decode(raw)
            if len(self._values) >= self.LIMIT:
                self._values.clear()
            self._values[key] = value
        return value

    def encode(self, value: Any) -> dict[str, Any]:
        held = self._maps.get(id(value))
        if held is not None and held[0] is value:
            return held[1]
        out = _to_dict(value)
        if len(self._maps) >= self.LIMIT:
            self._maps.clear()
        self._maps[id(value)] = (value, out)  # holding the value keeps its id unique
        return out

    def codec(self) -> Codec:
        return self.decode, self.encode


_SERVICE_SPECS = _Shared(ServiceSpec.from_dict)
_TASK_SPECS = _Shared(TaskSpec.from_dict)
_ENDPOINTS = _Shared(TaskEndpoint.from_dict)


# A status set by a manager (pending, assigned) has no task id: it keeps its short form.
_SHORT = ("state", "message", "timestamp")
_STATUS_DEFAULTS = {"err": "", "exit_code": None, "container_id": "", "health": None, "restarts": 0}


def _decode_status(value: Any) -> TaskStatus:
    if isinstance(value, dict) and "task_id" not in value:
        parsed = TaskStatus.from_dict({**value, "task_id": "manager"})  # any valid id
        return dataclasses.replace(parsed, task_id="")
    return TaskStatus.from_dict(value)


def _encode_status(status: TaskStatus | None) -> dict[str, Any]:
    if status is None:
        return {}
    full = status.to_dict()
    if status.task_id:
        return full
    out = {k: full[k] for k in _SHORT}
    out.update((k, full[k]) for k, default in _STATUS_DEFAULTS.items() if full[k] != default)
    return out


CODECS: dict[str, Codec] = {
    "str": _plain(str),
    "int": _plain(int),
    "bool": _plain(bool),
    "bytes": _plain(bytes),
    "str | None": _plain((str, type(None))),
    "tuple[int, ...]": (_decode_sequence, list),
    "tuple[str, ...]": (_decode_sequence, list),
    "dict[str, str]": (_decode_map, dict),
    "dict[str, Any]": (_decode_map, dict),
    "NodeStatus": _enum(NodeStatus),
    "NodeAvailability": _enum(NodeAvailability),
    "NodeRole": _enum(NodeRole),
    "ClientRole": _enum(ClientRole),
    "DesiredState": _enum(DesiredState),
    "ServiceSpec": _SERVICE_SPECS.codec(),
    "ServiceSpec | None": (
        _optional(_SERVICE_SPECS.decode)[0],
        lambda value: {} if value is None else _SERVICE_SPECS.encode(value),
    ),
    "TaskSpec": _TASK_SPECS.codec(),
    "TaskStatus | None": (_optional(_decode_status)[0], _encode_status),
    "UpdateStatus | None": _optional(UpdateStatus.from_dict),
    "TaskEndpoint": _ENDPOINTS.codec(),
}


def task_spec_map(spec: TaskSpec) -> dict[str, Any]:
    """A task spec's map, built once per spec (shared: read it, never change it)."""
    return _TASK_SPECS.encode(spec)
