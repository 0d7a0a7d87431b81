"""`service logs` on the node: a task's output for the manager that asks.

Messages a manager sends on the node's ``node/<id>/resp`` topic:

- "logs" {"task_id", "tail", "since"}: the node answers "logs-reply" on ``node/<id>/req`` with
  {"ok": true, "lines": [[ns, text], ...], "truncated": bool}: at most :data:`MAX_BYTES` of
  text per task (the newest lines), none older than ``since`` (ns since the epoch, 0: all).
- "logs-follow" {"task_id", "stream", "since", "lease"}: the node answers "logs-reply"
  {"ok": true} and then publishes the task's new lines on ``node/<id>/logs/<manager>`` as
  "logs-lines" {"stream", "lines", "dropped"} (each message at most
  :data:`~agent.model.logs.MESSAGE_BYTES` of text, at most
  :data:`~agent.model.logs.LINES_PER_SECOND` lines a second; "dropped" counts what the limit
  left out), and "logs-end" {"stream"} when the task's output ends.
- "logs-lease" {"streams": [...], "lease"}: the manager still wants these streams for
  ``lease`` more seconds (at most :data:`MAX_LEASE`). A stream whose lease runs out stops, so
  a follower that went away costs nothing after a few seconds.
- "logs-stop" {"streams": [...]}: stop these now.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from agent.model.errors import WorkerError
from agent.model.logs import LINES_PER_SECOND, LogLine, RateLimit, batches, parse_stamped
from agent.worker.executor import Executor
from broker.envelope import Envelope
from broker.errors import BrokerError
from broker.session import Session
from broker.topics import Topics, check_id

__all__ = ["MAX_BYTES", "MAX_LEASE", "NodeLogs"]

log = logging.getLogger("shoal.logs")

MAX_BYTES = 512 * 1024
MAX_LEASE = 30.0
MAX_STREAMS = 64  # followed tasks on one node at once
_FLUSH = 0.1  # seconds a new line may wait to share a message with others
_HELD_BYTES = 4 * 1024 * 1024  # output read and not yet sent, per stream


@dataclass(slots=True)
class _Stream:
    manager: str
    expires: float
    limit: RateLimit
    task: asyncio.Task[None] | None = None
    sent: int = 0


class NodeLogs:
    """The node's half: answers one-shot requests and runs the followed streams."""

    def __init__(
        self,
        session: Session,
        topics: Topics,
        node_id: str,
        executor: Executor,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.session, self.topics, self.node_id = session, topics, node_id
        self.executor = executor
        self.clock = clock
        self.streams: dict[str, _Stream] = {}
        self.lines_sent = 0  # every followed line published (shown by `shoal info`)
        self._side: set[asyncio.Task[None]] = set()
        self._reaper: asyncio.Task[None] | None = None

    def handles(self, kind: str) -> bool:
        return kind in ("logs", "logs-follow", "logs-lease", "logs-stop")

    def on_message(self, env: Envelope) -> None:
        body = env.body if isinstance(env.body, dict) else {}
        if env.type == "logs":
            self._spawn(self._answer(env, body))
        elif env.type == "logs-follow":
            self._spawn(self._follow(env, body))
        elif env.type == "logs-lease":
            lease = _lease(body.get("lease"))
            for sid in _ids(body.get("streams")):
                s = self.streams.get(sid)
                if s is not None and s.manager == env.sender:
                    s.expires = self.clock() + lease
        elif env.type == "logs-stop":
            for sid in _ids(body.get("streams")):
                s = self.streams.get(sid)
                if s is not None and s.manager == env.sender:
                    self._end(sid)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._side.add(task)
        task.add_done_callback(self._side.discard)

    async def _reply(self, env: Envelope, reply: dict[str, Any]) -> None:
        with contextlib.suppress(BrokerError):
            await self.session.send(
                self.topics.node_req(self.node_id), "logs-reply", reply, re=env.seq
            )

    async def _answer(self, env: Envelope, body: dict[str, Any]) -> None:
        task_id, tail, since = body.get("task_id"), body.get("tail"), body.get("since", 0)
        if (
            not isinstance(task_id, str)
            or (tail is not None and (type(tail) is not int or tail < 0))
            or type(since) is not int
        ):
            await self._reply(env, {"ok": False, "error": "malformed logs request"})
            return
        try:
            chunks: list[bytes] = []
            async with asyncio.timeout(10):
                async for piece in self.executor.logs(task_id, tail=tail, since=since):
                    chunks.append(piece)
            lines = [x for x in parse_stamped(b"".join(chunks)) if x.ns >= since]
            kept, size = [], 0
            for x in reversed(lines):
                size += len(x.text.encode()) + 16
                if size > MAX_BYTES:
                    break
                kept.append([x.ns, x.text])
            kept.reverse()
            reply = {"ok": True, "lines": kept, "truncated": len(kept) < len(lines)}
        except (WorkerError, TimeoutError) as exc:
            reply = {"ok": False, "error": str(exc) or "timed out reading the logs"}
        await self._reply(env, reply)

    async def _follow(self, env: Envelope, body: dict[str, Any]) -> None:
        task_id, sid, since = body.get("task_id"), body.get("stream"), body.get("since", 0)
        try:
            if not isinstance(task_id, str) or not isinstance(sid, str) or type(since) is not int:
                raise ValueError
            check_id(sid, "stream id")
            check_id(env.sender, "manager id")
        except (ValueError, BrokerError):
            await self._reply(env, {"ok": False, "error": "malformed logs-follow request"})
            return
        if sid in self.streams or len(self.streams) >= MAX_STREAMS:
            why = "already followed" if sid in self.streams else "too many followed tasks"
            await self._reply(env, {"ok": False, "error": f"{why} on node {self.node_id}"})
            return
        try:
            source = self.executor.logs(task_id, follow=True, since=since)
        except WorkerError as exc:
            await self._reply(env, {"ok": False, "error": str(exc)})
            return
        now = self.clock()
        limit = RateLimit(LINES_PER_SECOND, now)
        stream = self.streams[sid] = _Stream(env.sender, now + _lease(body.get("lease")), limit)
        stream.task = asyncio.create_task(self._pump(sid, stream, source, since))
        self._ensure_reaper()
        await self._reply(env, {"ok": True})

    async def _pump(self, sid: str, stream: _Stream, source: Any, since: int) -> None:
        topic = self.topics.node_logs(self.node_id, stream.manager)
        chunks: list[bytes] = []
        arrived = asyncio.Event()
        state: dict[str, Any] = {"done": False, "error": None, "held": 0}

        async def read() -> None:
            try:
                async for piece in source:
                    if state["held"] > _HELD_BYTES:  # the sender cannot keep up: drop
                        stream.limit.dropped += piece.count(b"\n")
                        continue
                    chunks.append(piece)
                    state["held"] += len(piece)
                    arrived.set()
            except WorkerError as exc:
                state["error"] = str(exc)
            finally:
                state["done"] = True
                arrived.set()

        reader = asyncio.create_task(read())
        buf = b""
        try:
            while not (state["done"] and not chunks):
                await arrived.wait()
                arrived.clear()
                await asyncio.sleep(_FLUSH)  # lines that come together go together
                buf += b"".join(chunks)
                chunks.clear()
                state["held"] = 0
                cut = len(buf) if state["done"] else buf.rfind(b"\n") + 1
                lines = [x for x in parse_stamped(buf[:cut]) if x.ns >= since]
                buf = buf[cut:]
                await self._send_lines(sid, stream, topic, lines)
            end: dict[str, Any] = {"stream": sid}
            if state["error"]:
                end["error"] = state["error"]
            await self.session.send(topic, "logs-end", end)
        except BrokerError as exc:
            log.info("stopped following task logs for %s: %s", stream.manager, exc)
        finally:
            reader.cancel()
            with contextlib.suppress(Exception):
                await source.aclose()
            if self.streams.get(sid) is stream:
                del self.streams[sid]

    async def _send_lines(
        self, sid: str, stream: _Stream, topic: str, lines: list[LogLine]
    ) -> None:
        allowed = stream.limit.take(len(lines), self.clock())
        dropped, stream.limit.dropped = stream.limit.dropped, 0
        groups = list(batches(lines[:allowed])) or ([[]] if dropped else [])
        for i, group in enumerate(groups):
            body = {
                "stream": sid,
                "lines": [[x.ns, x.text] for x in group],
                "dropped": dropped if i == len(groups) - 1 else 0,
            }
            await self.session.send(topic, "logs-lines", body, qos=0)
            self.lines_sent += len(group)
            stream.sent += len(group)

    def _end(self, sid: str) -> None:
        stream = self.streams.pop(sid, None)
        if stream is not None and stream.task is not None:
            stream.task.cancel()

    def _ensure_reaper(self) -> None:
        if self._reaper is None or self._reaper.done():
            self._reaper = asyncio.create_task(self._reap())

    async def _reap(self) -> None:
        """End the streams whose lease ran out; stop when none is left."""
        while self.streams:
            await asyncio.sleep(0.5)
            now = self.clock()
            for sid, s in list(self.streams.items()):
                if s.expires <= now:
                    log.info("the follower of stream %s went away: stopping it", sid)
                    self._end(sid)

    async def close(self) -> None:
        for sid in list(self.streams):
            self._end(sid)
        for task in [*self._side, *([self._reaper] if self._reaper else [])]:
            task.cancel()


def _lease(value: Any) -> float:
    return min(float(value), MAX_LEASE) if type(value) in (int, float) and value > 0 else 5.0


def _ids(value: Any) -> list[str]:
    return [x for x in value if isinstance(x, str)] if isinstance(value, list) else []
