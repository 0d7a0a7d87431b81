"""The nodes, on the leader: their state (ready or down, from their retained state and from
silence, see agent.manager.reconcile.outage), managers joining the Raft group when they report
ready, the monitoring view of each node, and `shoal node ls|rm|promote|demote` and a manager's
leave."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import time
from collections.abc import Awaitable, Callable
from typing import Any

from agent.manager.broker_sync import BrokerSync
from agent.manager.cluster import replace, serving
from agent.manager.control.filters import NODES
from agent.manager.dispatcher import StatusLog
from agent.manager.leader_components import LeaderComponents
from agent.manager.raft import ConfChangeType, NotLeader, RaftError
from agent.manager.raftdriver import RaftDriver
from agent.manager.reconcile.outage import FleetWatch, OutageRule, silent_nodes
from agent.manager.revocation import Revocation
from agent.manager.store import (
    WRITE_ERRORS,
    Cluster,
    Node,
    NodeRole,
    NodeStatus,
    Store,
    StoreError,
    Tx,
)
from agent.model.errors import ShoalError
from agent.model.stamps import now_text
from broker.envelope import Envelope
from broker.errors import BrokerError
from broker.session import Session
from broker.topics import Topics

__all__ = ["Nodes"]

log = logging.getLogger("shoal.manager")

Command = Callable[[str, dict[str, Any]], Awaitable[Any]]


class Nodes:
    def __init__(
        self,
        *,
        node_id: str,
        store: Store,
        driver: RaftDriver,
        session: Session,
        topics: Topics,
        statuses: StatusLog,
        fleet: FleetWatch,
        leader: LeaderComponents,
        broker: BrokerSync,
        revocation: Revocation,
        command: Command,
    ) -> None:
        self.node_id = node_id
        self.store = store
        self.driver = driver
        self.session = session
        self.topics = topics
        self.statuses = statuses
        self.fleet = fleet
        self.leader = leader
        self.broker = broker
        self.revocation = revocation
        self.command = command  # a control command, run on the leader (see forwarding.py)
        self.observed: dict[str, NodeStatus] = {}
        self._silenced: dict[str, float] = {}  # nodes counted down for their silence, and when

    # state -------------------------------------------------------------------------------
    async def on_node_state(self, topic: str, env: Envelope) -> None:
        node_id = Topics.node_of(topic)
        body = env.body
        status = body.get("status") if isinstance(body, dict) else None
        if (
            node_id is None
            or status not in ("ready", "down")
            or not isinstance(body.get("hostname", ""), str)
            or body.get("role", "worker") not in ("manager", "worker")
        ):
            self.session.rejections.reject(topic, "malformed node state")
            return
        if status == "down" and node_id == self.driver.leader_id and node_id != self.node_id:
            self.driver.leader_gone(node_id)
        if node_id == self.node_id:
            status = "ready"  # a will left by this manager's previous life
        self.observed[node_id] = NodeStatus(status)
        self._silenced.pop(node_id, None)
        if not self.driver.is_leader or not await serving(self.driver):
            return
        node = self.store.view().get(Node, node_id)
        if node is None:
            self.session.rejections.reject(topic, "state from an unknown node")
            return
        if node.status != status:
            await self._set_status(node_id)
        if (
            status == "ready"
            and node.role == NodeRole.MANAGER
            and node_id not in self.driver.voters
        ):
            await self._add_voter(node_id)

    async def liveness_forever(self, every: float = 1.0) -> None:
        """On the leader: a node silent too long counts as down, one whose death no will told
        of (it died during a broker outage, say; see agent.manager.reconcile.outage); a silent node
        heard again is ready again."""
        while True:
            await asyncio.sleep(every)
            if self.driver.is_leader and self.leader.watching:
                try:
                    await self._check_silence()
                except WRITE_ERRORS as exc:
                    log.debug("the liveness check waits: %s", exc)

    async def _check_silence(self) -> None:
        now = time.time()
        view = self.store.view()
        nodes = {n.id: n for n in view.list(Node)}
        cluster = view.get(Cluster, "cluster")
        rule = OutageRule(grace=float(cluster.node_grace_s if cluster is not None else 30))
        heard = self.statuses.seen
        beats = {
            node_id: float(d["heartbeat"])
            for node_id, d in self.statuses.descriptions.items()
            if "heartbeat" in d
        }
        hold = self.fleet.hold(self.driver.id, rule)
        for node_id in silent_nodes(nodes, heard, beats, hold=hold, now=now):
            last = heard.get(node_id)
            since = f"{now - last:.0f} s" if last is not None else "this leader started"
            log.warning("node %s is down: nothing heard from it for %s", node_id, since)
            self._silenced[node_id] = now
            self.observed[node_id] = NodeStatus.DOWN
            await self._set_status(node_id)
        for node_id, at in list(self._silenced.items()):
            node = nodes.get(node_id)
            if node is None:
                del self._silenced[node_id]
            elif heard.get(node_id, -math.inf) > at:  # it spoke again: it was only silent
                del self._silenced[node_id]
                if node.status == NodeStatus.DOWN and self.observed.get(node_id) == NodeStatus.DOWN:
                    log.info("node %s is heard from again", node_id)
                    self.observed[node_id] = NodeStatus.READY
                    await self._set_status(node_id)

    async def _set_status(self, node_id: str) -> None:
        """Record the latest status seen for a node. Messages are handled concurrently, so the
        transaction reads the latest observation rather than the one that triggered it."""
        stamp = now_text()
        written: list[NodeStatus] = []

        def change(tx: Tx) -> None:
            status = self.observed.get(node_id)
            n = tx.get(Node, node_id)
            if n is not None and status is not None and n.status != status:
                tx.put(replace(n, status=status, updated=stamp))
                written.append(status)

        for _ in range(5):  # until the store agrees with the latest observation
            with contextlib.suppress(RaftError, NotLeader, StoreError):
                await self.store.update(change)
                if written:
                    log.info("node %s is %s", node_id, written[-1])
            n = self.store.view().get(Node, node_id)
            if n is None or n.status == self.observed.get(node_id) or not self.driver.is_leader:
                return

    async def _add_voter(self, node_id: str) -> None:
        try:
            await self.driver.change_membership(ConfChangeType.AddNode, node_id)
            log.info("manager %s joined the raft group", node_id)
        except (RaftError, TimeoutError) as exc:
            log.warning("could not add manager %s to the raft group yet: %s", node_id, exc)

    async def take_over(self) -> None:
        """A new leader records what it saw while it was a follower (e.g. the old leader's
        will), then republishes the monitoring view."""
        self.observed[self.node_id] = NodeStatus.READY
        if not await serving(self.driver):
            return
        for node in self.store.view().list(Node):
            seen = self.observed.get(node.id)
            if seen is not None and seen != node.status:
                await self._set_status(node.id)
        await self._publish_all()

    # the monitoring view -----------------------------------------------------------------
    async def _publish_all(self) -> None:
        for n in self.store.view().list(Node):
            await self.publish(n, n.id)

    async def publish(self, node: Node | None, node_id: str) -> None:
        payload = b""
        if node is not None:
            doc = {
                "id": node.id,
                "hostname": node.hostname,
                "role": node.role,
                "status": node.status,
                "availability": node.availability,
                "labels": dict(node.labels),
                "manager_status": self._manager_status(node),
                "updated": node.updated,
            }
            payload = json.dumps(doc).encode()
        with contextlib.suppress(BrokerError):
            await self.session.publish(self.topics.mon("node", node_id), payload, retain=True)

    def _manager_status(self, node: Node) -> str:
        if node.role != NodeRole.MANAGER:
            return ""
        if node.id == self.driver.leader_id:
            return "Leader"
        if node.id in self.driver.voters and node.status == NodeStatus.READY:
            return "Reachable"
        return "Unreachable"

    # commands ----------------------------------------------------------------------------
    async def ls(self, args: dict[str, Any]) -> list[dict[str, Any]]:
        with contextlib.suppress(RaftError, TimeoutError):
            await self.driver.read_barrier()
        nodes = NODES.select(self.store.view().list(Node), args.get("filters"))
        out = []
        for n in sorted(nodes, key=lambda n: (n.hostname, n.id)):
            engine = n.description.get("engine")
            engine = engine if isinstance(engine, dict) else {}
            out.append(
                {
                    "id": n.id,
                    "hostname": n.hostname,
                    "role": n.role,
                    "status": n.status,
                    "availability": n.availability,
                    "manager_status": self._manager_status(n),
                    "engine_version": str(engine.get("version") or ""),
                    "self": False,
                }
            )
        return out

    def find_node(self, ref: str) -> Node:
        nodes = self.store.view().list(Node)
        exact = [n for n in nodes if n.id == ref]
        matches = exact or [n for n in nodes if n.id.startswith(ref) or n.hostname == ref]
        if len(matches) == 1:
            return matches[0]
        if not matches:
            raise ShoalError(f"node {ref} not found")
        raise ShoalError(f"node reference {ref} is ambiguous ({len(matches)} nodes match)")

    async def rm(self, args: dict[str, Any]) -> str:
        node = self.find_node(str(args.get("node")))
        force = bool(args.get("force"))
        if node.id == self.node_id:
            raise ShoalError(
                f"node {node.id} is the leader itself; use `shoal swarm leave --force`"
            )
        if node.role == NodeRole.MANAGER and not force:
            raise ShoalError(
                f"node {node.id} is a swarm manager; demote it to a worker before removal"
                " (or use --force)"
            )
        if node.status == NodeStatus.READY and not force:
            raise ShoalError(f"node {node.id} is not down and can't be removed (use --force)")
        if node.role == NodeRole.MANAGER and node.id in self.driver.voters:
            await self.driver.change_membership(ConfChangeType.RemoveNode, node.id)
        await self.revocation.forget(node.id)
        await self.broker.wait(self.store.applied)
        await self.revocation.cut_session(node.id)
        for leaf in ("state", "assign"):
            with contextlib.suppress(BrokerError):
                await self.session.publish(self.topics.node(node.id, leaf), b"", retain=True)
        log.info("removed node %s and revoked its certificates", node.id)
        return node.id

    async def manager_leave(self, args: dict[str, Any]) -> str:
        """A manager leaves: out of the Raft group first (while the broker still lets it
        speak Raft), then out of the store, which revokes it and shrinks the broker's ACL.
        A leader that leaves hands leadership over first; the new leader does the rest."""
        node = self.find_node(str(args.get("node")))
        others = [v for v in self.driver.voters if v != node.id]
        if not others:
            return "last"
        if node.id == self.node_id:
            ready = {n.id for n in self.store.view().list(Node) if n.status == NodeStatus.READY}
            self.driver.core.transfer_leadership(next((v for v in others if v in ready), others[0]))
            self.driver.wake()
            await self.driver.leader_changed(5.0)
            return str(await self.command("manager-leave", args))
        if node.id in self.driver.voters:
            await self.driver.change_membership(ConfChangeType.RemoveNode, node.id)
        await self.revocation.forget(node.id)
        log.info("manager %s left the swarm", node.id)
        return node.id

    async def promote(self, args: dict[str, Any]) -> str:
        node = self.find_node(str(args.get("node")))
        if node.role == NodeRole.MANAGER:
            return f"Node {node.id} is already a manager."
        await self._set_role(node.id, NodeRole.MANAGER)
        return f"Node {node.id} promoted to a manager in the swarm."

    async def demote(self, args: dict[str, Any]) -> str:
        node = self.find_node(str(args.get("node")))
        if node.role != NodeRole.MANAGER:
            return f"Node {node.id} is already a worker."
        voters = self.driver.voters
        managers = [n for n in self.store.view().list(Node) if n.role == NodeRole.MANAGER]
        if len(managers) <= 1:
            raise ShoalError("attempting to demote the last manager of the swarm")
        if node.id == self.broker.host_id:
            raise ShoalError(
                f"node {node.id} runs the swarm's embedded broker and must stay a manager"
            )
        remaining = [v for v in voters if v != node.id]
        ready = {n.id for n in managers if n.status == NodeStatus.READY}
        if node.id in voters and sum(v in ready for v in remaining) <= len(remaining) // 2:
            raise ShoalError(
                f"can't demote {node.id}: the remaining managers would not have a quorum"
                f" ({sum(v in ready for v in remaining)} of {len(remaining)} reachable)"
            )
        if node.id == self.node_id:
            # the leader hands over first; the new leader finishes the demotion
            target = next(v for v in remaining if v in ready)
            self.driver.core.transfer_leadership(target)
            self.driver.wake()
            await self.driver.leader_changed(5.0)
            return str(await self.command("node-demote", args))
        if node.id in voters:
            await self.driver.change_membership(ConfChangeType.RemoveNode, node.id)
        await self._set_role(node.id, NodeRole.WORKER)
        return f"Manager {node.id} demoted in the swarm."

    async def _set_role(self, node_id: str, role: NodeRole) -> None:
        """Record the new role, let the broker's ACL catch up, then tell the node, which
        renews its certificate (the role on record goes into it) and changes what it runs."""
        stamp = now_text()

        def change(tx: Tx) -> None:
            n = tx.get(Node, node_id)
            if n is None:
                raise ShoalError(f"node {node_id} not found")
            tx.put(replace(n, role=role, updated=stamp))

        await self.store.update(change)
        await self.broker.wait(self.store.applied)
        with contextlib.suppress(BrokerError):
            await self.session.send(self.topics.node_resp(node_id), "role", {"role": role})
