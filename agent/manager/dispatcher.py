"""The dispatcher: the managers' side of every node session.

In: on ``node/<id>/status`` a node sends "status" (its tasks' observed states, batched),
"describe" (what it is) and "heartbeat"; the leader answers the last two with "ack" on the
node's ``node/<id>/resp``, so a node can tell when managers stop hearing it. Every manager
remembers the latest status of each task (:class:`StatusLog`), so a new leader can write what
the old one had not yet written. The leader writes observed states in batches, and only for
tasks assigned to the reporting node: anything else is rejected and counted.

Out: each node's full assignment set, retained on ``node/<id>/assign`` as "assign"
{"version": store index, "tasks": [assignment, ...]}, published after every commit that
changes what the node should run.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import ipaddress
import logging
import math
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from agent.manager.reconcile.reconciler import Reconciler
from agent.manager.store import (
    WRITE_ERRORS,
    Config,
    Event,
    Node,
    Secret,
    Service,
    Store,
    Task,
    Tx,
    View,
)
from agent.manager.store.codec import task_spec_map
from agent.model import DesiredState, StatusError, TaskStatus
from agent.model.stamps import now_text
from broker.envelope import Envelope
from broker.errors import BrokerError
from broker.session import Session
from broker.topics import Topics

__all__ = ["Dispatcher", "StatusLog"]

log = logging.getLogger("shoal.dispatcher")


class StatusLog:
    """Runs on every manager: the latest status each node reported per task, and when each
    node was last heard from."""

    MAX_TASKS_PER_NODE = 10_000  # statuses remembered per node; the oldest make room
    MAX_TEXT = 2048  # characters kept of a status's message and error

    def __init__(self, session: Session) -> None:
        self.session = session
        self.latest: dict[str, tuple[str, TaskStatus]] = {}
        self._by_node: dict[str, dict[str, None]] = defaultdict(dict)  # in arrival order
        self.seen: dict[str, float] = {}
        self.descriptions: dict[str, dict[str, Any]] = {}
        self.listener: Callable[[str, list[tuple[str, TaskStatus]]], None] | None = None
        self.describe_listener: Callable[[str], None] | None = None
        self.ack: Callable[[str], None] | None = None

    async def on_status(self, topic: str, env: Envelope) -> None:
        node_id = Topics.node_of(topic)
        if node_id is None:
            self.session.rejections.reject(topic, "status outside a node topic")
            return
        self.seen[node_id] = time.time()
        body = env.body
        if env.type in ("heartbeat", "describe") and self.ack is not None:
            self.ack(node_id)  # the leader answers: the node knows managers hear it
        if env.type == "heartbeat":
            return
        if env.type == "describe":
            if not isinstance(body, dict):
                self.session.rejections.reject(topic, "malformed node description")
                return
            self.descriptions[node_id] = _clean_description(body)
            if self.describe_listener is not None:
                self.describe_listener(node_id)
            return
        if env.type != "status" or not isinstance(body, dict):
            self.session.rejections.reject(topic, f"unknown status message {env.type!r}")
            return
        raw = body.get("tasks")
        if not isinstance(raw, list):
            self.session.rejections.reject(topic, "status without a task list")
            return
        if len(raw) > self.MAX_TASKS_PER_NODE:
            self.session.rejections.reject(topic, "status of more tasks than a node may have")
            return
        good: list[tuple[str, TaskStatus]] = []
        for i, item in enumerate(raw):
            if i % 500 == 499:
                await asyncio.sleep(0)  # a long report does not hold up the Raft driver
            try:
                st = TaskStatus.from_dict(item)
            except StatusError as exc:
                self.session.rejections.reject(topic, f"bad task status: {exc}")
                continue
            st = dataclasses.replace(
                st,
                message=st.message[: self.MAX_TEXT],
                err=st.err[: self.MAX_TEXT],
                container_id=st.container_id[:128],
            )
            self._remember(node_id, st.task_id, st)
            good.append((st.task_id, st))
        if good and self.listener is not None:
            self.listener(node_id, good)

    def _remember(self, node_id: str, task_id: str, doc: TaskStatus) -> None:
        """Keep the latest status of a task, at most MAX_TASKS_PER_NODE per node: a node
        cannot make managers remember more by reporting made-up tasks."""
        previous = self.latest.get(task_id)
        if previous is not None and previous[0] != node_id:
            self._by_node[previous[0]].pop(task_id, None)
        mine = self._by_node[node_id]
        mine.pop(task_id, None)
        while len(mine) >= self.MAX_TASKS_PER_NODE:
            oldest = next(iter(mine))
            del mine[oldest]
            if self.latest.get(oldest, ("",))[0] == node_id:
                del self.latest[oldest]
        mine[task_id] = None
        self.latest[task_id] = (node_id, doc)


def _clean_description(body: dict[str, Any]) -> dict[str, Any]:
    """Only the keys the scheduler and people use, with the types they expect."""
    out: dict[str, Any] = {}
    if isinstance(body.get("hostname"), str):
        out["hostname"] = body["hostname"][:253]
    platform = body.get("platform")
    if isinstance(platform, dict):
        out["platform"] = {k: str(platform.get(k, ""))[:64] for k in ("os", "arch")}
    res = body.get("resources")
    if isinstance(res, dict):
        out["resources"] = {
            k: int(v)
            for k in ("nano_cpus", "memory_bytes")
            if isinstance(v := res.get(k), int) and not isinstance(v, bool) and v >= 0
        }
    engine = body.get("engine")
    if isinstance(engine, dict):
        clean: dict[str, Any] = {
            k: str(engine[k])[:128] for k in ("driver", "name", "version") if k in engine
        }
        labels = engine.get("labels")
        if isinstance(labels, dict):
            clean["labels"] = {str(k)[:128]: str(v)[:256] for k, v in list(labels.items())[:64]}
        out["engine"] = clean
    if isinstance(body.get("kernel"), str):
        out["kernel"] = body["kernel"][:128]
    addresses = body.get("addresses")
    if isinstance(addresses, list):  # where other nodes reach this one's overlay traffic
        good = []
        for a in addresses[:8]:
            with contextlib.suppress(ValueError):
                good.append(str(ipaddress.ip_address(str(a))))
        if good:
            out["addresses"] = good
    if body.get("nat") is True:  # others cannot reach it: no traffic is sent its way
        out["nat"] = True
    beat = body.get("heartbeat")
    if isinstance(beat, int | float) and not isinstance(beat, bool) and 0 < beat < math.inf:
        out["heartbeat"] = min(max(float(beat), 0.1), 86400.0)  # how often it sends them
    return out


class Dispatcher:
    """Runs on the leader."""

    def __init__(
        self,
        store: Store,
        session: Session,
        topics: Topics,
        statuses: StatusLog,
        *,
        cluster_id: str,
        batch_window: float = 0.02,
        max_batch: int = 2000,
    ) -> None:
        self.store = store
        self.session = session
        self.topics = topics
        self.statuses = statuses
        self.cluster_id = cluster_id
        self.batch_window = batch_window
        self.max_batch = max_batch
        self.rejected = 0
        self.published = 0
        self._inbox: dict[str, tuple[str, TaskStatus]] = {}
        self._described: set[str] = set()
        self._inbox_ready = asyncio.Event()
        # the assignment sets go out on the reconciler shell: after each commit, one pass over
        # the nodes whose tasks changed (a status-only change moves nothing)
        self.publisher: Reconciler[str] = Reconciler(
            store, ("task", "node", "service"), self._flush, start=self._start, note=self._mark
        )
        self._names: dict[str, str] = {}
        self._sent: dict[str, int] = {}
        self._sealed: dict[tuple[str, str, str, bytes], bytes] = {}
        self._acks: set[asyncio.Task[None]] = set()

    async def run(self) -> None:
        self.statuses.listener = self._take
        self.statuses.describe_listener = self._take_description
        self.statuses.ack = self._ack
        # what followers heard while another manager led: write whatever differs
        for task_id, (node_id, doc) in self.statuses.latest.items():
            self._inbox[task_id] = (node_id, doc)
        self._described.update(self.statuses.descriptions)
        self._inbox_ready.set()
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._write_statuses())
                tg.create_task(self.publisher.run())
        finally:
            self.statuses.listener = None
            self.statuses.describe_listener = None
            self.statuses.ack = None
            for t in self._acks:
                t.cancel()

    # in ----------------------------------------------------------------------------------
    def _ack(self, node_id: str) -> None:
        async def send() -> None:
            with contextlib.suppress(BrokerError):
                await self.session.send(self.topics.node_resp(node_id), "ack", {}, qos=0)

        task = asyncio.get_running_loop().create_task(send())
        self._acks.add(task)
        task.add_done_callback(self._acks.discard)

    def _take(self, node_id: str, items: list[tuple[str, TaskStatus]]) -> None:
        for task_id, doc in items:
            self._inbox[task_id] = (node_id, doc)
        self._inbox_ready.set()

    def _take_description(self, node_id: str) -> None:
        self._described.add(node_id)
        self._inbox_ready.set()

    async def _write_statuses(self) -> None:
        loop = asyncio.get_running_loop()
        written_at = float("-inf")
        while True:
            await self._inbox_ready.wait()
            # the first batch after a quiet spell is written on the loop's next turn; under
            # load, at most one write a batch_window gathers what came in meanwhile
            await asyncio.sleep(max(0.0, written_at + self.batch_window - loop.time()))
            written_at = loop.time()
            self._inbox_ready.clear()
            batch = dict(list(self._inbox.items())[: self.max_batch])
            for k in batch:
                del self._inbox[k]
            if self._inbox:
                self._inbox_ready.set()
            described, self._described = self._described, set()
            try:
                await self._write(batch, described)
            except WRITE_ERRORS as exc:
                log.warning("could not record task statuses (will retry): %s", exc)
                for k, v in batch.items():
                    self._inbox.setdefault(k, v)
                self._described |= described
                self._inbox_ready.set()
                await asyncio.sleep(0.5)

    async def _write(self, batch: dict[str, tuple[str, TaskStatus]], described: set[str]) -> None:
        stamp = now_text()
        refused: list[str] = []

        def write(tx: Tx) -> None:
            refused.clear()
            for task_id, (node_id, doc) in batch.items():
                task = tx.get(Task, task_id)
                if task is None or task.node_id != node_id:
                    refused.append(node_id)
                    continue
                if task.status is not None and doc.timestamp < task.status.timestamp:
                    continue  # an older report, sent again after a reconnect: already superseded
                if task.status != doc:
                    tx.put(dataclasses.replace(task, status=doc, updated=stamp))
            for node_id in described:
                node = tx.get(Node, node_id)
                desc = self.statuses.descriptions.get(node_id)
                if node is not None and desc is not None and node.description != desc:
                    tx.put(dataclasses.replace(node, description=desc, updated=stamp))

        await self.store.update(write)
        for node_id in refused:
            self.rejected += 1
            self.session.rejections.reject(
                self.topics.node_status(node_id), "status for a task not assigned to this node"
            )

    # out ---------------------------------------------------------------------------------
    def _start(self, view: View) -> list[str]:
        self._names = {s.id: s.name for s in view.list(Service)}
        return [n.id for n in view.list(Node)]

    def _mark(self, ev: Event) -> list[str]:
        """The nodes whose assignment set an event changes."""
        if ev.kind == "service":
            if isinstance(ev.new, Service):
                self._names[ev.id] = ev.new.name
            return []
        if ev.kind == "node":
            return [ev.id] if ev.action == "create" else []
        if (
            ev.action == "update"
            and isinstance(ev.old, Task)
            and isinstance(ev.new, Task)
            and _same_assignment(ev.old, ev.new)
        ):
            return []  # only the observed status moved: the node knows it
        return [obj.node_id for obj in (ev.old, ev.new) if isinstance(obj, Task) and obj.node_id]

    async def _flush(self, dirty: set[str]) -> bool:
        """One pass of the publisher: the assignment set of every node in ``dirty``."""
        if not dirty:
            return True
        view = self.store.view()
        version = self.store.applied
        per_node: dict[str, list[Task]] = defaultdict(list)
        for t in view.list(Task):
            if t.node_id in dirty:
                per_node[t.node_id].append(t)
        sends = []
        for node_id in sorted(dirty):
            node = view.get(Node, node_id)
            if node is None:
                continue
            mine = per_node.get(node_id, [])
            body: dict[str, Any] = {
                "version": version,
                "tasks": [self._assignment(view, t) for t in mine],
            }
            secrets, configs = self._files(view, node, mine)
            if secrets:
                body["secrets"] = secrets
            if configs:
                body["configs"] = configs
            sends.append(self._send(node_id, body))
        for i in range(0, len(sends), 200):
            await asyncio.gather(*sends[i : i + 200])
        return True

    def _files(
        self, view: Any, node: Node, tasks: list[Task]
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """The secrets (sealed to the node's key) and configs its live tasks use."""
        secret_ids: set[str] = set()
        config_ids: set[str] = set()
        for t in tasks:
            if t.desired_state != DesiredState.RUNNING:
                continue
            container = t.spec.container
            secret_ids.update(r.secret_id for r in container.secrets)
            config_ids.update(r.config_id for r in container.configs)
        secrets = []
        for ident in sorted(secret_ids):
            secret = view.get(Secret, ident)
            if secret is None:
                continue
            key = (node.id, ident, secret.updated, node.cert)
            sealed = self._sealed.get(key)
            if sealed is None:
                from cryptography import x509

                from certs.seal import seal

                context = b"shoal-secret:" + node.id.encode() + b":" + ident.encode()
                recipient = x509.load_pem_x509_certificate(node.cert)
                sealed = self._sealed[key] = seal(recipient, secret.data, context=context)
            secrets.append({"id": ident, "name": secret.name, "sealed": sealed})
        configs = []
        for ident in sorted(config_ids):
            config = view.get(Config, ident)
            if config is not None:
                configs.append({"id": ident, "name": config.name, "data": config.data})
        return secrets, configs

    async def _send(self, node_id: str, body: dict[str, Any]) -> None:
        try:
            await self.session.send(self.topics.node_assign(node_id), "assign", body, retain=True)
            self.published += 1
            self._sent[node_id] = int(body["version"])
        except BrokerError as exc:
            log.warning("could not send node %s its assignments: %s", node_id, exc)
            self.publisher.mark([node_id])  # sent again after the next commit

    def _assignment(self, view: Any, t: Task) -> dict[str, Any]:
        return {
            "task_id": t.id,
            "service_id": t.service_id,
            "service_name": self._names.get(t.service_id, "removed"),
            "slot": t.slot or None,
            "node_id": t.node_id,
            "spec": task_spec_map(t.spec),
            "desired_state": str(t.desired_state),
            "version": view.version("task", t.id),
            "cluster_id": self.cluster_id,
            "ports": [p.to_dict() for p in t.endpoint.ports],
        }


def _same_assignment(old: Task, new: Task) -> bool:
    return (old.node_id, old.desired_state, old.spec_version) == (
        new.node_id,
        new.desired_state,
        new.spec_version,
    )
