"""How listings read as in Docker: relative times, the secret and config columns, node ls's
columns, and `-f/--filter` handed to the managers as given."""

from __future__ import annotations

from typing import Any

import pytest

from agent.cli import nodes, secrets
from agent.cli.main import build_parser
from agent.cli.output import human_duration, render
from agent.cli.secrets import _COLUMNS, object_rows

NOW = 1_700_000_000.0


def _cells(table: str) -> list[list[str]]:
    """A table's cells, cut where its header's titles start."""
    header, *rows = table.splitlines()
    titles = [t for t in header.split("   ") if t.strip()]
    starts = [header.index(t.strip()) for t in titles]
    ends = [*starts[1:], None]
    return [
        [line[a:b].strip() for a, b in zip(starts, ends, strict=True)] for line in [header, *rows]
    ]


@pytest.mark.parametrize(
    ("seconds", "said"),
    [
        (0.4, "Less than a second"),
        (1, "1 second"),
        (59, "59 seconds"),
        (60, "About a minute"),
        (119, "About a minute"),
        (120, "2 minutes"),
        (59 * 60, "59 minutes"),
        (3600, "About an hour"),
        (5 * 3600, "5 hours"),
        (47 * 3600, "47 hours"),
        (3 * 86400, "3 days"),
        (20 * 86400, "2 weeks"),
        (90 * 86400, "3 months"),
        (800 * 86400, "2 years"),
    ],
)
def test_durations_read_as_docker_words_them(seconds: float, said: str) -> None:
    assert human_duration(seconds) == said


def test_secret_ls_shows_docker_columns_with_relative_times() -> None:
    rows = object_rows(
        [
            {
                "id": "s" * 25,
                "name": "db",
                "created": "2023-11-14T22:11:20.000000+00:00",
                "updated": "2023-11-14T22:13:19.000000+00:00",
            }
        ],
        NOW,
    )
    header, row = _cells(render(rows, _COLUMNS["secret"]))
    assert header == ["ID", "NAME", "DRIVER", "CREATED", "UPDATED"]
    assert row == ["s" * 25, "db", "", "2 minutes ago", "1 second ago"]
    header = render(rows, _COLUMNS["config"]).splitlines()[0]
    assert header.split() == ["ID", "NAME", "CREATED", "UPDATED"]


def _ls(monkeypatch: pytest.MonkeyPatch, module: Any, argv: list[str], answer: Any) -> list[Any]:
    calls: list[Any] = []

    def call(socket: Any, command: str, args: Any = None, **kw: Any) -> Any:
        calls.append((command, args))
        return answer

    monkeypatch.setattr(module.control, "call", call)
    a = build_parser().parse_args(argv)
    assert a.fn(a, _Data()) == 0
    return calls


class _Data:
    socket = "unused"


def test_node_ls_hands_repeated_filters_over_and_shows_the_engine_version(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    node = {
        "id": "n1",
        "hostname": "one",
        "role": "manager",
        "status": "ready",
        "availability": "drain",
        "manager_status": "Leader",
        "engine_version": "27.3.1",
        "self": True,
    }
    calls = _ls(
        monkeypatch, nodes, ["node", "ls", "-f", "role=manager", "--filter", "name=o"], [node]
    )
    assert calls == [("node-ls", {"filters": ["role=manager", "name=o"]})]
    header, row = _cells(capsys.readouterr().out)
    assert header == [
        "ID",
        "HOSTNAME",
        "STATUS",
        "AVAILABILITY",
        "MANAGER STATUS",
        "ENGINE VERSION",
    ]
    assert row == ["n1 *", "one", "Ready", "Drain", "Leader", "27.3.1"]


def test_config_ls_hands_its_filters_over(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _ls(monkeypatch, secrets, ["config", "ls", "-f", "label=env"], [])
    assert calls == [("config-ls", {"filters": ["label=env"]})]
