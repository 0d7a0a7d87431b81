"""`shoal events`: Docker's filters, ranges and output, checked with no cluster (the daemon's
half is a stand-in behind the real control socket)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.cli.events import renderer, request
from agent.cli.main import build_parser, main
from agent.control import ControlServer
from agent.model.errors import ShoalError
from agent.model.events import ClusterEvent, EventFilter
from agent.paths import DataDir

T = 1_796_300_000_123_456_789  # 2026-12-03T...Z with nanoseconds
NOW = 1_796_300_600_000_000_000

CREATE = ClusterEvent("service", "create", "abc123", {"name": "web"}, T)
TASK = ClusterEvent(
    "task",
    "update",
    "t1",
    {
        "name": "web.1",
        "service.id": "abc123",
        "service.name": "web",
        "node.id": "n9",
        "node.name": "pi-7",
        "state.old": "starting",
        "state.new": "running",
    },
    T,
)
NODE = ClusterEvent("node", "update", "n9", {"name": "pi-7", "state.new": "down"}, T)


def _args(*argv: str) -> Any:
    return build_parser().parse_args(["events", *argv])


# filters ----------------------------------------------------------------------------------
def test_values_of_one_key_are_alternatives_and_different_keys_must_all_match() -> None:
    f = EventFilter.parse(["type=service", "type=node", "event=create"])
    assert f.matches(CREATE)
    assert not f.matches(NODE)  # a node event, but an update
    assert not f.matches(TASK)


def test_an_object_filter_matches_its_id_a_prefix_of_it_or_its_name() -> None:
    assert EventFilter.parse(["service=abc"]).matches(CREATE)
    assert EventFilter.parse(["service=web"]).matches(CREATE)
    assert not EventFilter.parse(["service=xyz"]).matches(CREATE)
    assert not EventFilter.parse(["service=web"]).matches(NODE)


def test_service_and_node_filters_match_the_events_of_their_tasks() -> None:
    assert EventFilter.parse(["service=web"]).matches(TASK)
    assert EventFilter.parse(["node=pi-7"]).matches(TASK)
    assert EventFilter.parse(["node=n9"]).matches(TASK)
    assert not EventFilter.parse(["secret=web"]).matches(TASK)


def test_every_event_is_of_swarm_scope() -> None:
    assert EventFilter.parse(["scope=swarm"]).matches(CREATE)
    assert not EventFilter.parse(["scope=local"]).matches(CREATE)


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ("colour=red", "invalid filter 'colour': events take config, event, network"),
        ("type=container", "invalid filter 'type=container': type is one of node, service"),
        ("event=start", "invalid filter 'event=start': event is one of create, update, remove"),
        ("service", "bad format of filter 'service' (expected name=value)"),
        ("node=", "invalid filter 'node=': give a value"),
    ],
)
def test_a_bad_filter_says_what_is_wrong(item: str, message: str) -> None:
    with pytest.raises(ShoalError, match=message.replace("(", r"\(").replace(")", r"\)")):
        EventFilter.parse([item])


def test_filters_cross_the_socket_and_come_back_the_same() -> None:
    f = EventFilter.parse(["type=service", "service=web", "service=db"])
    assert f.to_wire() == {"service": ["db", "web"], "type": ["service"]}
    assert EventFilter.from_wire(f.to_wire()) == f
    with pytest.raises(ShoalError, match="must be a list of strings"):
        EventFilter.from_wire({"type": "service"})


# ranges -----------------------------------------------------------------------------------
def test_since_and_until_take_durations_rfc3339_and_unix_timestamps() -> None:
    got = request(_args("--since", "10m", "--until", "2026-12-03T12:00:00Z"), NOW)
    assert got["since"] == NOW - 600 * 10**9
    assert got["until"] == 1_796_299_200 * 10**9
    assert request(_args("--since", "1796300000.5"), NOW)["since"] == 1_796_300_000_500_000_000
    assert request(_args(), NOW) == {"filters": {}, "since": None, "until": None}


def test_a_bad_until_names_the_flag() -> None:
    with pytest.raises(ShoalError, match='invalid value "soon" for "--until"'):
        request(_args("--until", "soon"), NOW)


# output -----------------------------------------------------------------------------------
def test_the_default_line_is_dockers_with_sorted_attributes() -> None:
    show = renderer(None)
    assert (
        show(CREATE.to_dict()) == "2026-12-03T12:13:20.123456789Z service create abc123 (name=web)"
    )
    assert show(TASK.to_dict()).endswith(
        "task update t1 (name=web.1, node.id=n9, node.name=pi-7, service.id=abc123,"
        " service.name=web, state.new=running, state.old=starting)"
    )


def test_json_and_templates_read_dockers_field_names() -> None:
    doc = CREATE.to_dict()
    assert renderer("json")(doc) == (
        '{"Type":"service","Action":"create","Actor":{"ID":"abc123","Attributes":'
        '{"name":"web"}},"scope":"swarm","time":1796300000,"timeNano":1796300000123456789}'
    )
    template = "{{.Type}} {{.Action}} {{.Actor.Attributes.name}} {{.Scope}} {{.TimeNano}}"
    assert renderer(template)(doc) == f"service create web swarm {T}"
    dotted = '{{index .Actor.Attributes "state.new"}} {{index .Actor.Attributes "nope"}}|'
    assert renderer(dotted)(TASK.to_dict()) == "running |"


# the command, against a daemon stand-in ---------------------------------------------------
@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[tuple[Path, list[dict[str, Any]]]]:
    """A control socket whose `events` streams one batch of two events, then ends (as a
    range that is over does); it records what it was asked."""
    asked: list[dict[str, Any]] = []

    async def events() -> AsyncIterator[dict[str, Any]]:
        yield {"events": [CREATE.to_dict(), NODE.to_dict()], "dropped": 0}

    async def dispatch(cmd: str, args: dict[str, Any]) -> Any:
        asked.append({"cmd": cmd, **args})
        return events()

    loop = asyncio.new_event_loop()
    server = ControlServer(DataDir(tmp_path).socket, dispatch)
    loop.run_until_complete(server.start())
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield tmp_path, asked
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.run_until_complete(server.close())
        loop.close()


def test_events_prints_each_event_the_daemon_streams_and_exits_0(
    daemon: tuple[Path, list[dict[str, Any]]], capsys: pytest.CaptureFixture[str]
) -> None:
    data, asked = daemon
    rc = main(
        ["events", "--since", "1h", "--until", "0s", "-f", "type=node", "--data-dir", str(data)]
    )
    assert rc == 0
    assert capsys.readouterr().out.splitlines() == [CREATE.line(), NODE.line()]
    [call] = asked
    assert call["cmd"] == "events" and call["filters"] == {"type": ["node"]}
    assert call["until"] - call["since"] == 3600 * 10**9


def test_a_bad_flag_value_is_one_line_and_asks_the_daemon_nothing(
    daemon: tuple[Path, list[dict[str, Any]]], capsys: pytest.CaptureFixture[str]
) -> None:
    data, asked = daemon
    assert main(["events", "--filter", "colour=red", "--data-dir", str(data)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "invalid filter 'colour'" in err[0]
    assert main(["events", "--format", "{{.Type", "--data-dir", str(data)]) == 1
    assert "unclosed action" in capsys.readouterr().err
    assert asked == []
