"""`service logs`: managers ask each node for its tasks' output over MQTT.

The manager sends "logs" {"task_id", "tail"} on the node's ``node/<id>/resp`` topic; the node
answers "logs-reply" on its ``node/<id>/req`` topic with {"ok": true, "data": bytes,
"truncated": bool}. A node sends at most :data:`MAX_BYTES` per task (the newest output).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from agent.model.errors import ShoalError, WorkerError
from agent.worker.executor import Executor
from broker.envelope import Envelope
from broker.errors import BrokerError
from broker.session import Session, raise_for_reply
from broker.topics import Topics

__all__ = ["MAX_BYTES", "answer_logs", "fetch_logs", "service_logs"]

log = logging.getLogger("shoal.logs")

MAX_BYTES = 512 * 1024


async def answer_logs(
    session: Session, topics: Topics, node_id: str, executor: Executor, env: Envelope
) -> None:
    """On the node: read a task's output and answer the manager that asked."""
    body = env.body if isinstance(env.body, dict) else {}
    task_id, tail = body.get("task_id"), body.get("tail")
    reply: dict[str, Any]
    if not isinstance(task_id, str) or (tail is not None and type(tail) is not int):
        reply = {"ok": False, "error": "malformed logs request"}
    else:
        try:
            chunks: list[bytes] = []
            async with asyncio.timeout(10):
                async for piece in executor.logs(task_id, tail=tail):
                    chunks.append(piece)
            data = b"".join(chunks)
            reply = {"ok": True, "data": data[-MAX_BYTES:], "truncated": len(data) > MAX_BYTES}
        except (WorkerError, TimeoutError) as exc:
            reply = {"ok": False, "error": str(exc) or "timed out reading the logs"}
    with contextlib.suppress(BrokerError):
        await session.send(topics.node_req(node_id), "logs-reply", reply, re=env.seq)


async def fetch_logs(
    session: Session, topics: Topics, node_id: str, task_id: str, *, tail: int | None
) -> bytes:
    """On a manager: one task's output from its node."""
    try:
        env = await session.request(
            topics.node_resp(node_id), "logs", {"task_id": task_id, "tail": tail}, timeout=15
        )
        body = raise_for_reply(env)
    except BrokerError as exc:
        raise WorkerError(f"node {node_id} did not send the logs of task {task_id}: {exc}") from exc
    data = body.get("data", b"")
    return data if isinstance(data, bytes) else b""


async def service_logs(
    session: Session, topics: Topics, view: Any, args: dict[str, Any]
) -> list[dict[str, Any]]:
    """On a manager: `shoal service logs`, the output of each of a service's tasks, fetched
    from their nodes (`view` is the manager's store view)."""
    from agent.manager.control.services import find_service
    from agent.manager.store import Node, Task

    service = find_service(view, str(args.get("service", "")))
    tail = args.get("tail")
    nodes = {n.id: n for n in view.list(Node)}
    tasks = [
        t
        for t in view.list(Task)
        if t.service_id == service.id and t.node_id and t.status and t.status.container_id
    ]

    async def one(t: Any) -> dict[str, Any]:
        node = nodes.get(t.node_id)
        slot = str(t.slot) if t.slot else t.node_id
        row = {
            "task": f"{service.name}.{slot}.{t.id}",
            "node": node.hostname if node else t.node_id,
            "created": t.created,
        }
        try:
            data = await fetch_logs(
                session,
                topics,
                t.node_id,
                t.id,
                tail=tail if type(tail) is int else None,
            )
            row["text"] = data.decode("utf-8", "replace")
        except ShoalError as exc:
            row["error"] = str(exc)
        return row

    rows = await asyncio.gather(*(one(t) for t in tasks))
    return sorted(rows, key=lambda r: (r["created"], r["task"]))
