"""Supervision of one nats-server running a directory written by broker.nats_conf: start,
wait until it listens, reload its users, stop, restart on crash with backoff.

A NATS cluster's MQTT logins need JetStream up on a majority of its servers, so being ready
is not the same as listening: `wait_jetstream` waits for the server's own word in its log.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
from pathlib import Path

from broker.errors import BrokerError
from broker.nats_conf import NatsFiles
from broker.supervisor import wait_port

__all__ = ["NATS_BINARY", "NatsProcess", "nats_binary"]

log = logging.getLogger("shoal.broker")

NATS_BINARY = "nats-server"
_JETSTREAM_READY = ("JetStream cluster new metadata leader", "JetStream cluster metadata leader")


def nats_binary() -> str:
    """The nats-server to run: on PATH, or Debian's (in /usr/sbin, often not on a user's PATH)."""
    found = shutil.which(NATS_BINARY) or shutil.which(NATS_BINARY, path="/usr/sbin:/sbin")
    if found is None:
        raise BrokerError("nats-server is not installed (apt-get install nats-server)")
    return found


def _stale_pid(files: NatsFiles) -> int | None:
    """The pid of a nats-server left running from this directory by an earlier supervisor."""
    try:
        pid = int(files.pid.read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except (OSError, ValueError):
        return None
    if cmdline and cmdline[0].endswith(b"nats-server") and str(files.config).encode() in cmdline:
        return pid
    return None


class NatsProcess:
    """One supervised nats-server for the configuration in `files`."""

    def __init__(
        self, files: NatsFiles, *, connect_host: str, mqtt_port: int, binary: str | None = None
    ) -> None:
        self.files = files
        self.connect_host = connect_host
        self.mqtt_port = mqtt_port
        self.binary = binary
        self.restarts = 0
        self._proc: asyncio.subprocess.Process | None = None
        self._stopping = False
        self._log_from = 0  # where this run's lines start in the log

    @property
    def name(self) -> str:
        return self.files.directory.name

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc and self._proc.returncode is None else None

    async def start(self, timeout: float = 15.0) -> None:
        """Start the server and wait until its MQTT listener accepts connections."""
        self._stopping = False
        await self._spawn(timeout)

    async def _spawn(self, timeout: float) -> None:
        stale = _stale_pid(self.files)
        if stale is not None:  # its ports are taken by it: end it first
            log.info("%s: stopping the server left running (pid %d)", self.name, stale)
            await _end_pid(stale, 5.0)
        binary = self.binary or nats_binary()
        with contextlib.suppress(OSError):
            self._log_from = self.files.log.stat().st_size
        try:
            self._proc = await asyncio.create_subprocess_exec(
                binary,
                "-c",
                str(self.files.config),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.DEVNULL,
                start_new_session=True,
            )
        except OSError as exc:
            raise BrokerError(f"cannot start {binary}: {exc}") from exc
        proc = self._proc
        ready = asyncio.ensure_future(wait_port(self.connect_host, self.mqtt_port, timeout))
        died = asyncio.ensure_future(proc.wait())
        done, _ = await asyncio.wait({ready, died}, return_when=asyncio.FIRST_COMPLETED)
        if ready in done:
            died.cancel()
            try:
                ready.result()
            except BrokerError:
                await self._terminate(5.0)
                raise
            return
        ready.cancel()
        raise BrokerError(
            f"nats-server {self.name} exited at start (code {proc.returncode}): {self.log_tail()}"
        )

    def log_tail(self, lines: int = 3) -> str:
        try:
            text = self.files.log.read_text(errors="replace").strip().splitlines()
        except OSError:
            return "no log"
        return " | ".join(text[-lines:])

    def jetstream_ready(self) -> bool:
        """Whether the server's log says, since it started, that its JetStream cluster has a
        leader."""
        try:
            with self.files.log.open("rb") as f:
                f.seek(self._log_from)
                text = f.read().decode(errors="replace")
        except OSError:
            return False
        if "Server is ready" in text and "Starting JetStream cluster" not in text:
            return True  # a server alone: its JetStream needs no election
        return any(mark in text for mark in _JETSTREAM_READY)

    async def wait_jetstream(self, timeout: float) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not self.jetstream_ready():
            if loop.time() > deadline:
                raise BrokerError(
                    f"nats-server {self.name}: JetStream has no leader after {timeout:g} s"
                    f" (are the other servers running?): {self.log_tail()}"
                )
            await asyncio.sleep(0.2)

    def reload(self) -> None:
        """Make the server read its files again (SIGHUP: what `nats-server --signal reload`
        sends)."""
        if self.pid is None:
            raise BrokerError(f"nats-server {self.name} is not running")
        os.kill(self.pid, signal.SIGHUP)

    async def stop(self, timeout: float = 5.0) -> None:
        self._stopping = True
        await self._terminate(timeout)

    async def _terminate(self, timeout: float) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), timeout)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()

    async def supervise(self) -> None:
        """Restart the server whenever it dies, until stop() is called."""
        backoff = 0.2
        while not self._stopping:
            proc = self._proc
            if proc is not None:
                code = await proc.wait()
                if self._stopping:
                    return
                log.error("nats-server %s exited with code %s; restarting", self.name, code)
                self.restarts += 1
                self._proc = None
            await asyncio.sleep(backoff)
            if self._stopping:
                return
            try:
                await self._spawn(15.0)
                backoff = 0.2
            except BrokerError as exc:
                log.error("%s", exc)
                backoff = min(backoff * 2, 10.0)


async def _end_pid(pid: int, timeout: float) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    for _ in range(int(timeout / 0.05)):
        if not Path(f"/proc/{pid}").exists():
            return
        await asyncio.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
