"""`--filter key=value` on listings, with Docker's names and meaning: one key given several
times matches any of its values, different keys must all match.

A :class:`Listing` is a table of data: per key, a test of one item against one value, and,
where Docker limits a key's values, the values it takes. :meth:`Listing.select` parses the
filters a request carries (a list of ``"key=value"`` texts) and keeps the items that match;
an unknown key, a text without ``=`` or a value a key does not take is a :class:`FilterError`
that names it, before anything is listed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from agent.manager.store import Config, Network, Node, NodeRole, Secret, Service
from agent.model.errors import ShoalError

__all__ = [
    "NETWORKS",
    "NODES",
    "OBJECTS",
    "SERVICES",
    "TASKS",
    "FilterError",
    "Listing",
    "labels_match",
    "parse_filters",
]

T = TypeVar("T")
Test = Callable[[T, str], bool]


class FilterError(ShoalError):
    """A filter the listing does not know or a value its key does not take."""


def parse_filters(raw: Any, keys: Iterable[str]) -> dict[str, list[str]]:
    """``["key=value", ...]`` as key -> values, every key one of ``keys``."""
    if raw is None:
        return {}
    if not isinstance(raw, list) or not all(isinstance(f, str) for f in raw):
        raise FilterError("filters must be a list of key=value texts")
    known = sorted(keys)
    out: dict[str, list[str]] = {}
    for text in raw:
        key, sep, value = text.partition("=")
        if not sep:
            raise FilterError(f"bad format of filter (expected name=value): {text!r}")
        if key not in known:
            raise FilterError(f"Invalid filter '{key}' (use {', '.join(known)})")
        out.setdefault(key, []).append(value)
    return out


def labels_match(labels: Mapping[str, str], wanted: str) -> bool:
    """``label=KEY`` (the label is there) or ``label=KEY=VALUE`` (it has that value)."""
    key, sep, value = wanted.partition("=")
    if key not in labels:
        return False
    return not sep or labels[key] == value


def _prefix(of: Callable[[T], str]) -> Test[T]:
    return lambda item, value: of(item).startswith(value)


def _part(of: Callable[[T], str]) -> Test[T]:
    return lambda item, value: value in of(item)


def _equal(of: Callable[[T], str]) -> Test[T]:
    return lambda item, value: of(item) == value


def _labels(of: Callable[[T], Mapping[str, str]]) -> Test[T]:
    return lambda item, value: labels_match(of(item), value)


@dataclass(frozen=True)
class Listing(Generic[T]):
    """What one listing can be filtered by. ``choices``: the values a key takes, if limited."""

    tests: Mapping[str, Test[T]]
    choices: Mapping[str, Sequence[str]] = field(default_factory=dict)

    def parse(self, raw: Any) -> dict[str, list[str]]:
        wanted = parse_filters(raw, self.tests)
        for key, values in wanted.items():
            allowed = self.choices.get(key)
            for value in values:
                if allowed is not None and value not in allowed:
                    raise FilterError(
                        f"Invalid filter '{key}={value}': {key} is one of {', '.join(allowed)}"
                    )
        return wanted

    def select(self, items: Iterable[T], raw: Any) -> list[T]:
        wanted = self.parse(raw)
        return [
            item
            for item in items
            if all(any(self.tests[k](item, v) for v in vs) for k, vs in wanted.items())
        ]


def _engine_labels(node: Node) -> Mapping[str, str]:
    engine = node.description.get("engine") or {}
    labels = engine.get("labels") if isinstance(engine, dict) else None
    return labels if isinstance(labels, dict) else {}


NODES: Listing[Node] = Listing(
    tests={
        "id": _prefix(lambda n: n.id),
        "label": _labels(_engine_labels),  # Docker: the engine's labels
        "node.label": _labels(lambda n: n.labels),
        "membership": lambda n, v: v == "accepted",  # a node in the store was accepted
        "name": _prefix(lambda n: n.hostname),
        "role": _equal(lambda n: str(n.role)),
    },
    choices={"membership": ("accepted", "pending"), "role": tuple(NodeRole)},
)

# tasks are filtered as the rows `service ps` and `node ps` show (views.task_row)
TASKS: Listing[dict[str, Any]] = Listing(
    tests={
        "id": _prefix(lambda t: str(t["id"])),
        "name": _prefix(lambda t: str(t["name"])),
        "node": lambda t, v: v in (t["node"], t["node_id"]) or str(t["node_id"]).startswith(v),
        "desired-state": _equal(lambda t: str(t["desired"])),
    },
    choices={"desired-state": ("running", "shutdown", "accepted", "complete", "remove")},
)

SERVICES: Listing[Service] = Listing(
    tests={
        "id": _prefix(lambda s: s.id),
        "label": _labels(lambda s: s.spec.labels),
        "mode": _equal(lambda s: s.spec.mode.kind),
        "name": _prefix(lambda s: s.name),
    },
    choices={"mode": ("replicated", "global", "replicated-job", "global-job")},
)

OBJECTS: Listing[Secret | Config] = Listing(
    tests={
        "id": _prefix(lambda o: o.id),
        "label": _labels(lambda o: o.labels),
        "name": _prefix(lambda o: o.name),
    }
)

NETWORKS: Listing[Network] = Listing(
    tests={
        "driver": _equal(lambda n: n.driver),
        "id": _part(lambda n: n.id),
        "label": _labels(lambda n: n.labels),
        "name": _part(lambda n: n.name),
        "scope": lambda n, v: v == "swarm",
        "type": lambda n, v: v == "custom",  # builtin are bridge, host, none: not swarm's
        # (ingress too is custom, as in Docker)
    },
    choices={"scope": ("swarm", "global", "local"), "type": ("custom", "builtin")},
)
