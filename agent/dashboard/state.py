"""What the dashboard knows: the latest document of every monitoring topic, kept from
topic/payload pairs as they arrive (no networking here).

    mon/node/<node>              the node          (retained; empty: the node was removed)
    mon/node/<node>/description  its platform      (retained)
    mon/node/<node>/tasks        the tasks it runs (retained)
    mon/node/<node>/usage        its CPU, memory and disk, when the node publishes them
    mon/service/<service>        the service       (retained; empty: the service was removed)
    mon/events                   cluster events    (the last EVENTS_KEPT)
    mon/events/recent            the leader's digest of the last events (retained)
    mon/cluster                  Raft and broker   (retained, when the leader publishes it)
    mon/broker                   the brokers the managers announce (retained)

A message that is not a JSON object, or arrives on a topic outside this tree, is counted in
``bad_messages`` and changes nothing.
"""

from __future__ import annotations

import json
from collections import deque
from dataclasses import dataclass, field
from typing import Any

__all__ = ["EVENTS_KEPT", "NODE_PARTS", "Change", "ClusterState"]

EVENTS_KEPT = 50
NODE_PARTS = ("description", "tasks", "usage")


@dataclass(frozen=True, slots=True)
class Change:
    """One change to the state: what changed (``node``, ``service``, ``event``, ``cluster``),
    its id (the node's, the service's; "" otherwise) and its new value (None: removed)."""

    kind: str
    id: str
    value: Any

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "id": self.id, "value": self.value}


@dataclass
class ClusterState:
    cluster_id: str
    nodes: dict[str, dict[str, Any]] = field(default_factory=dict)
    services: dict[str, dict[str, Any]] = field(default_factory=dict)
    events: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=EVENTS_KEPT))
    cluster: dict[str, Any] | None = None
    broker: dict[str, Any] | None = None  # mon/broker, what the managers' brokers announce
    messages: int = 0
    bad_messages: int = 0
    last_bad: str = ""  # why the last bad message was refused, and where it came from
    connected: bool = False

    @property
    def prefix(self) -> str:
        return f"shoal/{self.cluster_id}/mon/"

    def apply(self, topic: str, payload: bytes) -> Change | None:
        """Take one message; the change it made, or None when it changed nothing."""
        self.messages += 1
        if not topic.startswith(self.prefix):
            return self._bad(topic, "not a monitoring topic of this cluster")
        levels = topic[len(self.prefix) :].split("/")
        doc: dict[str, Any] | None = None
        if payload:
            try:
                parsed = json.loads(payload)
            except (ValueError, UnicodeDecodeError) as exc:
                return self._bad(topic, f"not JSON ({exc})")
            if not isinstance(parsed, dict):
                return self._bad(topic, "not a JSON object")
            doc = parsed
        match levels:
            case ["node", node_id]:
                return self._node(node_id, None, doc)
            case ["node", node_id, part] if part in NODE_PARTS:
                return self._node(node_id, part, doc)
            case ["service", service_id]:
                return self._service(service_id, doc)
            case ["events"] if doc is not None:
                self.events.append(doc)
                return Change("event", "", doc)
            case ["events", "recent"] if doc is not None:
                return self._recent(topic, doc)
            case ["cluster"]:
                self.cluster = doc
                return Change("cluster", "", doc)
            case ["broker"]:
                self.broker = doc
                return Change("broker", "", doc)
            case ["node", _, _] | ["events"]:
                return None  # a leaf this dashboard does not show, or an empty event
        return self._bad(topic, "unknown monitoring topic")

    def _recent(self, topic: str, doc: dict[str, Any]) -> Change | None:
        """The leader's digest of the last events: merged with those seen live, in time order,
        each once."""
        got = doc.get("events")
        if not isinstance(got, list) or not all(isinstance(e, dict) for e in got):
            return self._bad(topic, "events is not a list of objects")
        merged = {_event_key(e): e for e in [*self.events, *got]}
        ordered = sorted(merged.values(), key=_event_time)[-EVENTS_KEPT:]
        if ordered == list(self.events):
            return None
        self.events.clear()
        self.events.extend(ordered)
        return Change("events", "", ordered)

    def _bad(self, topic: str, why: str) -> Change | None:
        self.bad_messages += 1
        self.last_bad = f"{topic}: {why}"
        return None

    def _node(self, node_id: str, part: str | None, doc: dict[str, Any] | None) -> Change | None:
        if part is None and doc is None:  # the node was removed: its topics were cleared
            if self.nodes.pop(node_id, None) is None:
                return None
            return Change("node", node_id, None)
        if doc is None and node_id not in self.nodes:
            return None  # a part of a node already removed, cleared
        node = self.nodes.setdefault(node_id, {"id": node_id})
        if part is None:
            assert doc is not None
            parts = {p: node[p] for p in NODE_PARTS if p in node}
            node.clear()
            node.update({"id": node_id, **doc, **parts})
        elif doc is None:
            node.pop(part, None)
        else:
            node[part] = doc
        return Change("node", node_id, node)

    def _service(self, service_id: str, doc: dict[str, Any] | None) -> Change | None:
        if doc is None:
            if self.services.pop(service_id, None) is None:
                return None
            return Change("service", service_id, None)
        self.services[service_id] = {"id": service_id, **doc}
        return Change("service", service_id, self.services[service_id])

    def snapshot(self) -> dict[str, Any]:
        """All it knows, as /api/state serves it."""
        return {
            "cluster_id": self.cluster_id,
            "connected": self.connected,
            "nodes": self.nodes,
            "services": self.services,
            "events": list(self.events),
            "cluster": self.cluster,
            "broker": self.broker,
            "messages": self.messages,
            "bad_messages": self.bad_messages,
            "last_bad": self.last_bad,
        }


def _event_time(ev: dict[str, Any]) -> int:
    t = ev.get("timeNano")
    return t if isinstance(t, int) else 0


def _event_key(ev: dict[str, Any]) -> str:
    return json.dumps(ev, sort_keys=True)
