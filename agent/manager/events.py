"""Cluster events from committed store changes (pure: a change and the names around it in,
an event out; the ring and the topic are in eventlog.py).

What becomes an event, with Docker's names (``docker events`` of swarm scope):

- node, service, secret, config, network: ``create``, ``update`` and ``remove``, with the
  object's ``name`` (a node's hostname). A node's update says ``state``, ``availability``
  and ``role`` ``.old``/``.new`` when they changed, a service's ``image``, ``replicas`` and
  ``updatestate``. A write that changes nothing but the object's ``updated`` stamp is none.
- task: ``create``, ``update`` when its observed state changes (``state.old``/``state.new``;
  other writes of a task are none) and ``remove``, with ``name`` (``web.1``), ``service.id``,
  ``service.name``, ``node.id`` and ``node.name`` once placed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable

from agent.manager.store import Config, Event, Network, Node, Secret, Service, StoreObject, Task
from agent.model.events import ClusterEvent

__all__ = ["Names", "derive", "names_in"]

_KINDS = {"node", "service", "task", "secret", "config", "network"}
_ACTIONS = {"create": "create", "update": "update", "delete": "remove"}

# a service's or node's name by id ("" when unknown)
Names = Callable[[str, str], str]


def names_in(events: Iterable[Event], fallback: Names) -> Names:
    """Names of services and nodes as the events knew them (so a task removed together with
    its service is still named), then `fallback` (the store as it is now)."""
    known: dict[tuple[str, str], str] = {}
    for ev in events:
        for obj in (ev.old, ev.new):
            if isinstance(obj, Service):
                known[("service", obj.id)] = obj.name
            elif isinstance(obj, Node):
                known[("node", obj.id)] = obj.hostname

    def name(kind: str, ident: str) -> str:
        return known.get((kind, ident)) or fallback(kind, ident)

    return name


def derive(ev: Event, names: Names, at_ns: int) -> ClusterEvent | None:
    """The cluster event of one store change at `at_ns`, or None when it is not one."""
    if ev.kind not in _KINDS:
        return None
    action = _ACTIONS[ev.action]
    obj = ev.new if ev.new is not None else ev.old
    if obj is None:
        return None
    if action == "update" and ev.old is not None and ev.new is not None:
        if _same_but_stamp(ev.old, ev.new):
            return None
    if isinstance(obj, Task):
        attrs = _task(ev, obj, names, action)
        if attrs is None:
            return None
    else:
        attrs = {"name": _name(obj)}
        if action == "update":
            attrs.update(_changes(ev.old, ev.new))
    return ClusterEvent(ev.kind, action, ev.id, attrs, at_ns)


def _name(obj: StoreObject) -> str:
    if isinstance(obj, Node):
        return obj.hostname
    if isinstance(obj, Service | Secret | Config | Network):
        return obj.name
    return ""


def _same_but_stamp(old: StoreObject, new: StoreObject) -> bool:
    if type(old) is not type(new) or not hasattr(new, "updated"):
        return old == new
    stamp = getattr(old, "updated", "")
    return bool(old == dataclasses.replace(new, updated=stamp))  # type: ignore[call-arg]


def _state(task: Task | None) -> str:
    if task is None:
        return ""
    return task.status.state.value if task.status is not None else "new"


def _task(ev: Event, task: Task, names: Names, action: str) -> dict[str, str] | None:
    old = ev.old if isinstance(ev.old, Task) else None
    new = ev.new if isinstance(ev.new, Task) else None
    if action == "update" and _state(old) == _state(new):
        return None
    service = names("service", task.service_id) or task.service_id
    attrs = {
        "name": f"{service}.{task.slot if task.slot else task.node_id}",
        "service.id": task.service_id,
        "service.name": service,
    }
    if task.node_id:
        attrs["node.id"] = task.node_id
        attrs["node.name"] = names("node", task.node_id) or task.node_id
    if new is not None:
        attrs["state.new"] = _state(new)
    if old is not None and action == "update":
        attrs["state.old"] = _state(old)
    return attrs


def _changes(old: StoreObject | None, new: StoreObject | None) -> dict[str, str]:
    """Docker's ``<what>.old``/``<what>.new`` attributes of an update."""
    pairs: list[tuple[str, str, str]] = []
    if isinstance(old, Node) and isinstance(new, Node):
        pairs = [
            ("state", str(old.status), str(new.status)),
            ("availability", str(old.availability), str(new.availability)),
            ("role", str(old.role), str(new.role)),
        ]
    elif isinstance(old, Service) and isinstance(new, Service):
        was, now = old.spec.task_template.container, new.spec.task_template.container
        pairs = [
            ("image", was.image, now.image),
            ("replicas", str(old.spec.mode.replicas), str(new.spec.mode.replicas)),
            ("updatestate", _update_state(old), _update_state(new)),
        ]
    out: dict[str, str] = {}
    for what, before, after in pairs:
        if before != after:
            out[f"{what}.old"], out[f"{what}.new"] = before, after
    return out


def _update_state(service: Service) -> str:
    return str(service.update_status.state) if service.update_status is not None else ""
