"""Cluster events as `shoal events` and the ``mon/events`` topic carry them (pure: no I/O).

An event is Docker's ``EventMessage`` of swarm scope: ``Type`` (node, service, task, secret,
config, network), ``Action`` (create, update, remove), ``Actor`` (``ID`` and ``Attributes``,
``name`` among them), ``scope`` ("swarm"), ``time`` (seconds) and ``timeNano``.
:class:`EventFilter` is ``--filter`` as Docker reads it: values of one key are alternatives,
different keys must all match, and an object's filter matches its id (or a prefix of it) or
its name.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from agent.model.errors import ShoalError
from agent.model.logs import stamp

__all__ = ["ACTIONS", "EVENT_TYPES", "FILTER_KEYS", "ClusterEvent", "EventFilter"]

EVENT_TYPES = ("node", "service", "task", "secret", "config", "network")
ACTIONS = ("create", "update", "remove")
SCOPES = ("swarm", "local")
# keys that name an object: its events, and (service, node) the events of its tasks
OBJECT_KEYS = ("service", "node", "secret", "config", "network")
FILTER_KEYS = ("type", "event", "scope", *OBJECT_KEYS)


@dataclass(frozen=True, slots=True)
class ClusterEvent:
    type: str
    action: str
    actor_id: str
    attributes: Mapping[str, str] = field(default_factory=dict)
    time_ns: int = 0
    scope: str = "swarm"

    def to_dict(self) -> dict[str, Any]:
        """Docker's JSON shape of the event."""
        return {
            "Type": self.type,
            "Action": self.action,
            "Actor": {"ID": self.actor_id, "Attributes": dict(sorted(self.attributes.items()))},
            "scope": self.scope,
            "time": self.time_ns // 1_000_000_000,
            "timeNano": self.time_ns,
        }

    @classmethod
    def from_dict(cls, obj: Any) -> ClusterEvent:
        """The event of :meth:`to_dict`'s form; anything else is a `ShoalError` that says
        which field is wrong."""
        if not isinstance(obj, Mapping):
            raise ShoalError("malformed event: expected an object")
        actor = obj.get("Actor")
        if not isinstance(actor, Mapping):
            raise ShoalError("malformed event: Actor must be an object")
        attributes = actor.get("Attributes", {})
        if not isinstance(attributes, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in attributes.items()
        ):
            raise ShoalError("malformed event: Actor.Attributes must map strings to strings")
        for key, value in (
            ("Type", obj.get("Type")),
            ("Action", obj.get("Action")),
            ("Actor.ID", actor.get("ID")),
            ("scope", obj.get("scope", "swarm")),
        ):
            if not isinstance(value, str):
                raise ShoalError(f"malformed event: {key} must be a string")
        nano = obj.get("timeNano")
        if type(nano) is not int or nano < 0:
            raise ShoalError("malformed event: timeNano must be a non-negative integer")
        return cls(
            type=obj["Type"],
            action=obj["Action"],
            actor_id=actor["ID"],
            attributes=dict(attributes),
            time_ns=nano,
            scope=obj.get("scope", "swarm"),
        )

    def line(self) -> str:
        """Docker's line: ``<time> <type> <action> <id> (<key>=<value>, ...)``."""
        attrs = ", ".join(f"{k}={v}" for k, v in sorted(self.attributes.items()))
        text = f"{stamp(self.time_ns)} {self.type} {self.action} {self.actor_id}"
        return f"{text} ({attrs})" if attrs else text


def _fuzzy(values: frozenset[str], source: str) -> bool:
    """Docker's fuzzy match: the source is one of the values or starts with one."""
    return bool(source) and any(source == v or source.startswith(v) for v in values)


@dataclass(frozen=True, slots=True)
class EventFilter:
    values: Mapping[str, frozenset[str]] = field(default_factory=dict)

    @classmethod
    def parse(cls, items: Iterable[str]) -> EventFilter:
        """``--filter`` values (``key=value``) as given on the command line."""
        found: dict[str, set[str]] = {}
        for item in items:
            key, sep, value = item.partition("=")
            if not sep or not key.strip():
                raise ShoalError(f"bad format of filter {item!r} (expected name=value)")
            found.setdefault(key.strip().lower(), set()).add(value.strip())
        return cls._checked(found)

    @classmethod
    def from_wire(cls, obj: Any) -> EventFilter:
        """The map :meth:`to_wire` makes, as it arrives over the control socket."""
        if obj is None:
            return cls()
        if not isinstance(obj, Mapping):
            raise ShoalError("events: filters must be an object of lists")
        found: dict[str, set[str]] = {}
        for key, values in obj.items():
            if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
                raise ShoalError(f"events: the filter {key!r} must be a list of strings")
            found[str(key)] = set(values)
        return cls._checked(found)

    @classmethod
    def _checked(cls, found: Mapping[str, set[str]]) -> EventFilter:
        for key, values in found.items():
            if key not in FILTER_KEYS:
                raise ShoalError(
                    f"invalid filter {key!r}: events take {', '.join(sorted(FILTER_KEYS))}"
                )
            allowed = {"type": EVENT_TYPES, "event": ACTIONS, "scope": SCOPES}.get(key)
            for value in sorted(values):
                if not value:
                    raise ShoalError(f"invalid filter '{key}=': give a value")
                if allowed is not None and value not in allowed:
                    raise ShoalError(
                        f"invalid filter '{key}={value}': {key} is one of {', '.join(allowed)}"
                    )
        return cls({k: frozenset(v) for k, v in found.items() if v})

    def to_wire(self) -> dict[str, list[str]]:
        return {k: sorted(v) for k, v in sorted(self.values.items())}

    def matches(self, ev: ClusterEvent) -> bool:
        for key, values in self.values.items():
            if key == "type":
                ok = ev.type in values
            elif key == "event":
                ok = ev.action in values
            elif key == "scope":
                ok = ev.scope in values
            elif ev.type == key:
                ok = _fuzzy(values, ev.actor_id) or _fuzzy(values, ev.attributes.get("name", ""))
            elif ev.type == "task" and key in ("service", "node"):
                ok = _fuzzy(values, ev.attributes.get(f"{key}.id", "")) or _fuzzy(
                    values, ev.attributes.get(f"{key}.name", "")
                )
            else:
                ok = False
            if not ok:
                return False
        return True
