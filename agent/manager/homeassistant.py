"""Home Assistant MQTT discovery entries for the cluster's nodes and services, as pure data.

Each node and each service becomes a Home Assistant device with sensors. An entry is a
retained JSON document on ``<prefix>/sensor/shoal_<cluster>/<object_id>/config`` that tells
Home Assistant where a sensor's state already is: the sensors read the monitoring topics the
cluster publishes anyway (``mon/node/<node>``, ``mon/node/<node>/usage`` and ``/tasks``,
``mon/service/<service>``), so discovery adds no state topic and no traffic from nodes.

:func:`documents` gives every entry the cluster should have (topic -> payload);
:func:`changes` what to publish to get from what the broker holds to that (an empty payload
clears an entry, which removes the sensor, and the device with its last sensor, from Home
Assistant). Both are pure functions; the leader's shell is homeassistant_loop.py.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from agent.manager.store import Node, Service
from broker.errors import BrokerError
from broker.topics import Topics, check_id

__all__ = ["NODE_SENSORS", "SERVICE_SENSORS", "Sensor", "changes", "documents", "object_id"]

COMPONENT = "sensor"
MANUFACTURER = "shoal"
_NOT_ID = re.compile(r"[^a-zA-Z0-9_-]")

_ONLINE = "{{ 'online' if value_json.status == 'ready' else 'offline' }}"


def _percent(used: str, total: str) -> str:
    return (
        f"{{{{ (100 * value_json.{used} / value_json.{total}) | round(1)"
        f" if value_json.{total} else none }}}}"
    )


@dataclass(frozen=True, slots=True)
class Sensor:
    """One sensor of a device: which monitoring document it reads and how.

    ``leaf`` is the monitoring topic below the object's own (``""``: the object's document,
    ``"usage"``, ``"tasks"``: what a node publishes about itself). ``template`` is Home
    Assistant's ``value_template`` (Jinja over ``value_json``; ``none`` reads as unknown)."""

    key: str
    name: str
    template: str
    leaf: str = ""
    unit: str = ""
    numeric: bool = False
    icon: str = ""


NODE_SENSORS = (
    Sensor("status", "Status", "{{ value_json.status }}", icon="mdi:lan-connect"),
    Sensor("availability", "Availability", "{{ value_json.availability }}", icon="mdi:pause"),
    Sensor("role", "Role", "{{ value_json.role }}", icon="mdi:account-hard-hat"),
    Sensor(
        "cpu",
        "CPU",
        "{{ none if value_json.cpu is none else (100 * value_json.cpu) | round(1) }}",
        "usage",
        "%",
        numeric=True,
        icon="mdi:cpu-64-bit",
    ),
    Sensor(
        "memory",
        "Memory",
        _percent("memory_used", "memory_total"),
        "usage",
        "%",
        numeric=True,
        icon="mdi:memory",
    ),
    Sensor(
        "disk",
        "Disk",
        _percent("disk_used", "disk_total"),
        "usage",
        "%",
        numeric=True,
        icon="mdi:harddisk",
    ),
    Sensor(
        "tasks",
        "Tasks",
        "{{ value_json.values() | selectattr('state', 'eq', 'running') | list | length }}",
        "tasks",  # mon/node/<node>/tasks: every task the node holds, by id
        "tasks",
        numeric=True,
        icon="mdi:format-list-checks",
    ),
)

SERVICE_SENSORS = (
    Sensor(
        "running",
        "Replicas running",
        "{{ value_json.running }}",
        unit="tasks",
        numeric=True,
        icon="mdi:play-circle",
    ),
    Sensor(
        "desired",
        "Replicas desired",
        "{{ value_json.desired }}",
        unit="tasks",
        numeric=True,
        icon="mdi:target",
    ),
    Sensor("image", "Image", "{{ value_json.image }}", icon="mdi:docker"),
    Sensor(
        "update",
        "Update status",
        "{{ value_json.update_status.state | default('none') }}",
        icon="mdi:update",
    ),
)


def object_id(*parts: str) -> str:
    """An object id (and topic level) from ids: anything but ``[a-zA-Z0-9_-]`` becomes ``_``."""
    return _NOT_ID.sub("_", "_".join(parts)) or "_"


def documents(
    topics: Topics,
    prefix: str,
    nodes: Iterable[Node],
    services: Iterable[Service],
    *,
    version: str,
) -> dict[str, bytes]:
    """Every discovery entry of the cluster, topic -> retained payload."""
    origin = {"name": "shoal", "sw_version": version}
    out: dict[str, bytes] = {}
    for node in nodes:
        if not _has_topics(node.id):
            continue
        device = {
            "identifiers": [object_id(topics.discovery_node, "node", node.id)],
            "name": node.hostname or node.id,
            "manufacturer": MANUFACTURER,
            "model": f"shoal {node.role} node",
            "serial_number": node.id,
        }
        state = topics.mon("node", node.id)
        for sensor in NODE_SENSORS:
            oid = object_id("node", node.id, sensor.key)
            doc = _entry(topics, oid, sensor, device, origin, _state(topics, state, sensor))
            if sensor.key != "status":  # a down node's status still reads "down"
                doc["availability_topic"] = state
                doc["availability_template"] = _ONLINE
            out[topics.discovery_config(prefix, COMPONENT, oid)] = _payload(doc)
    for service in services:
        if not _has_topics(service.id):
            continue
        device = {
            "identifiers": [object_id(topics.discovery_node, "service", service.id)],
            "name": service.name or service.id,
            "manufacturer": MANUFACTURER,
            "model": f"shoal {service.spec.mode.kind} service",
            "serial_number": service.id,
        }
        state = topics.mon("service", service.id)
        for sensor in SERVICE_SENSORS:
            oid = object_id("service", service.id, sensor.key)
            doc = _entry(topics, oid, sensor, device, origin, state)
            out[topics.discovery_config(prefix, COMPONENT, oid)] = _payload(doc)
    return out


def _has_topics(ident: str) -> bool:
    """An object whose id cannot be a topic level has no monitoring document to point at."""
    try:
        check_id(ident)
    except BrokerError:
        return False
    return True


def _state(topics: Topics, state: str, sensor: Sensor) -> str:
    return f"{state}/{sensor.leaf}" if sensor.leaf else state


def _entry(
    topics: Topics,
    oid: str,
    sensor: Sensor,
    device: dict[str, Any],
    origin: dict[str, str],
    state_topic: str,
) -> dict[str, Any]:
    unique = object_id(topics.discovery_node, oid)
    doc: dict[str, Any] = {
        "name": sensor.name,
        "unique_id": unique,
        "object_id": unique,
        "state_topic": state_topic,
        "value_template": sensor.template,
        "device": device,
        "origin": origin,
    }
    if sensor.unit:
        doc["unit_of_measurement"] = sensor.unit
    if sensor.numeric:
        doc["state_class"] = "measurement"
    if sensor.icon:
        doc["icon"] = sensor.icon
    return doc


def _payload(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


def changes(held: Mapping[str, bytes], wanted: Mapping[str, bytes]) -> dict[str, bytes]:
    """What to publish (retained) so that the broker holds ``wanted`` instead of ``held``:
    every entry that is new or different, and an empty payload for every one to clear."""
    out = {topic: b"" for topic in held if topic not in wanted and held[topic]}
    out.update({topic: body for topic, body in wanted.items() if held.get(topic) != body})
    return dict(sorted(out.items()))
