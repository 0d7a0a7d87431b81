"""Every topic shoal builds is one other brokers can carry: no `.` or space in any level
(NATS closes the connection of a client that uses one), nothing but ids between the `/`."""

from __future__ import annotations

import inspect
import re
from collections.abc import Iterator

import pytest

from broker import topics as topics_module
from broker.errors import BrokerError
from broker.nats_conf import mqtt_subjects
from broker.topics import Topics, check_id

# the longest, most varied ids check_id allows (certs.identity issues base36 ids and prefixes)
IDS = ["0", "z" * 64, "adm-0a9z", "mon-" + "9" * 21, "x-y-z"]
_TOPIC = re.compile(r"^[0-9a-z-]+(/([0-9a-z-]+|\+|#))*$")
# Home Assistant's discovery topics, outside shoal/: its object ids allow `_` and capitals
_DISCOVERY = re.compile(r"^[0-9A-Za-z_-]+(/([0-9A-Za-z_-]+|\+|#))*$")
PARSERS = {"node_of", "logs_node_of", "parse_stack_ctl"}
FIELDS = {"cluster_id"}


def _built_topics() -> Iterator[tuple[str, str]]:
    for value in IDS:
        t = Topics(value)
        for name, member in inspect.getmembers(Topics):
            if name.startswith("_") or name in PARSERS | FIELDS:
                continue
            if isinstance(member, property):
                yield name, getattr(t, name)
                continue
            method = getattr(t, name)
            params = inspect.signature(method).parameters.values()
            if any(p.kind is p.VAR_POSITIONAL for p in params):
                yield name, method(value, value, value)
            else:
                yield name, method(*(value for _ in params))
        for name in ("enroll_req", "enroll_resp"):
            yield name, getattr(topics_module, name)(value)
    yield "ENROLL_REQ_FILTER", topics_module.ENROLL_REQ_FILTER


def test_every_topic_builder_is_covered() -> None:
    names = {name for name, _ in _built_topics()}
    assert {"node_state", "node_logs", "logs_for", "mgr_raft", "stack_ctl", "mon", "base"} <= names
    assert len(names) >= 20


@pytest.mark.parametrize(("builder", "topic"), list(_built_topics()))
def test_topics_hold_ids_only_and_map_to_nats_subjects(builder: str, topic: str) -> None:
    assert "." not in topic and " " not in topic, builder
    pattern = _DISCOVERY if builder.startswith("discovery") else _TOPIC
    assert pattern.match(topic), f"{builder} built {topic!r}"
    assert mqtt_subjects(topic)


@pytest.mark.parametrize("bad", ["a.b", "a b", "A", "", "a/b", "+", "#", "a" * 65, "-a"])
def test_ids_that_could_not_be_one_level_on_every_broker_are_refused(bad: str) -> None:
    with pytest.raises(BrokerError, match="cannot be a topic level"):
        check_id(bad)
