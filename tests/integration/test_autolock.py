"""Autolock: a restarted manager keeps its Raft log and TLS key sealed until it is given the
swarm's unlock key; the key can be rotated and autolock turned off."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness import Cluster, info_of, new_cluster, shoal, wait_for

pytestmark = pytest.mark.integration


@pytest.fixture
def locked(tmp_path: Path) -> Iterator[tuple[Cluster, str]]:
    with new_cluster(tmp_path, "--autolock") as (c, out):
        key = next(x.strip() for x in out.splitlines() if x.strip().startswith("SHLKEY-1-"))
        yield c, key


def _restart(data: Path) -> None:
    os.kill(int((data / "shoal.pid").read_text()), signal.SIGKILL)
    with open(data / "shoal.log", "ab") as log:
        subprocess.Popen(
            [sys.executable, "-m", "agent.cli", "daemon", "--data-dir", str(data)],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    wait_for(lambda: info_of(data) is not None, 15, "the daemon's control socket")


def _unlock(data: Path, key: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agent.cli", "swarm", "unlock", "--data-dir", str(data)],
        input=key + "\n",
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_a_restarted_manager_waits_for_the_unlock_key(locked) -> None:  # type: ignore[no-untyped-def]
    c, key = locked
    token = c.token()
    assert shoal("swarm", "unlock-key", "-q", data=c.manager).stdout.strip() == key
    # nothing of the cluster's state lies on disk in the clear
    for f in (c.manager / "manager" / "raft").rglob("*"):
        if f.is_file():
            assert token.encode() not in f.read_bytes(), f
    assert b"ENCRYPTED PRIVATE KEY" in (c.manager / "tls/node-key.pem").read_bytes()
    assert not (c.manager / "manager" / "ca-key.pem").exists()

    _restart(c.manager)
    assert (info_of(c.manager) or {})["locked"] is True
    refused = shoal("node", "ls", data=c.manager, check=False)
    assert refused.returncode == 1 and "needs to be unlocked" in refused.stderr
    wrong = _unlock(c.manager, "SHLKEY-1-" + "a" * 52)
    assert wrong.returncode == 1 and "invalid key" in wrong.stderr
    ok = _unlock(c.manager, key)
    assert ok.returncode == 0, ok.stderr
    wait_for(lambda: (info_of(c.manager) or {}).get("connected"), 15, "the manager to connect")
    assert c.token() == token  # the state came back from the encrypted log


def test_rotated_key_replaces_the_old_one(locked) -> None:  # type: ignore[no-untyped-def]
    c, old = locked
    out = shoal("swarm", "unlock-key", "--rotate", data=c.manager).stdout
    assert "Successfully rotated manager unlock key." in out
    new = next(line.strip() for line in out.splitlines() if line.strip().startswith("SHLKEY-1-"))
    assert new != old
    wait_for(lambda: b"ENCRYPTED" in (c.manager / "tls/node-key.pem").read_bytes(), 5, "rewrap")
    _restart(c.manager)
    assert _unlock(c.manager, old).returncode == 1
    assert _unlock(c.manager, new).returncode == 0


def test_autolock_can_be_turned_off(locked) -> None:  # type: ignore[no-untyped-def]
    c, _ = locked
    assert "Swarm updated." in shoal("swarm", "update", "--autolock=false", data=c.manager).stdout
    wait_for(lambda: b"ENCRYPTED" not in (c.manager / "tls/node-key.pem").read_bytes(), 5, "unwrap")
    _restart(c.manager)
    wait_for(lambda: (info_of(c.manager) or {}).get("connected"), 15, "start without a key")
    assert (info_of(c.manager) or {})["locked"] is False


def test_managers_joining_a_locked_swarm_lock_too(locked) -> None:  # type: ignore[no-untyped-def]
    c, key = locked
    m2 = c.join("m2", role="manager")
    try:
        wait_for(lambda: b"ENCRYPTED" in (m2 / "tls/node-key.pem").read_bytes(), 10, "m2 locks")
        _restart(m2)
        assert (info_of(m2) or {})["locked"] is True
        assert _unlock(m2, key).returncode == 0
        wait_for(lambda: (info_of(m2) or {}).get("connected"), 15, "m2 to connect")
    finally:
        shoal("swarm", "leave", "--force", data=m2, check=False)
