"""The manager role: enrollment, certificate renewal, node status, join tokens, revocation
and client certificates, on top of the replicated store.

Every manager runs the Raft driver and applies the store. Only the leader acts on requests
from nodes (enrollment, renewal, status); a manager that is not the leader forwards control
commands to the leader over MQTT, so the CLI sees no difference.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import time
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from agent.errors import ShoalError
from agent.limits import MAX_TASK_HISTORY
from agent.manager.broker_host import BrokerHost
from agent.manager.commands import CommandRunner, new_request_id, result_of
from agent.manager.control.networks import NetworksAPI
from agent.manager.control.secrets import SecretsAPI
from agent.manager.control.services import ControlAPI
from agent.manager.control.stacks import StackAPI
from agent.manager.dispatcher import StatusLog
from agent.manager.enrollment import RENEW_LIMITS, EnrollLimiter, RateLimited, parse_request
from agent.manager.leader import LeaderComponents
from agent.manager.outage import FleetWatch, OutageRule, silent_nodes
from agent.manager.raft import ConfChangeType, NotLeader, RaftError
from agent.manager.raftdriver import RaftDriver
from agent.manager.store import Client, Cluster, Event, Node, Store, StoreError, Tx
from agent.stamps import now_text
from broker.envelope import Envelope
from broker.errors import BrokerError
from broker.session import Session, SessionConfig, raise_for_reply
from broker.tls import client_context
from broker.topics import ENROLL_REQ_FILTER, Topics, enroll_resp
from certs import (
    CertError,
    ClusterCA,
    Identity,
    JoinToken,
    Role,
    TokenError,
    key_to_pem,
    load_cert,
    load_private_key,
    make_csr,
    new_admin_id,
    new_monitor_id,
    new_node_id,
    new_private_key,
    new_unlock_key,
    write_file_atomic,
)

__all__ = ["Manager", "now_text"]

log = logging.getLogger("shoal.manager")

_ROLES = {"manager": Role.MANAGER, "worker": Role.WORKER}


class Manager:
    def __init__(
        self,
        *,
        node_id: str,
        work_dir: Path,
        store: Store,
        driver: RaftDriver,
        session: Session,
        topics: Topics,
        broker_host: BrokerHost | None,
        reload_broker: Callable[[], None] | None,
        join_address: str,
        kick_address: tuple[str, int],
        cluster_port: int,
    ) -> None:
        self.node_id = node_id
        self.work_dir = work_dir
        self.store = store
        self.driver = driver
        self.session = session
        self.topics = topics
        self.broker_host = broker_host
        self.reload_broker = reload_broker
        self.join_address = join_address
        self.kick_address = kick_address
        self.cluster_port = cluster_port
        self.commands: dict[str, Callable[[dict[str, Any]], Awaitable[Any]]] = {
            "join-token": self._cmd_join_token,
            "node-ls": self._cmd_node_ls,
            "node-rm": self._cmd_node_rm,
            "node-promote": self._cmd_promote,
            "node-demote": self._cmd_demote,
            "cert-issue": self._cmd_cert_issue,
            "cert-ls": self._cmd_cert_ls,
            "cert-rm": self._cmd_cert_rm,
            "manager-leave": self._cmd_manager_leave,
            "swarm-update": self._cmd_swarm_update,
            "unlock-key": self._cmd_unlock_key,
        }
        self._tasks: set[asyncio.Task[None]] = set()
        self.statuses = StatusLog(session)
        self.runner = CommandRunner(store, driver)
        self.api = ControlAPI(store)
        self.commands.update(self.api.commands)
        self.commands.update(SecretsAPI(store).commands)
        self.commands.update(NetworksAPI(store).commands)
        self.stacks = StackAPI(store)
        self.commands.update(self.stacks.commands)
        self.fleet = FleetWatch()
        self.leader = LeaderComponents(
            store=store,
            driver=driver,
            session=session,
            topics=topics,
            statuses=self.statuses,
            cluster_id=topics.cluster_id,
            fleet=self.fleet,
        )
        self.on_unlock_key: Callable[[str], None] | None = None
        self.enroll_limiter = EnrollLimiter(time.monotonic)
        self.renew_limiter = EnrollLimiter(time.monotonic, RENEW_LIMITS, what="certificate renewal")
        session.on(topics.all_nodes("status"), self.statuses.on_status)
        session.on(ENROLL_REQ_FILTER, self._on_enroll, spawn=True)
        session.on(topics.all_nodes("state"), self._on_node_state, spawn=True)
        session.on(topics.all_nodes("req"), self._on_node_request, spawn=True)
        session.on(topics.mgr_req(node_id), self._on_forwarded, spawn=True)
        session.on_raw(topics.mon("broker"), self._on_broker_sync)
        session.on_raw(topics.stack_ctl_filter, self._on_stack_ctl)
        session.on_connect(self._session_back)
        session.on_disconnect(lambda: self.fleet.lost(time.time()))
        self.broker_synced = 0
        self._synced = asyncio.Event()
        self.observed: dict[str, str] = {}
        self._silenced: dict[str, float] = {}  # nodes counted down for their silence, and when
        self.broker_host_id: str | None = None

    def detach(self) -> None:
        """Stop handling manager topics (on demotion)."""
        t = self.topics
        self._background(asyncio.get_running_loop().create_task(self.leader.stop()))
        self.session.off(
            t.stack_ctl_filter,
            t.all_nodes("status"),
            ENROLL_REQ_FILTER,
            t.all_nodes("state"),
            t.all_nodes("req"),
            t.mgr_req(self.node_id),
            t.mon("broker"),
            t.mgr_raft(self.node_id),
        )

    # helpers ---------------------------------------------------------------------------
    @property
    def cluster(self) -> Cluster:
        c = self.store.view().get(Cluster, "cluster")
        if c is None:
            raise ShoalError("this manager has not received the cluster state yet")
        return c

    @property
    def ca(self) -> ClusterCA:
        c = self.cluster
        return ClusterCA(load_cert(c.ca_cert), load_private_key(c.ca_key))

    @property
    def lifetime(self) -> timedelta:
        return timedelta(seconds=self.cluster.cert_lifetime_s)

    def sync_broker(self) -> None:
        """Rewrite the broker's ACL and CRL from the store and reload it (broker host only)."""
        if self.broker_host is None:
            return
        view = self.store.view()
        cluster = view.get(Cluster, "cluster")
        if cluster is None:
            return
        nodes = view.list(Node)
        managers = [n.id for n in nodes if n.role == "manager"]
        clients = view.list(Client)
        revoked = [(int(s), datetime.fromisoformat(t)) for s, t in sorted(cluster.revoked.items())]
        self.broker_host.sync_from(
            self.ca,
            managers=managers,
            nodes=[n.id for n in nodes if n.role != "manager"],
            admins=[c.id for c in clients if c.role == "admin"],
            monitors=[c.id for c in clients if c.role == "monitor"],
            revoked=revoked,
        )
        if self.reload_broker is not None:
            self.reload_broker()
        self.broker_synced = self.store.applied
        asyncio.get_running_loop().create_task(self._announce_sync(self.store.applied))

    async def _announce_sync(self, index: int) -> None:
        doc = json.dumps({"host": self.node_id, "synced_index": index}).encode()
        with contextlib.suppress(BrokerError):
            await self.session.publish(self.topics.mon("broker"), doc, retain=True)

    async def _on_broker_sync(self, topic: str, payload: bytes) -> None:
        try:
            doc = json.loads(payload)
            index = int(doc["synced_index"])
            self.broker_host_id = str(doc["host"])
        except (ValueError, KeyError, TypeError, OverflowError):
            return
        self.broker_synced = max(self.broker_synced, index)
        self._synced.set()

    async def wait_broker_synced(self, index: int, timeout: float = 5.0) -> None:
        """Wait until the broker host has applied the store up to `index` to its ACL/CRL."""
        deadline = asyncio.get_running_loop().time() + timeout
        while self.broker_synced < index:
            self._synced.clear()
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                log.warning("the broker host has not reloaded its CRL within %g s", timeout)
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._synced.wait(), left)

    async def watch_forever(self) -> None:
        """Keep the broker's files and the monitoring topics in step with the store."""
        self.sync_broker()
        async with self.store.watch("node", "client", "cluster") as q:
            while True:
                ev = await q.get()
                batch = [ev]
                while not q.empty():
                    batch.append(q.get_nowait())
                for e in batch:
                    if isinstance(e, Event) and e.kind == "cluster" and isinstance(e.new, Cluster):
                        self._apply_unlock_key(e.new.unlock_key)
                if any(
                    getattr(e, "kind", "") in ("client", "cluster")
                    or (getattr(e, "kind", "") == "node" and _role_changed(e))
                    for e in batch
                ):
                    self.sync_broker()
                if self.driver.is_leader:
                    for e in batch:
                        if getattr(e, "kind", "") == "node":
                            await self._publish_node(e.new, e.id)  # type: ignore[arg-type,union-attr]

    def _apply_unlock_key(self, key: str) -> None:
        if self.on_unlock_key is not None:
            try:
                self.on_unlock_key(key)
            except (ShoalError, CertError, OSError) as exc:
                log.error("could not rewrap this manager's keys: %s", exc)

    def on_leadership(self, leader: bool) -> None:
        loop = asyncio.get_running_loop()
        if leader:
            self._background(loop.create_task(self._take_over()))
            self.leader.start()
        else:
            self._background(loop.create_task(self.leader.stop()))

    async def _serving(self) -> bool:
        """Whether this manager may act as the leader: it is the leader and has applied
        everything committed (a new leader is waited for a little while it catches up)."""
        try:
            await self.driver.wait_serving(5.0)
            return True
        except RaftError:
            return False

    def _background(self, task: asyncio.Task[None]) -> None:
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _session_back(self) -> None:
        """This manager sees the broker again: the nodes it saw go get time to report back."""
        self.fleet.back(time.time())

    async def _take_over(self) -> None:
        """A new leader records what it saw while it was a follower (e.g. the old leader's
        will), then republishes the monitoring view."""
        self.observed[self.node_id] = "ready"
        if not await self._serving():
            return
        for node in self.store.view().list(Node):
            seen = self.observed.get(node.id)
            if seen is not None and seen != node.status:
                await self._set_status(node.id)
        await self._publish_all_nodes()

    async def _publish_all_nodes(self) -> None:
        for n in self.store.view().list(Node):
            await self._publish_node(n, n.id)

    async def _publish_node(self, node: Node | None, node_id: str) -> None:
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
        if node.role != "manager":
            return ""
        if node.id == self.driver.leader_id:
            return "Leader"
        if node.id in self.driver.voters and node.status == "ready":
            return "Reachable"
        return "Unreachable"

    # stacks by topic (leader) ------------------------------------------------------------
    async def _on_stack_ctl(self, topic: str, payload: bytes) -> None:
        parsed = Topics.parse_stack_ctl(topic)
        if parsed is None:
            self.session.rejections.reject(topic, "malformed stack control topic")
            return
        admin, stack, verb = parsed
        if verb == "result" or not self.driver.is_leader:
            return
        if verb not in ("deploy", "rm"):
            self.session.rejections.reject(topic, f"unknown stack verb {verb!r}")
            return
        client = self.store.view().get(Client, admin)
        if client is None or client.role != "admin":
            self.session.rejections.reject(topic, "stack control from a client that is not admin")
            return
        if verb == "deploy" and not payload:
            return  # a retained file being cleared
        self._background(
            asyncio.get_running_loop().create_task(
                self._stack_by_topic(admin, stack, verb, payload)
            )
        )

    async def _stack_by_topic(self, admin: str, stack: str, verb: str, payload: bytes) -> None:
        import hashlib

        from stacks import StackError, load_stack_text
        from stacks.loader import check_size

        if not await self._serving():
            return
        doc: dict[str, Any] = {
            "stack": stack,
            "verb": verb,
            "sha256": hashlib.sha256(payload).hexdigest(),
            "at": now_text(),
        }
        try:
            check_size(payload, f"{stack}.yml")  # before anything else reads it
            if verb == "deploy":
                spec = await asyncio.to_thread(  # a large file takes seconds: not on the loop
                    load_stack_text, payload, stack_name=stack, filename=f"{stack}.yml"
                )
                result = await self.stacks.deploy(spec)
                doc.update(ok=True, actions=result["actions"])
                doc["warnings"] = [w.message for w in spec.warnings]
            else:
                result = await self.stacks.rm({"stack": stack})
                doc.update(ok=True, actions=result["actions"])
            log.info("stack %s: %s by topic from %s", stack, verb, admin)
        except StackError as exc:
            doc.update(ok=False, errors=[str(e) for e in exc.errors])
        except (ShoalError, StoreError, RaftError) as exc:
            doc.update(ok=False, errors=[str(exc)])
        with contextlib.suppress(BrokerError):
            await self.session.publish(
                self.topics.stack_result(admin, stack), json.dumps(doc).encode(), retain=True
            )

    # enrollment (leader) -----------------------------------------------------------------
    async def _on_enroll(self, topic: str, env: Envelope) -> None:
        if not await self._serving():
            return
        client = topic.split("/")[2]
        try:
            self.enroll_limiter.admit(client)
        except RateLimited as exc:
            self.session.rejections.reject(topic, "enrollment rate limited")
            reply: dict[str, Any] = {"ok": False, "error": str(exc), "retry_after": exc.retry_after}
            with contextlib.suppress(BrokerError):
                await self.session.send(enroll_resp(client), "enrolled", reply, re=env.seq)
            return
        self.enroll_limiter.in_flight += 1
        try:
            reply = {"ok": True, **await self._enroll(env.body)}
        except (ShoalError, CertError, RaftError, StoreError) as exc:
            self.session.rejections.reject(topic, "enrollment refused")
            log.warning("enrollment from %s refused: %s", client, exc)
            reply = {"ok": False, "error": str(exc)}
        finally:
            self.enroll_limiter.in_flight -= 1
        with contextlib.suppress(BrokerError):
            await self.session.send(enroll_resp(client), "enrolled", reply, re=env.seq)

    async def _enroll(self, body: Any) -> dict[str, Any]:
        req = parse_request(body)
        token_text, csr, hostname, asked = req.token, req.csr, req.hostname, req.role
        try:
            token = JoinToken.parse(token_text)
        except TokenError as exc:
            raise ShoalError(str(exc)) from None
        ca = self.ca
        if token.ca_digest != ca.digest:
            raise ShoalError("the join token belongs to another swarm (its CA digest differs)")
        cluster = self.cluster
        role = None
        if token.matches(JoinToken.parse(cluster.manager_token)):
            role = "manager"
        elif token.matches(JoinToken.parse(cluster.worker_token)):
            role = "worker"
        if role is None:
            raise ShoalError(
                "the join token is not valid for this swarm: it is wrong or has been rotated;"
                " get the current one with `shoal swarm join-token worker` on a manager"
            )
        if asked is not None and asked != role:
            raise ShoalError(
                f"this is a {role} join token, but the node asked to join as a {asked};"
                f" get a {asked} token with `shoal swarm join-token {asked}` on a manager"
            )
        node_id = new_node_id()
        cert = ca.issue(csr, node_id=node_id, role=_ROLES[role], lifetime=self.lifetime)
        serial = str(Identity.from_cert(cert).serial)
        stamp = now_text()

        def add(tx: Tx) -> None:
            tx.put(
                Node(
                    id=node_id,
                    role=role,
                    hostname=hostname or node_id,
                    serials=(serial,),
                    cert=cert,
                    created=stamp,
                    updated=stamp,
                )
            )

        await self.store.update(add)
        # the broker must know the node before the node connects, or its first writes
        # (its "ready" state) would be silently denied
        await self.wait_broker_synced(self.store.applied)
        log.info("node %s (%s) joined as a %s", node_id, hostname, role)
        return {
            "node_id": node_id,
            "cluster_id": ca.cluster_id,
            "role": role,
            "cert": cert,
            "ca": ca.cert_pem,
            "cluster_port": self.cluster_port,
        }

    # node status and requests (leader) ---------------------------------------------------
    async def _on_node_state(self, topic: str, env: Envelope) -> None:
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
        self.observed[node_id] = status
        self._silenced.pop(node_id, None)
        if not self.driver.is_leader or not await self._serving():
            return
        node = self.store.view().get(Node, node_id)
        if node is None:
            self.session.rejections.reject(topic, "state from an unknown node")
            return
        if node.status != status:
            await self._set_status(node_id)
        if status == "ready" and node.role == "manager" and node_id not in self.driver.voters:
            await self._add_voter(node_id)

    async def liveness_forever(self, every: float = 1.0) -> None:
        """On the leader: a node silent too long counts as down, one whose death no will told
        of (it died during a broker outage, say; see agent.manager.outage); a silent node
        heard again is ready again."""
        while True:
            await asyncio.sleep(every)
            if self.driver.is_leader and self.leader.watching:
                try:
                    await self._check_silence()
                except (RaftError, NotLeader, StoreError) as exc:
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
            self.observed[node_id] = "down"
            await self._set_status(node_id)
        for node_id, at in list(self._silenced.items()):
            node = nodes.get(node_id)
            if node is None:
                del self._silenced[node_id]
            elif heard.get(node_id, -math.inf) > at:  # it spoke again: it was only silent
                del self._silenced[node_id]
                if node.status == "down" and self.observed.get(node_id) == "down":
                    log.info("node %s is heard from again", node_id)
                    self.observed[node_id] = "ready"
                    await self._set_status(node_id)

    async def _set_status(self, node_id: str) -> None:
        """Record the latest status seen for a node. Messages are handled concurrently, so the
        transaction reads the latest observation rather than the one that triggered it."""
        stamp = now_text()
        written: list[str] = []

        def change(tx: Tx) -> None:
            status = self.observed.get(node_id)
            n = tx.get(Node, node_id)
            if n is not None and status is not None and n.status != status:
                tx.put(_replace(n, status=status, updated=stamp))
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
        except (RaftError, NotLeader, TimeoutError) as exc:
            log.warning("could not add manager %s to the raft group yet: %s", node_id, exc)

    async def _on_node_request(self, topic: str, env: Envelope) -> None:
        node_id = Topics.node_of(topic)
        if node_id is None or not await self._serving():
            return
        if env.type != "renew":
            self.session.rejections.reject(topic, f"unknown request type {env.type!r}")
            return
        try:
            self.renew_limiter.admit(node_id)  # each renewal signs and commits: bound them
            reply: dict[str, Any] = {"ok": True, "cert": await self._renew(node_id, env.body)}
        except RateLimited as exc:
            self.session.rejections.reject(topic, "renewal rate limited")
            reply = {"ok": False, "error": str(exc), "retry_after": exc.retry_after}
        except (ShoalError, CertError, RaftError, StoreError) as exc:
            reply = {"ok": False, "error": str(exc)}
        with contextlib.suppress(BrokerError):
            await self.session.send(self.topics.node_resp(node_id), "renewed", reply, re=env.seq)

    async def _renew(self, node_id: str, body: Any) -> bytes:
        """A new certificate for a known node. The role is the one on record."""
        csr = body.get("csr") if isinstance(body, dict) else None
        if not isinstance(csr, bytes):
            raise ShoalError("malformed renewal request")
        node = self.store.view().get(Node, node_id)
        if node is None:
            raise ShoalError("this node is not part of the swarm any more")
        cert = self.ca.issue(csr, node_id=node_id, role=_ROLES[node.role], lifetime=self.lifetime)
        serial = str(Identity.from_cert(cert).serial)

        def record(tx: Tx) -> None:
            n = tx.get(Node, node_id)
            if n is None:
                raise ShoalError("this node is not part of the swarm any more")
            tx.put(_replace(n, serials=(*n.serials, serial), cert=cert))

        await self.store.update(record)
        log.info("renewed the certificate of node %s", node_id)
        return cert

    # control commands --------------------------------------------------------------------
    async def command(
        self,
        cmd: str,
        args: dict[str, Any],
        *,
        timeout: float = 15.0,
        request_id: str | None = None,
    ) -> Any:
        """Run a control command here if this is the leader, else on the leader.

        The command enters the cluster here: it gets its request id (see
        agent/manager/commands.py). While there is no leader the command waits for one; when
        the leader changes while a forwarded command is in flight, it is sent again, with the
        same request id, to the new leader, which runs it only if nobody has.
        """
        handler = self.commands.get(cmd)
        if handler is None:
            raise ShoalError(f"unknown command {cmd!r}")
        request_id = request_id or new_request_id()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            left = deadline - loop.time()
            if left <= 0:
                raise ShoalError(
                    "the swarm has no leader right now (is a majority of managers up?); try again"
                )
            if self.driver.is_leader:
                try:
                    reply = await self.runner.serve(request_id, handler, args, timeout=left)
                except NotLeader:
                    continue  # lost leadership midway: the new leader runs it (or knows it ran)
                return result_of(reply)
            leader = self.driver.leader_id
            if leader is None:
                await self.driver.leader_changed(min(left, 1.0))
                continue
            result = await self._forward(leader, cmd, args, request_id, left)
            if result is not _RESEND:
                return result

    async def _forward(
        self, leader: str, cmd: str, args: dict[str, Any], request_id: str, timeout: float
    ) -> Any:
        """Send a command to the leader; _RESEND when another leader took over meanwhile (or
        the leader said it no longer is one)."""
        request = asyncio.ensure_future(
            self.session.request(
                self.topics.mgr_req(leader),
                "control",
                {"cmd": cmd, "args": args, "request": request_id},
                timeout=timeout,
            )
        )
        try:
            while not request.done():
                changed = asyncio.ensure_future(self.driver.leader_changed(timeout))
                await asyncio.wait({request, changed}, return_when=asyncio.FIRST_COMPLETED)
                changed.cancel()
                now = self.driver.leader_id
                if not request.done() and now is not None and now != leader:
                    log.info("leader changed while %r was forwarded to %s; resending", cmd, leader)
                    return _RESEND
            body = request.result().body
            if isinstance(body, dict) and body.get("retry") is True:
                if self.driver.leader_id == leader:
                    await self.driver.leader_changed(min(timeout, 1.0))
                return _RESEND
            return raise_for_reply(request.result()).get("result")
        except BrokerError as exc:
            raise ShoalError(str(exc)) from None
        finally:
            request.cancel()

    async def _on_forwarded(self, topic: str, env: Envelope) -> None:
        body = env.body if isinstance(env.body, dict) else {}
        cmd, args = body.get("cmd"), body.get("args")
        request_id = body.get("request")
        if (
            env.type != "control"
            or not isinstance(cmd, str)
            or not isinstance(args, dict)
            or not isinstance(request_id, str | None)
        ):
            self.session.rejections.reject(topic, "malformed forwarded command")
            return
        handler = self.commands.get(cmd)
        reply: dict[str, Any]
        if handler is None:
            reply = {"ok": False, "error": f"unknown command {cmd!r}"}
        else:
            try:
                if not self.driver.is_leader:
                    raise NotLeader(self.driver.leader_id)
                reply = await self.runner.serve(request_id or new_request_id(), handler, args)
            except NotLeader:
                reply = {"ok": False, "error": _NOT_LEADER, "retry": True}
        with contextlib.suppress(BrokerError):
            await self.session.send(
                self.topics.mgr_req(env.sender), "control-reply", reply, re=env.seq
            )

    async def _cmd_join_token(self, args: dict[str, Any]) -> dict[str, str]:
        role = str(args.get("role"))
        if role not in ("worker", "manager"):
            raise ShoalError(f"unknown role {role!r}: use worker or manager")
        if args.get("rotate"):
            new = str(JoinToken.new(self.ca.digest))

            def rotate(tx: Tx) -> None:
                c = tx.get(Cluster, "cluster")
                assert c is not None
                field = "worker_token" if role == "worker" else "manager_token"
                tx.put(_replace(c, **{field: new}))

            await self.store.update(rotate)
        c = self.cluster
        token = c.worker_token if role == "worker" else c.manager_token
        return {
            "role": role,
            "token": token,
            "command": f"shoal swarm join --token {token} mqtts://{self.join_address}",
        }

    async def _cmd_node_ls(self, args: dict[str, Any]) -> list[dict[str, Any]]:
        with contextlib.suppress(RaftError, TimeoutError):
            await self.driver.read_barrier()
        out = []
        for n in sorted(self.store.view().list(Node), key=lambda n: (n.hostname, n.id)):
            out.append(
                {
                    "id": n.id,
                    "hostname": n.hostname,
                    "role": n.role,
                    "status": n.status,
                    "availability": n.availability,
                    "manager_status": self._manager_status(n),
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

    async def _cmd_node_rm(self, args: dict[str, Any]) -> str:
        node = self.find_node(str(args.get("node")))
        force = bool(args.get("force"))
        if node.id == self.node_id:
            raise ShoalError(
                f"node {node.id} is the leader itself; use `shoal swarm leave --force`"
            )
        if node.role == "manager" and not force:
            raise ShoalError(
                f"node {node.id} is a swarm manager; demote it to a worker before removal"
                " (or use --force)"
            )
        if node.status == "ready" and not force:
            raise ShoalError(f"node {node.id} is not down and can't be removed (use --force)")
        if node.role == "manager" and node.id in self.driver.voters:
            await self.driver.change_membership(ConfChangeType.RemoveNode, node.id)
        await self._forget(node.id)
        await self.wait_broker_synced(self.store.applied)
        await self._cut_session(node.id)
        for leaf in ("state", "assign"):
            with contextlib.suppress(BrokerError):
                await self.session.publish(self.topics.node(node.id, leaf), b"", retain=True)
        log.info("removed node %s and revoked its certificates", node.id)
        return node.id

    async def _cmd_manager_leave(self, args: dict[str, Any]) -> str:
        """A manager leaves: out of the Raft group first (while the broker still lets it
        speak Raft), then out of the store, which revokes it and shrinks the broker's ACL.
        A leader that leaves hands leadership over first; the new leader does the rest."""
        node = self.find_node(str(args.get("node")))
        others = [v for v in self.driver.voters if v != node.id]
        if not others:
            return "last"
        if node.id == self.node_id:
            ready = {n.id for n in self.store.view().list(Node) if n.status == "ready"}
            self.driver.core.transfer_leadership(next((v for v in others if v in ready), others[0]))
            self.driver.wake()
            await self.driver.leader_changed(5.0)
            return str(await self.command("manager-leave", args))
        if node.id in self.driver.voters:
            await self.driver.change_membership(ConfChangeType.RemoveNode, node.id)
        await self._forget(node.id)
        log.info("manager %s left the swarm", node.id)
        return node.id

    async def _forget(self, node_id: str) -> None:
        """Delete a node's record and revoke every certificate it held."""
        stamp = now_text()

        def remove(tx: Tx) -> None:
            n = tx.get(Node, node_id)
            c = tx.get(Cluster, "cluster")
            assert c is not None
            if n is not None:
                tx.delete(Node, n.id)
                tx.put(_replace(c, revoked={**c.revoked, **{s: stamp for s in n.serials}}))

        await self.store.update(remove)

    async def _cmd_swarm_update(self, args: dict[str, Any]) -> dict[str, Any]:
        autolock = args.get("autolock")
        limit = args.get("task_history_limit")
        if autolock is None and limit is None and args.get("node_grace") is None:
            raise ShoalError(
                "nothing to update: use --autolock=true|false, --task-history-limit N"
                " or --node-grace DURATION"
            )
        grace = _node_grace(args.get("node_grace"))
        if limit is not None and (type(limit) is not int or not 1 <= limit <= MAX_TASK_HISTORY):
            raise ShoalError(
                f"--task-history-limit must be a whole number from 1 to {MAX_TASK_HISTORY}"
            )
        if grace is not None:
            await self._set_node_grace(grace)
        if limit is not None:

            def set_limit(tx: Tx) -> None:
                c = tx.get(Cluster, "cluster")
                if c is not None and c.task_history_limit != limit:
                    tx.put(_replace(c, task_history_limit=limit))

            await self.store.update(set_limit)
        if not isinstance(autolock, bool):
            return {"autolock": bool(self.cluster.unlock_key), "unlock_key": "", "changed": False}
        cluster = self.cluster
        if autolock == bool(cluster.unlock_key):
            return {"autolock": autolock, "unlock_key": cluster.unlock_key, "changed": False}
        key = new_unlock_key() if autolock else ""
        await self._set_unlock_key(key)
        return {"autolock": autolock, "unlock_key": key, "changed": True}

    async def _set_node_grace(self, seconds: int) -> None:
        def change(tx: Tx) -> None:
            c = tx.get(Cluster, "cluster")
            if c is not None and c.node_grace_s != seconds:
                tx.put(_replace(c, node_grace_s=seconds))

        await self.store.update(change)

    async def _cmd_unlock_key(self, args: dict[str, Any]) -> dict[str, Any]:
        cluster = self.cluster
        if not cluster.unlock_key:
            raise ShoalError(
                "no unlock key is set: autolock is off (turn it on with"
                " `shoal swarm update --autolock=true`)"
            )
        key = cluster.unlock_key
        if args.get("rotate"):
            key = new_unlock_key()
            await self._set_unlock_key(key)
        return {"unlock_key": key}

    async def _set_unlock_key(self, key: str) -> None:
        def change(tx: Tx) -> None:
            c = tx.get(Cluster, "cluster")
            assert c is not None
            tx.put(_replace(c, unlock_key=key))

        await self.store.update(change)

    async def _cmd_promote(self, args: dict[str, Any]) -> str:
        node = self.find_node(str(args.get("node")))
        if node.role == "manager":
            return f"Node {node.id} is already a manager."
        await self._set_role(node.id, "manager")
        return f"Node {node.id} promoted to a manager in the swarm."

    async def _cmd_demote(self, args: dict[str, Any]) -> str:
        node = self.find_node(str(args.get("node")))
        if node.role != "manager":
            return f"Node {node.id} is already a worker."
        voters = self.driver.voters
        managers = [n for n in self.store.view().list(Node) if n.role == "manager"]
        if len(managers) <= 1:
            raise ShoalError("attempting to demote the last manager of the swarm")
        if node.id == self.broker_host_id:
            raise ShoalError(
                f"node {node.id} runs the swarm's embedded broker and must stay a manager"
            )
        remaining = [v for v in voters if v != node.id]
        ready = {n.id for n in managers if n.status == "ready"}
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
        await self._set_role(node.id, "worker")
        return f"Manager {node.id} demoted in the swarm."

    async def _set_role(self, node_id: str, role: str) -> None:
        """Record the new role, let the broker's ACL catch up, then tell the node, which
        renews its certificate (the role on record goes into it) and changes what it runs."""
        stamp = now_text()

        def change(tx: Tx) -> None:
            n = tx.get(Node, node_id)
            if n is None:
                raise ShoalError(f"node {node_id} not found")
            tx.put(_replace(n, role=role, updated=stamp))

        await self.store.update(change)
        await self.wait_broker_synced(self.store.applied)
        with contextlib.suppress(BrokerError):
            await self.session.send(self.topics.node_resp(node_id), "role", {"role": role})

    async def _cmd_cert_issue(self, args: dict[str, Any]) -> dict[str, Any]:
        role = str(args.get("role"))
        if role not in ("admin", "monitor"):
            raise ShoalError(f"unknown client role {role!r}: use admin or monitor")
        csr = str(args.get("csr", "")).encode()
        lifetime = timedelta(seconds=int(args["lifetime_s"])) if args.get("lifetime_s") else None
        ident_id = new_admin_id() if role == "admin" else new_monitor_id()
        ca = self.ca
        cert = ca.issue(
            csr,
            node_id=ident_id,
            role=Role.ADMIN if role == "admin" else Role.MONITOR,
            lifetime=lifetime or self.lifetime,
        )
        serial = str(Identity.from_cert(cert).serial)
        await self.store.update(lambda tx: tx.put(Client(id=ident_id, role=role, serial=serial)))
        log.info("issued a %s certificate %s", role, ident_id)
        return {"id": ident_id, "cert": cert.decode(), "ca": ca.cert_pem.decode()}

    async def _cmd_cert_ls(self, args: dict[str, Any]) -> list[dict[str, str]]:
        return [{"id": c.id, "role": c.role} for c in self.store.view().list(Client)]

    async def _cmd_cert_rm(self, args: dict[str, Any]) -> str:
        ident_id = str(args.get("id"))
        stamp = now_text()

        def remove(tx: Tx) -> None:
            c = tx.get(Client, ident_id)
            cl = tx.get(Cluster, "cluster")
            if c is None or cl is None:
                raise ShoalError(f"no admin or monitor certificate {ident_id}")
            tx.delete(Client, ident_id)
            tx.put(_replace(cl, revoked={**cl.revoked, c.serial: stamp}))

        await self.store.update(remove)
        await self.wait_broker_synced(self.store.applied)
        await self._cut_session(ident_id)
        return ident_id

    # revocation ------------------------------------------------------------------------
    async def _cut_session(self, ident_id: str) -> None:
        """End a revoked identity's live session.

        Brokers do not re-check connected clients against a new CRL, so the leader takes the
        session over: it connects with a short-lived certificate for the same identity (the
        broker forces client id = CN, so this replaces the live connection), then leaves
        cleanly. Reconnects are refused by the CRL. The one-off certificate is revoked after.
        """
        role = Role.WORKER
        if ident_id.startswith("adm-"):
            role = Role.ADMIN
        elif ident_id.startswith("mon-"):
            role = Role.MONITOR
        ca = self.ca
        key = new_private_key()
        cert = ca.issue(make_csr(key), node_id=ident_id, role=role, lifetime=timedelta(minutes=5))
        tmp = self.work_dir / f"cut-{ident_id}"
        tmp.mkdir(mode=0o700, parents=True, exist_ok=True)
        write_file_atomic(tmp / "cert.pem", cert, 0o600)
        write_file_atomic(tmp / "key.pem", key_to_pem(key), 0o600)
        write_file_atomic(tmp / "ca.pem", ca.cert_pem, 0o600)
        host, port = self.kick_address
        kicker = Session(
            SessionConfig(
                host=host,
                port=port,
                client_id=ident_id,
                sender=self.node_id,
                tls=lambda: client_context(tmp / "ca.pem", tmp / "cert.pem", tmp / "key.pem"),
                clean_session=True,
            )
        )
        kicker.start()
        try:
            await kicker.wait_connected(10)
        except BrokerError as exc:
            log.warning("could not take over the session of %s: %s", ident_id, exc)
        finally:
            await kicker.close()
            for f in tmp.iterdir():
                f.unlink()
            tmp.rmdir()
        serial = str(Identity.from_cert(cert).serial)
        stamp = now_text()

        def revoke(tx: Tx) -> None:
            c = tx.get(Cluster, "cluster")
            assert c is not None
            tx.put(_replace(c, revoked={**c.revoked, serial: stamp}))

        await self.store.update(revoke)

    async def refresh_crl_forever(self, every: float = 86400.0) -> None:
        """CRLs expire: re-sign it daily (it is valid for a week)."""
        while True:
            await asyncio.sleep(every)
            self.sync_broker()


_RESEND = object()
_NOT_LEADER = "this manager is no longer the leader; try again"


def _node_grace(value: Any) -> int | None:
    """Whole seconds of ``swarm update --node-grace``; None when not given."""
    if value is None:
        return None
    if not isinstance(value, int | float) or isinstance(value, bool) or not 1 <= value <= 3600:
        raise ShoalError("--node-grace must be from 1s to 1h, e.g. --node-grace 30s")
    return round(value)


def _replace(obj: Any, **changes: Any) -> Any:
    import dataclasses

    return dataclasses.replace(obj, **changes)


def _role_changed(e: Any) -> bool:
    """Whether the broker's ACL must change: a node came, went or changed role (every node
    has a section of its own in the ACL)."""
    old, new = e.old, e.new
    if old is None or new is None:
        return old is not new
    return bool(old.role != new.role)
