"""`service logs` on a manager: the lines of a service's tasks, asked of the nodes that run
them (the node's half, and the messages, are in agent/logs.py).

:meth:`TaskLogs.once` asks each node once and merges the answers in time order.
:meth:`TaskLogs.follow` does that, then asks each node to stream its tasks' new lines to this
manager (``node/<node>/logs/<this manager>``), starts streams for tasks that start later
(a scale-up, a restart), renews every stream's lease each second and stops them all when the
follower goes away or the service is removed. A manager that dies renews nothing: its streams
end when their lease runs out.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from agent.manager.control.services import find_service
from agent.manager.store import Node, Service, Task
from agent.model.errors import ShoalError
from agent.model.logs import LogLine
from broker.envelope import Envelope
from broker.errors import BrokerError
from broker.session import Session, raise_for_reply
from broker.topics import Topics

__all__ = ["LEASE", "TaskLogs"]

log = logging.getLogger("shoal.manager.logs")

LEASE = 5.0  # seconds a node keeps streaming without hearing from this manager
_RENEW = 1.0
_SCAN = 0.5  # how often the service's tasks are looked at for new ones


@dataclass(slots=True)
class _Follow:
    queue: asyncio.Queue[tuple[str, Envelope]] = field(
        default_factory=lambda: asyncio.Queue(maxsize=1000)
    )
    streams: dict[str, tuple[str, str]] = field(default_factory=dict)  # stream: (task, node)


def _row(service: str, t: Any, hostname: str, line: LogLine) -> dict[str, Any]:
    return {
        "ns": line.ns,
        "text": line.text,
        "service": service,
        "slot": str(t.slot) if t.slot else t.node_id,
        "task_id": t.id,
        "node": hostname,
    }


def _lines(body: Any) -> list[LogLine]:
    raw = body.get("lines") if isinstance(body, dict) else None
    if not isinstance(raw, list):
        return []
    return [
        LogLine(x[0], x[1])
        for x in raw
        if isinstance(x, list) and len(x) == 2 and type(x[0]) is int and isinstance(x[1], str)
    ]


class TaskLogs:
    def __init__(self, session: Session, topics: Topics, manager_id: str) -> None:
        self.session, self.topics, self.manager_id = session, topics, manager_id
        self._follows: dict[str, _Follow] = {}  # stream id: the follow it belongs to

    def subscribe(self) -> None:
        self.session.on(self.topics.logs_for(self.manager_id), self.on_lines)

    async def on_lines(self, topic: str, env: Envelope) -> None:
        body = env.body if isinstance(env.body, dict) else {}
        sid = body.get("stream")
        f = self._follows.get(sid) if isinstance(sid, str) else None
        node = self.topics.logs_node_of(topic)
        if f is None or node is None or f.streams.get(str(sid), ("", ""))[1] != node:
            return  # a stream that ended, or not one of ours: nothing to do
        try:
            f.queue.put_nowait((str(sid), env))
        except asyncio.QueueFull:
            log.warning("the follower of stream %s is slow: lines dropped", sid)

    # one answer ------------------------------------------------------------------------
    async def once(self, view: Any, args: dict[str, Any]) -> dict[str, Any]:
        service = find_service(view, str(args.get("service", "")))
        tail, since = args.get("tail"), args.get("since") or 0
        if (tail is not None and type(tail) is not int) or type(since) is not int:
            raise ShoalError("service logs: tail and since must be integers")
        hosts = {n.id: n.hostname for n in view.list(Node)}
        tasks = _tasks_with_output(view, service.id)

        async def one(t: Any) -> tuple[list[dict[str, Any]], str | None]:
            try:
                env = await self.session.request(
                    self.topics.node_resp(t.node_id),
                    "logs",
                    {"task_id": t.id, "tail": tail, "since": since},
                    timeout=15,
                )
                lines = _lines(raise_for_reply(env))
            except BrokerError as exc:
                host = hosts.get(t.node_id, t.node_id)
                return [], f"node {host} did not send the logs of task {t.id}: {exc}"
            host = hosts.get(t.node_id, t.node_id)
            return [_row(service.name, t, host, x) for x in lines], None

        answers = await asyncio.gather(*(one(t) for t in tasks))
        rows = [r for lines, _ in answers for r in lines]
        rows.sort(key=lambda r: r["ns"])  # stable: a task's lines keep their order
        errors = [e for _, e in answers if e]
        return {"lines": rows, "errors": errors, "tasks": [t.id for t in tasks]}

    # following -------------------------------------------------------------------------
    async def follow(
        self, view: Callable[[], Any], args: dict[str, Any]
    ) -> AsyncIterator[dict[str, Any]]:
        """What `service logs --follow` prints, a batch at a time, until the service is
        removed or the caller closes the iterator."""
        started = time.time_ns()
        first = await self.once(view(), args)
        service_id = find_service(view(), str(args.get("service", ""))).id
        yield {"lines": first["lines"], "errors": first["errors"]}
        since = args.get("since") or 0
        last: dict[str, int] = dict.fromkeys(first["tasks"], max(since, started))
        for r in first["lines"]:
            last[r["task_id"]] = r["ns"] + 1
        f = _Follow()
        done: set[str] = set()
        following: dict[str, str] = {}  # task id: stream id
        renewed = 0.0
        try:
            while True:
                v = view()
                service = v.get(Service, service_id)
                if service is None:
                    return
                hosts = {n.id: n.hostname for n in v.list(Node)}
                tasks = {t.id: t for t in _tasks_with_output(v, service_id)}
                for t in tasks.values():
                    if t.id not in following and t.id not in done:
                        sid, error = await self._start(f, t, last.get(t.id, since))
                        if error is None:
                            following[t.id] = sid
                        else:
                            done.add(t.id)
                            yield {"lines": [], "errors": [error]}
                now = time.monotonic()
                if now - renewed >= _RENEW:
                    renewed = now
                    await self._renew(f)
                batch = await _drain(f.queue, _SCAN)
                rows, errors = [], []
                for sid, env in batch:
                    task_id, _node = f.streams.get(sid, ("", ""))
                    t = tasks.get(task_id)
                    if t is None:
                        continue
                    if env.type == "logs-end":
                        done.add(task_id)
                        following.pop(task_id, None)
                        self._forget(f, sid)
                        continue
                    host = hosts.get(t.node_id, t.node_id)
                    rows += [_row(service.name, t, host, x) for x in _lines(env.body)]
                    dropped = env.body.get("dropped") if isinstance(env.body, dict) else 0
                    if type(dropped) is int and dropped > 0:
                        errors.append(
                            f"{dropped} lines of task {task_id} were dropped (rate limit)"
                        )
                if rows or errors:
                    rows.sort(key=lambda r: r["ns"])
                    yield {"lines": rows, "errors": errors}
        finally:
            await self._stop(f)

    async def _start(self, f: _Follow, t: Any, since: int) -> tuple[str, str | None]:
        sid = secrets.token_hex(8)
        f.streams[sid] = (t.id, t.node_id)
        self._follows[sid] = f
        try:
            env = await self.session.request(
                self.topics.node_resp(t.node_id),
                "logs-follow",
                {"task_id": t.id, "stream": sid, "since": since, "lease": LEASE},
                timeout=10,
            )
            raise_for_reply(env)
        except BrokerError as exc:
            self._forget(f, sid)
            return sid, f"cannot follow task {t.id} on node {t.node_id}: {exc}"
        return sid, None

    def _forget(self, f: _Follow, sid: str) -> None:
        f.streams.pop(sid, None)
        self._follows.pop(sid, None)

    def _by_node(self, f: _Follow) -> dict[str, list[str]]:
        nodes: dict[str, list[str]] = {}
        for sid, (_task, node) in f.streams.items():
            nodes.setdefault(node, []).append(sid)
        return nodes

    async def _renew(self, f: _Follow) -> None:
        for node, sids in self._by_node(f).items():
            with contextlib.suppress(BrokerError):
                await self.session.send(
                    self.topics.node_resp(node), "logs-lease", {"streams": sids, "lease": LEASE}
                )

    async def _stop(self, f: _Follow) -> None:
        nodes = self._by_node(f)
        for sid in list(f.streams):
            self._forget(f, sid)
        for node, sids in nodes.items():
            with contextlib.suppress(BrokerError, TimeoutError):
                await asyncio.wait_for(
                    self.session.send(self.topics.node_resp(node), "logs-stop", {"streams": sids}),
                    2,
                )


def _tasks_with_output(view: Any, service_id: str) -> list[Any]:
    """The service's tasks that ran somewhere (history included), oldest first."""
    tasks = [
        t
        for t in view.list(Task)
        if t.service_id == service_id and t.node_id and t.status and t.status.container_id
    ]
    return sorted(tasks, key=lambda t: (t.created, t.id))


async def _drain(
    queue: asyncio.Queue[tuple[str, Envelope]], timeout: float
) -> list[tuple[str, Envelope]]:
    """What arrives within `timeout` (returns as soon as something has, plus what came with it)."""
    try:
        first = await asyncio.wait_for(queue.get(), timeout)
    except TimeoutError:
        return []
    got = [first]
    await asyncio.sleep(0.05)  # lines of several tasks that come together are merged
    while not queue.empty():
        got.append(queue.get_nowait())
    return got
