"""Supervision of the embedded mosquitto: start, wait until it accepts, reload, stop, restart."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from pathlib import Path

from broker.errors import BrokerError
from broker.mosquitto_conf import BrokerFiles

__all__ = ["Mosquitto", "wait_port"]

log = logging.getLogger("shoal.broker")


async def wait_port(host: str, port: int, timeout: float) -> None:
    """Wait until something accepts TCP connections at host:port."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 1.0)
        except (OSError, TimeoutError):
            if time.monotonic() > deadline:
                raise BrokerError(f"nothing accepts connections at {host}:{port}") from None
            await asyncio.sleep(0.05)
            continue
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return


def _stale_pid(files: BrokerFiles) -> int | None:
    """The pid of a mosquitto left running from this config by an earlier daemon."""
    try:
        pid = int(files.pid.read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except (OSError, ValueError):
        return None
    if cmdline and cmdline[0].endswith(b"mosquitto") and str(files.config).encode() in cmdline:
        return pid
    return None


class Mosquitto:
    """One supervised mosquitto process running the generated configuration."""

    def __init__(
        self,
        files: BrokerFiles,
        *,
        connect_host: str,
        ports: tuple[int, ...],
        binary: str = "mosquitto",
    ) -> None:
        self.files = files
        self.connect_host = connect_host
        self.ports = ports
        self.binary = binary
        self.restarts = 0
        self._proc: asyncio.subprocess.Process | None = None
        self._stopping = False
        self._adopted: int | None = None

    @property
    def pid(self) -> int | None:
        if self._adopted is not None:
            return self._adopted if Path(f"/proc/{self._adopted}").exists() else None
        return self._proc.pid if self._proc and self._proc.returncode is None else None

    async def start(self, timeout: float = 15.0) -> None:
        """Start mosquitto and wait until every listener accepts connections."""
        self._stopping = False
        await self._spawn(timeout)

    async def _spawn(self, timeout: float) -> None:
        stale = _stale_pid(self.files)
        if stale is not None:
            # A daemon that died left its broker running: keep it, so the fleet's sessions
            # survive the daemon's restart, and make it re-read its files.
            log.info("adopting the broker left running by an earlier daemon (pid %d)", stale)
            self._adopted = stale
            os.kill(stale, signal.SIGHUP)
            return
        try:
            self._proc = await asyncio.create_subprocess_exec(
                self.binary,
                "-c",
                str(self.files.config),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
                start_new_session=True,
            )
        except FileNotFoundError as exc:
            raise BrokerError(
                f"cannot start the embedded broker: {self.binary!r} is not installed "
                "(apt-get install mosquitto)"
            ) from exc
        try:
            for port in self.ports:
                await self._wait_ready(port, timeout)
        except BrokerError:
            await self._terminate(5.0)
            raise

    async def _wait_ready(self, port: int, timeout: float) -> None:
        assert self._proc is not None
        ready = asyncio.ensure_future(wait_port(self.connect_host, port, timeout))
        died = asyncio.ensure_future(self._proc.wait())
        done, _ = await asyncio.wait({ready, died}, return_when=asyncio.FIRST_COMPLETED)
        if ready in done:
            died.cancel()
            ready.result()
            return
        ready.cancel()
        err = b""
        if self._proc.stderr is not None:
            err = await self._proc.stderr.read()
        tail = self._log_tail() or err.decode(errors="replace").strip()
        raise BrokerError(
            f"the embedded broker exited at start (code {self._proc.returncode}): {tail}"
        )

    def _log_tail(self, lines: int = 3) -> str:
        try:
            text = self.files.log.read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return " | ".join(text[-lines:])

    def reload(self) -> None:
        """Make mosquitto re-read its ACL and CRL files (SIGHUP)."""
        if self.pid is None:
            raise BrokerError("the embedded broker is not running")
        os.kill(self.pid, signal.SIGHUP)

    async def stop(self, timeout: float = 5.0) -> None:
        self._stopping = True
        await self._terminate(timeout)

    async def _terminate(self, timeout: float) -> None:
        adopted, self._adopted = self._adopted, None
        if adopted is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(adopted, signal.SIGTERM)
            for _ in range(int(timeout / 0.05)):
                if not Path(f"/proc/{adopted}").exists():
                    break
                await asyncio.sleep(0.05)
            else:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(adopted, signal.SIGKILL)
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
        """Restart mosquitto whenever it dies, until stop() is called."""
        backoff = 0.2
        while not self._stopping:
            if self._adopted is not None:
                if Path(f"/proc/{self._adopted}").exists():
                    await asyncio.sleep(0.5)
                    continue
                log.error("the adopted broker (pid %d) exited; restarting", self._adopted)
                self._adopted = None
                self.restarts += 1
            proc = self._proc
            if proc is not None:
                code = await proc.wait()
                if self._stopping:
                    return
                log.error("embedded broker exited with code %s; restarting", code)
                self.restarts += 1
            await asyncio.sleep(backoff)
            if self._stopping:
                return
            try:
                await self._spawn(15.0)
                backoff = 0.2
            except BrokerError as exc:
                log.error("%s", exc)
                backoff = min(backoff * 2, 10.0)
