"""Support of the write-ahead log chaos tests: managers as processes, stopped, damaged on disk
and started again, and what an operator sees of them afterwards."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.manager.wal.records import read_frames
from tests.harness import Cluster, info_of, shoal, start_daemon, wait_for

# the daemon's own bound on stopping after SIGTERM (agent.daemon.STOP_GRACE) plus slack
STOP_WITHIN = 6.5


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except OSError:
        return False


def sigterm(data: Path, proc: subprocess.Popen[bytes] | None = None) -> float:
    """SIGTERM the node's daemon; the seconds it took to end (AssertionError past STOP_WITHIN)."""
    pid = proc.pid if proc is not None else int((data / "shoal.pid").read_text())
    t0 = time.monotonic()
    os.kill(pid, signal.SIGTERM)
    while alive(pid):
        if proc is not None:
            proc.poll()
        if time.monotonic() - t0 > STOP_WITHIN:
            os.kill(pid, signal.SIGKILL)
            raise AssertionError(f"the daemon of {data.name} ignored SIGTERM for {STOP_WITHIN} s")
        time.sleep(0.02)
    if proc is not None:
        proc.wait(5)
    return time.monotonic() - t0


def segments(data: Path) -> list[Path]:
    return sorted((data / "manager" / "raft" / "wal").glob("*.seg"))


def snapshots(data: Path) -> list[Path]:
    return sorted((data / "manager" / "raft" / "snap").glob("*.snap"))


def record_offsets(path: Path) -> list[int]:
    frames, torn = read_frames(path.read_bytes(), path)
    assert torn is None, path
    return [f.offset for f in frames]


def flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x40
    path.write_bytes(bytes(data))


@dataclass
class Managers:
    """Three managers; writes are `cert issue` (each one a committed Raft entry)."""

    cluster: Cluster
    dirs: list[Path]
    acked: list[str] = field(default_factory=list)
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def write(self, n: int = 1) -> None:
        for _ in range(n):
            for d in self.up():
                proc = shoal(
                    "cert", "issue", "monitor", "--out", str(d / "out"), data=d, check=False
                )
                if proc.returncode == 0:
                    self.acked.append(proc.stdout.splitlines()[0])
                    break
            else:
                raise AssertionError("no manager accepted a write")

    def up(self) -> list[Path]:
        return [d for d in self.dirs if (info_of(d) or {}).get("manager")]

    def leader(self) -> Path:
        def find() -> Path | None:
            return next((d for d in self.dirs if (info_of(d) or {}).get("is_leader")), None)

        return wait_for(find, 15, "a leader")

    def follower(self) -> Path:
        """A follower that does not run the broker."""
        lead = self.leader()
        return next(d for d in self.dirs if d not in (lead, self.cluster.manager))

    def listed(self, d: Path) -> int:
        ls = shoal("cert", "ls", data=d, check=False)
        return sum(a in ls.stdout for a in self.acked) if ls.returncode == 0 else -1

    def caught_up(self, d: Path, timeout: float = 20) -> None:
        wait_for(lambda: self.listed(d) == len(self.acked), timeout, f"{d.name} to catch up")

    def restart(self, d: Path) -> subprocess.Popen[bytes]:
        proc = start_daemon(d)
        self.procs.append(proc)
        wait_for(lambda: (info_of(d) or {}).get("connected"), 20, f"{d.name} to connect")
        return proc


@dataclass
class Outcome:
    refused: bool
    error: str
    log: str
    seconds: float


def restart_damaged(m: Managers, d: Path, log_from: int) -> tuple[subprocess.Popen[bytes], Outcome]:
    """Start the damaged manager; wait until it refuses (manager_error) or has caught up."""
    t0 = time.monotonic()
    proc = start_daemon(d)
    m.procs.append(proc)

    def settled() -> dict[str, Any] | None:
        got = info_of(d)
        if got and (got.get("manager_error") or m.listed(d) == len(m.acked)):
            return got
        return None

    got = wait_for(settled, 30, f"{d.name} to refuse or to catch up")
    seconds = time.monotonic() - t0
    time.sleep(1.0)  # let a leader's heartbeats reach it: a loop would show in its log now
    log = (d / "shoal.log").read_text()[log_from:]
    error = str(got.get("manager_error") or "")
    return proc, Outcome(bool(error), error, log, seconds)


def backup(d: Path, to: Path) -> None:
    shutil.rmtree(to, ignore_errors=True)
    shutil.copytree(d / "manager" / "raft", to)


def restore(d: Path, frm: Path) -> None:
    shutil.rmtree(d / "manager" / "raft")
    shutil.copytree(frm, d / "manager" / "raft")
