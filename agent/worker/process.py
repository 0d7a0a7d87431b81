"""The ``process`` driver: tasks as supervised local processes, for devices with no engine.

A task's ``argv`` is its container's ``command`` (or, without one, ``image`` naming the
executable) followed by ``args``. Each task gets ``<state dir>/processes/<task id>/`` holding
``process.json`` (pid, boot id, start time, argv, labels) and ``output.log`` (stdout and stderr,
each line timestamped by :mod:`agent.worker.stamper`).
Processes run in their own session, so they outlive an agent restart; the new agent re-adopts a
process when ``/proc/<pid>`` still shows the same process: same boot, same start time (a shell's
``exec`` changes ``/proc/<pid>/cmdline``, never the start time), falling back to comparing the
command line where the start time cannot be read.

Mounts, devices, secrets and configs cannot be honoured here and are rejected; resource limits,
published ports and healthchecks are not enforced by this driver.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import pwd
import shutil
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Collection, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

from agent.model import Assignment
from agent.model.errors import DriverError, TaskRejected
from agent.model.logs import parse_stamped, stamp
from agent.worker.driver import Observation, Owned, TaskRef, owned_for
from agent.worker.saved import write_atomic
from agent.worker.taskfiles import NO_FILES, TaskFiles
from agent.worker.usage import TaskCounters, parse_pid_stat, parse_status_rss

__all__ = ["ProcessDriver"]

log = logging.getLogger("shoal.worker.process")

_DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_RECORD = "process.json"
_LOG = "output.log"
_FOLLOW_INTERVAL = 0.25
_STAMPER = Path(__file__).with_name("stamper.py")
_STAMPERS: list[subprocess.Popen[bytes]] = []  # reaped as new ones start


@dataclass(slots=True)
class _Record:
    owned: dict[str, Any]
    pid: int
    boot_id: str
    start_time: int | None
    cmdline: list[str]
    stop_signal: str
    exit_code: int | None = None

    @classmethod
    def load(cls, path: Path) -> _Record | None:
        try:
            data = json.loads(path.read_text())
            record = cls(**data)
            Owned(**record.owned)
        except FileNotFoundError:
            return None
        except (OSError, ValueError, TypeError) as exc:
            log.warning("ignoring unreadable process record %s: %s", path, exc)
            return None
        return record


class TaskNetwork(Protocol):
    async def namespace_for(self, a: Assignment) -> str | None: ...


class ProcessDriver:
    name = "process"

    def __init__(self, state_dir: Path, *, kill_timeout: float = 10.0) -> None:
        self._root = Path(state_dir) / "processes"
        # Our own children, to read their exit codes. Not asyncio's subprocess transports:
        # those kill a still-running child when collected, and tasks must outlive the agent.
        self._children: dict[str, subprocess.Popen[bytes]] = {}
        self._kill_timeout = kill_timeout
        # Set by the node agent: gives a task that joins networks its network namespace.
        self.network: TaskNetwork | None = None

    def _dir(self, task_id: str) -> Path:
        return self._root / task_id

    def _record(self, ref: TaskRef) -> _Record | None:
        record = _Record.load(self._dir(ref.task_id) / _RECORD)
        if record is None:
            return None
        owned = record.owned
        if owned["cluster_id"] != ref.cluster_id or owned["node_id"] != ref.node_id:
            return None
        return record

    # -- prepare / start ------------------------------------------------------------------

    async def prepare(self, a: Assignment, files: TaskFiles = NO_FILES) -> None:
        c = a.spec.container
        if c.secrets or c.configs:
            raise TaskRejected(
                f"task {a.task_id} uses secrets or configs, which the process driver cannot "
                "give it: a process has no view of its own to mount them into; run it on a "
                "node with a container engine"
            )
        if c.mounts or c.devices:
            raise TaskRejected(
                f"task {a.task_id} needs mounts or devices, which the process driver cannot "
                "provide; run it on a node with a container engine"
            )
        argv = _argv(a)
        env = _env(a)
        if shutil.which(argv[0], path=env["PATH"]) is None:
            raise TaskRejected(f"executable {argv[0]} is not found on this node")
        if c.dir and not os.path.isdir(c.dir):
            raise TaskRejected(f"working directory {c.dir} does not exist on this node")
        _user(c.user)

    async def start(self, a: Assignment) -> str:
        record = self._record(a)
        if record is not None and self._alive(a.task_id, record):
            return _runtime_id(record)
        c = a.spec.container
        argv = _argv(a)
        env = _env(a)
        uid, gid = _user(c.user)
        netns = await self.network.namespace_for(a) if self.network is not None else None
        if netns is not None:  # ip execs the task in place: same pid, same start time
            drop = []
            if uid is not None:
                group = uid if gid is None else gid
                drop = ["setpriv", f"--reuid={uid}", f"--regid={group}", "--clear-groups"]
            argv = ["ip", "netns", "exec", netns, *drop, *argv]
            uid = gid = None
        directory = self._dir(a.task_id)
        try:
            proc = await asyncio.to_thread(
                _spawn, argv, directory, cwd=c.dir or None, env=env, uid=uid, gid=gid
            )
        except OSError as exc:
            raise DriverError(f"cannot start {argv[0]}: {exc.strerror or exc}") from exc
        self._children[a.task_id] = proc
        record = _Record(
            owned=asdict(owned_for(a, f"pid-{proc.pid}")),
            pid=proc.pid,
            boot_id=_boot_id(),
            start_time=_start_time(proc.pid),
            cmdline=_cmdline(proc.pid) or argv,
            stop_signal=c.stop_signal or "SIGTERM",
        )
        self._save(a.task_id, record)
        return _runtime_id(record)

    def _save(self, task_id: str, record: _Record) -> None:
        data = json.dumps(asdict(record)).encode()
        write_atomic(self._dir(task_id) / _RECORD, data, fsync=False)

    # -- observe ---------------------------------------------------------------------------

    def _alive(self, task_id: str, record: _Record) -> bool:
        """Whether the task's process runs; notes the exit code of our own exited child."""
        child = self._children.get(task_id)
        if child is None or child.pid != record.pid:
            return _same_process(record)
        code = child.poll()
        if code is None:
            return True
        if record.exit_code is None:
            record.exit_code = 128 - code if code < 0 else code
            self._save(task_id, record)
        return False

    async def inspect(self, a: TaskRef) -> Observation:
        record = self._record(a)
        if record is None:
            return Observation("missing")
        if self._alive(a.task_id, record):
            return Observation("running", _runtime_id(record))
        return _exited(record)

    async def wait(self, a: TaskRef) -> Observation:
        record = self._record(a)
        if record is None:
            return Observation("missing")
        child = self._children.get(a.task_id)
        if child is not None and child.pid == record.pid:
            if child.returncode is None:
                await _wait_pid(child.pid)
            self._alive(a.task_id, record)  # reaps it and notes its exit code
            return _exited(record)
        if _same_process(record):
            await _wait_pid(record.pid)
        return _exited(record)

    # -- stop / remove ---------------------------------------------------------------------

    async def stop(self, a: TaskRef, grace: float) -> None:
        record = self._record(a)
        if record is None or not self._alive(a.task_id, record):
            return
        _signal(record, _signum(record.stop_signal))
        try:
            await asyncio.wait_for(self.wait(a), grace)
            return
        except TimeoutError:
            pass
        _signal(record, signal.SIGKILL)
        try:
            await asyncio.wait_for(self.wait(a), self._kill_timeout)
        except TimeoutError as exc:
            raise DriverError(f"process {record.pid} of task {a.task_id} survived SIGKILL") from exc

    async def remove(self, a: TaskRef) -> None:
        if self._record(a) is None:
            return
        await self.stop(a, 0)
        self._children.pop(a.task_id, None)
        await asyncio.to_thread(shutil.rmtree, self._dir(a.task_id), True)

    async def adopt(self) -> list[Owned]:
        if not self._root.is_dir():
            return []
        owned: list[Owned] = []
        for directory in sorted(self._root.iterdir()):
            record = _Record.load(directory / _RECORD)
            if record is not None and record.owned.get("task_id") == directory.name:
                owned.append(Owned(**record.owned))
        return owned

    async def sweep(self, node_id: str, keep: Collection[str]) -> None:
        return None  # a process task's directory goes with the task (``remove``)

    async def logs(
        self, a: TaskRef, *, tail: int | None = None, follow: bool = False, since: int = 0
    ) -> AsyncIterator[bytes]:
        path = self._dir(a.task_id) / _LOG
        try:
            data = await asyncio.to_thread(path.read_bytes)
        except FileNotFoundError:
            return
        offset = len(data)
        if since or tail is not None:
            lines = [x for x in parse_stamped(data) if x.ns >= since]
            if tail is not None:
                lines = lines[-tail:] if tail > 0 else []
            data = b"".join(f"{stamp(x.ns)} {x.text}\n".encode() for x in lines)
        if data:
            yield data
        if not follow:
            return
        quiet = 0  # reads with nothing new since the process ended (its stamper may lag)
        while True:
            record = self._record(a)
            running = record is not None and self._alive(a.task_id, record)
            chunk = await asyncio.to_thread(_read_from, path, offset)
            complete = chunk[: chunk.rfind(b"\n") + 1]  # a line still being written waits
            if complete:
                offset += len(complete)
                yield complete
            quiet = 0 if running or complete else quiet + 1
            if quiet >= 3:
                return
            await asyncio.sleep(_FOLLOW_INTERVAL)  # a log file has no change event to wait on

    async def usage(self, refs: Iterable[TaskRef]) -> dict[str, TaskCounters]:
        """CPU seconds and resident bytes of each running task's process (its own, not its
        children's), from /proc/<pid>/stat and status."""
        ticks = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        out: dict[str, TaskCounters] = {}
        for ref in refs:
            record = self._record(ref)
            if record is None or not _same_process(record):
                continue
            try:
                stat = Path(f"/proc/{record.pid}/stat").read_text()
                status = Path(f"/proc/{record.pid}/status").read_text()
            except OSError:
                continue
            cpu = parse_pid_stat(stat, ticks)
            if cpu is not None:
                out[ref.task_id] = TaskCounters(cpu, parse_status_rss(status) or 0)
        return out

    async def close(self) -> None:
        self._children.clear()


def _spawn(
    argv: list[str],
    directory: Path,
    *,
    cwd: str | None,
    env: dict[str, str],
    uid: int | None,
    gid: int | None,
) -> subprocess.Popen[bytes]:
    """Start ``argv`` in its own session, its output through :mod:`stamper` (timestamped
    lines) appended to the task's log file."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / _LOG).touch()  # there from the start, before the stamper opens it
    stamper = subprocess.Popen(
        [sys.executable, "-I", str(_STAMPER), str(directory / _LOG)],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        close_fds=True,
    )
    assert stamper.stdin is not None
    try:
        return subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=stamper.stdin,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            env=env,
            start_new_session=True,
            user=uid,
            group=gid,
            close_fds=True,
        )
    finally:
        stamper.stdin.close()  # the task holds the only writer now: EOF ends the stamper
        _STAMPERS.append(stamper)
        _STAMPERS[:] = [s for s in _STAMPERS if s.poll() is None]  # reap those that ended


def _read_from(path: Path, offset: int) -> bytes:
    with open(path, "rb") as f:
        f.seek(offset)
        return f.read()


def _argv(a: Assignment) -> list[str]:
    c = a.spec.container
    argv = list(c.command) if c.command else [c.image]
    return argv + list(c.args or ())


def _env(a: Assignment) -> dict[str, str]:
    env = {"PATH": os.environ.get("PATH", _DEFAULT_PATH)}
    for item in a.spec.container.env:
        key, sep, value = item.partition("=")
        if key and sep:
            env[key] = value
    return env


def _user(user: str) -> tuple[int | None, int | None]:
    """``user`` or ``user:group`` (names or numbers) as ids; rejected when not possible here."""
    if not user:
        return None, None
    name, _, group = user.partition(":")
    try:
        entry = pwd.getpwuid(int(name)) if name.isdigit() else pwd.getpwnam(name)
    except KeyError:
        raise TaskRejected(f"user {name} does not exist on this node") from None
    gid = entry.pw_gid
    if group:
        import grp

        try:
            gid = int(group) if group.isdigit() else grp.getgrnam(group).gr_gid
        except KeyError:
            raise TaskRejected(f"group {group} does not exist on this node") from None
    if os.geteuid() != 0:
        if entry.pw_uid == os.geteuid() and gid == os.getegid():
            return None, None
        raise TaskRejected(f"cannot run as user {user}: shoal's agent does not run as root")
    return entry.pw_uid, gid


def _signum(name: str) -> int:
    text = name.upper()
    if text.isdigit():
        return int(text)
    if not text.startswith("SIG"):
        text = "SIG" + text
    try:
        return int(signal.Signals[text])
    except KeyError:
        return int(signal.SIGTERM)


def _signal(record: _Record, signum: int) -> None:
    try:
        if os.getpgid(record.pid) == record.pid:
            os.killpg(record.pid, signum)
        else:
            os.kill(record.pid, signum)
    except ProcessLookupError:
        pass
    except PermissionError as exc:
        raise DriverError(f"cannot signal process {record.pid}: {exc.strerror}") from exc


def _runtime_id(record: _Record) -> str:
    return f"pid-{record.pid}"


def _exited(record: _Record) -> Observation:
    if record.exit_code is None:
        return Observation(
            "exited",
            _runtime_id(record),
            error="the process exited while no agent supervised it; its exit code is unknown",
        )
    return Observation("exited", _runtime_id(record), exit_code=record.exit_code)


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def _stat_fields(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rfind(")") + 2 :].split()


def _start_time(pid: int) -> int | None:
    fields = _stat_fields(pid)
    try:
        return int(fields[19]) if fields else None
    except (IndexError, ValueError):
        return None


def _cmdline(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return [part.decode(errors="replace") for part in raw.split(b"\0")[:-1]] or None


def _same_process(record: _Record) -> bool:
    """True while ``record.pid`` is still the process that was started (and not a zombie)."""
    fields = _stat_fields(record.pid)
    if not fields or fields[0] in ("Z", "X"):
        return False
    if record.boot_id and record.boot_id != _boot_id():
        return False
    if record.start_time is not None:
        return _start_time(record.pid) == record.start_time
    return _cmdline(record.pid) == record.cmdline


async def _wait_pid(pid: int) -> None:
    """Wait for a process that is not our child to exit, by its pidfd (no polling)."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    except OSError:  # no pidfd on this kernel: fall back to watching /proc
        while True:
            if not Path(f"/proc/{pid}").exists():
                return
            await asyncio.sleep(_FOLLOW_INTERVAL)
    loop = asyncio.get_running_loop()
    exited = loop.create_future()

    def ready() -> None:
        if not exited.done():
            exited.set_result(None)

    loop.add_reader(fd, ready)
    try:
        await exited
    finally:
        loop.remove_reader(fd)
        os.close(fd)
