"""The local control socket: the CLI talks to its node's daemon through it.

One JSON object per line each way: ``{"cmd": ..., "args": {...}}`` in,
``{"ok": true, "result": ...}`` or ``{"ok": false, "error": "..."}`` out. A command whose
result is an async iterator (``service logs --follow``) streams: ``{"ok": true, "more": ...}``
per item, then the usual last line; closing the connection ends the iterator. The socket is
mode 0600 in the node's data dir, so only its owner can drive the daemon.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Generator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent.model.errors import ShoalError

if TYPE_CHECKING:
    import asyncio

__all__ = ["ControlServer", "call", "stream"]

log = logging.getLogger("shoal.control")

Dispatch = Callable[[str, dict[str, Any]], Awaitable[Any]]
_MAX_LINE = 8 * 1024 * 1024


class ControlServer:
    def __init__(self, path: Path, dispatch: Dispatch) -> None:
        self.path = path
        self.dispatch = dispatch
        self._server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        old = os.umask(0o177)
        try:
            import asyncio

            self._server = await asyncio.start_unix_server(
                self._serve, path=str(self.path), limit=_MAX_LINE
            )
        finally:
            os.umask(old)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await reader.readline()
            try:
                req = json.loads(line)
                if not isinstance(req, dict) or not isinstance(req.get("cmd"), str):
                    raise ValueError("expected {'cmd': ..., 'args': {...}}")
                args = req.get("args") or {}
                if not isinstance(args, dict):
                    raise ValueError("args must be an object")
                result = await self.dispatch(req["cmd"], args)
                if isinstance(result, AsyncIterator):
                    await self._stream(result, reader, writer)
                    result = None
                resp: dict[str, Any] = {"ok": True, "result": result}
            except ShoalError as exc:
                resp = {"ok": False, "error": str(exc)}
            except ValueError as exc:
                resp = {"ok": False, "error": f"bad control request: {exc}"}
            except Exception as exc:
                log.exception("control command failed")
                resp = {"ok": False, "error": f"internal error: {exc}"}
            writer.write(json.dumps(resp, default=str).encode() + b"\n")
            await writer.drain()
        except (ConnectionError, EOFError, ValueError):  # incomplete or overlong request
            pass
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _stream(
        self, items: AsyncIterator[Any], reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        """Write each item until the iterator ends or the caller hangs up (which closes the
        iterator: its cleanup runs)."""
        import asyncio

        async def pump() -> None:
            async for item in items:
                writer.write(json.dumps({"ok": True, "more": item}, default=str).encode() + b"\n")
                await writer.drain()

        pumping = asyncio.ensure_future(pump())
        hangup = asyncio.ensure_future(reader.read())  # the caller sends nothing more: EOF
        try:
            await asyncio.wait({pumping, hangup}, return_when=asyncio.FIRST_COMPLETED)
            if not pumping.done():
                raise ConnectionError("the caller went away")
            pumping.result()
        finally:
            for task in (pumping, hangup):
                task.cancel()
            with contextlib.suppress(BaseException):
                await pumping
            aclose = getattr(items, "aclose", None)
            if aclose is not None:
                with contextlib.suppress(Exception):
                    await aclose()


def _send_request(sock: socket.socket, path: Path, cmd: str, args: dict[str, Any] | None) -> None:
    try:
        sock.connect(str(path))
    except (FileNotFoundError, ConnectionRefusedError):
        raise ShoalError(
            f"the shoal daemon of {path.parent} is not running"
            " (start it with `shoal daemon`, or check --data-dir)"
        ) from None
    sock.sendall(json.dumps({"cmd": cmd, "args": args or {}}).encode() + b"\n")


def call(path: Path, cmd: str, args: dict[str, Any] | None = None, *, timeout: float = 60) -> Any:
    """Send one command to the daemon and return its result (blocking; for the CLI)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        _send_request(sock, path, cmd, args)
        buf = b""
        while not buf.endswith(b"\n"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            buf += chunk
    except TimeoutError:
        raise ShoalError(f"the daemon did not answer {cmd!r} within {timeout:g} s") from None
    except OSError as exc:
        raise ShoalError(f"cannot talk to the daemon at {path}: {exc}") from exc
    finally:
        sock.close()
    try:
        resp = json.loads(buf)
    except ValueError:
        raise ShoalError("the daemon closed the connection without an answer") from None
    if not resp.get("ok"):
        raise ShoalError(str(resp.get("error")))
    return resp.get("result")


def stream(path: Path, cmd: str, args: dict[str, Any] | None = None) -> Generator[Any, None, None]:
    """Send a streaming command and yield its items as they come (blocking; for the CLI).
    Closing the generator hangs up, which ends the command in the daemon."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        _send_request(sock, path, cmd, args)
        with sock.makefile("rb") as lines:
            for line in lines:
                try:
                    resp = json.loads(line)
                except ValueError:
                    raise ShoalError("the daemon sent a line that is not JSON") from None
                if not resp.get("ok"):
                    raise ShoalError(str(resp.get("error")))
                if "more" not in resp:
                    return
                yield resp["more"]
        raise ShoalError("the daemon closed the connection")
    except OSError as exc:
        raise ShoalError(f"cannot talk to the daemon at {path}: {exc}") from exc
    finally:
        sock.close()
