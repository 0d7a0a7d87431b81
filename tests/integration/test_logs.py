"""`service logs` like Docker's: lines of every task merged in time order, --since,
--timestamps, and --follow over the nodes' streams (real mosquitto, real Docker Engine)."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.model.logs import parse_rfc3339
from tests.harness import Cluster, shoal, wait_for

pytestmark = pytest.mark.integration

IMAGE = "shoal/busybox:latest"
_LINE = re.compile(
    r"^(?P<svc>[a-z0-9-]+)\.(?P<slot>\d+)\.(?P<task>[0-9a-z]{12})@(?P<node>\S+)    \| "
    r"(?P<ts>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z) (?P<text>.*)$"
)


def _docker(*args: str) -> str:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=False).stdout


@pytest.fixture
def docker_node(cluster: Cluster) -> Iterator[Path]:
    if not _docker("image", "inspect", "--format", "{{.Id}}", IMAGE).strip():
        pytest.skip(f"the {IMAGE} image is not loaded in the Docker engine")
    node = cluster.join("logd", driver="docker")
    yield node
    cluster_id = cluster.info(cluster.manager)["cluster_id"]
    found = _docker("ps", "-aq", "--filter", f"label=com.shoal.cluster={cluster_id}").split()
    if found:
        _docker("rm", "-f", *found)


def _create(c: Cluster, name: str, script: str, *flags: str) -> None:
    shoal(
        "service", "create", "--detach", "--name", name, "--stop-grace-period", "1s",
        "--constraint", "node.hostname==logd", *flags, IMAGE, "sh", "-c", script,
        data=c.manager,
    )  # fmt: skip


def _logs(c: Cluster, *args: str) -> list[str]:
    return shoal("service", "logs", *args, data=c.manager).stdout.splitlines()


def _container(c: Cluster, service: str, slot: int) -> str:
    out = shoal("service", "ps", "--format", "json", "--no-trunc", service, data=c.manager).stdout
    rows = [json.loads(x) for x in out.splitlines()]
    for r in rows:
        if r["desired_state"] == "running" and r["name"] == f"{service}.{slot}":
            return str(r.get("container_id") or "")
    return ""


def test_two_replicas_lines_come_merged_in_time_order_with_docker_timestamps(
    cluster: Cluster, docker_node: Path
) -> None:
    c = cluster
    _create(
        c, "duo", 'for i in 1 2 3; do echo "line $i"; sleep 0.3; done; sleep 600', "--replicas", "2"
    )
    lines = wait_for(
        lambda: (got := _logs(c, "--timestamps", "duo")) and len(got) == 6 and got,
        30,
        "three lines of each replica",
    )
    parsed = [_LINE.match(x) for x in lines]
    assert all(parsed), lines
    stamps = [parse_rfc3339(m["ts"]) for m in parsed if m]
    assert stamps == sorted(stamps), lines
    assert {m["slot"] for m in parsed if m} == {"1", "2"}
    assert {m["node"] for m in parsed if m} == {"logd"}
    for slot in ("1", "2"):  # each task's own lines keep their order
        assert [m["text"] for m in parsed if m and m["slot"] == slot] == [
            "line 1",
            "line 2",
            "line 3",
        ]
    # the other prefixes Docker offers
    raw = _logs(c, "--raw", "duo")
    assert sorted(raw) == sorted(m["text"] for m in parsed if m)
    bare = _logs(c, "--no-task-ids", "duo")
    assert all(re.match(r"^duo\.[12]@logd    \| line \d$", x) for x in bare), bare
    full = _logs(c, "--no-trunc", "--tail", "1", "duo")
    assert len(full) == 2 and all(re.match(r"^duo\.[12]\.[0-9a-z]{25}@logd", x) for x in full), full


def test_since_leaves_out_the_lines_written_before_it(cluster: Cluster, docker_node: Path) -> None:
    c = cluster
    _create(c, "late", "echo early; sleep 1.2; echo later; sleep 600")
    lines = wait_for(
        lambda: (got := _logs(c, "-t", "late")) and len(got) == 2 and got, 30, "both lines"
    )
    later = _LINE.match(lines[1])
    assert later and later["text"] == "later", lines
    assert [
        x.split(" ", 1)[1] for x in _logs(c, "--raw", "-t", "--since", later["ts"], "late")
    ] == ["later"]
    assert len(_logs(c, "--since", "10m", "late")) == 2
    bad = shoal("service", "logs", "--since", "yesterday", "late", data=c.manager, check=False)
    assert bad.returncode != 0 and "--since" in bad.stderr and "Traceback" not in bad.stderr


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class _Follower:
    """`shoal service logs --follow` in a process of its own, its lines collected."""

    def __init__(self, c: Cluster, *args: str) -> None:
        # -X faulthandler: a follower that does not exit is aborted and says where it hung
        cmd = [
            sys.executable,
            "-X",
            "faulthandler",
            "-m",
            "agent.cli",
            "--data-dir",
            str(c.manager),
        ]
        self.proc = subprocess.Popen(
            [*cmd, "service", "logs", "--follow", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            # as a command in the foreground of a terminal has it: a suite started in the
            # background (`scripts/test &`) hands its children SIGINT ignored, and Python
            # keeps it so, which made this follower deaf to the Ctrl-C below
            preexec_fn=_default_sigint,
        )
        self.lines: list[str] = []
        self.errors: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        # stderr is drained as it comes too: a full pipe would block the command's exit
        self._errors = threading.Thread(target=self._read_errors, daemon=True)
        self._errors.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def _read_errors(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.errors.append(line)

    def has(self, text: str) -> list[str]:
        return [x for x in self.lines if x.endswith("| " + text)]

    def stop(self, sig: int) -> tuple[int, str]:
        self.proc.send_signal(sig)
        try:
            rc = self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.send_signal(signal.SIGABRT)
            self.proc.wait(10)
            self._errors.join(10)
            raise AssertionError("the follow did not exit:\n" + "".join(self.errors)) from None
        self._errors.join(10)
        return rc, "".join(self.errors)


def test_follow_prints_new_lines_and_new_tasks_until_interrupted(
    cluster: Cluster, docker_node: Path
) -> None:
    c = cluster
    _create(c, "chat", "echo hello; sleep 600")
    wait_for(lambda: _logs(c, "chat"), 30, "the first line")
    f = _Follower(c, "chat")
    try:
        wait_for(lambda: f.has("hello"), 15, "the line written before the follow began")
        container = _container(c, "chat", 1)
        assert container
        _docker("exec", container, "sh", "-c", "echo after > /proc/1/fd/1")
        wait_for(lambda: f.has("after"), 15, "a line written after the follow began")
        shoal("service", "scale", "--detach", "chat=2", data=c.manager)
        wait_for(lambda: any(x.startswith("chat.2.") for x in f.has("hello")), 30, "the new task")
        rc, err = f.stop(signal.SIGINT)
    finally:
        if f.proc.poll() is None:
            f.proc.kill()
    assert rc == 0 and "Traceback" not in err, err
    assert len(f.has("hello")) == 2 and len(f.has("after")) == 1, f.lines


def test_a_killed_follower_leaves_no_node_streaming(cluster: Cluster, docker_node: Path) -> None:
    c = cluster
    _create(c, "ticker", "while true; do echo tick; sleep 0.1; done")
    wait_for(lambda: _logs(c, "ticker"), 30, "ticks")
    f = _Follower(c, "--tail", "0", "ticker")
    try:
        wait_for(lambda: f.has("tick"), 15, "ticks through the follow")
        info: dict[str, Any] = c.info(docker_node)
        assert info["log_streams"] == 1 and info["log_lines_sent"] > 0
        f.proc.kill()
        f.proc.wait(10)
    finally:
        if f.proc.poll() is None:
            f.proc.kill()
    wait_for(lambda: c.info(docker_node)["log_streams"] == 0, 8, "the node's stream ended")
    sent = c.info(docker_node)["log_lines_sent"]
    shoal("service", "ps", "ticker", data=c.manager)  # a few ticks later
    assert c.info(docker_node)["log_lines_sent"] == sent
