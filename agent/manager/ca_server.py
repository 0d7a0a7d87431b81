"""The cluster CA's server, on the leader: enrollment with a join token, certificate renewal
for known nodes (both rate limited, see enrollment.py), and the admin and monitor client
certificates (`shoal cert issue|ls|rm`)."""

from __future__ import annotations

import contextlib
import logging
import time
from datetime import timedelta
from typing import Any

from agent.manager.broker_sync import BrokerSync
from agent.manager.cluster import cluster_ca, cluster_of, lifetime, replace, serving
from agent.manager.enrollment import RENEW_LIMITS, EnrollLimiter, RateLimited, parse_request
from agent.manager.raftdriver import RaftDriver
from agent.manager.revocation import Revocation
from agent.manager.store import Client, ClientRole, Cluster, Node, NodeRole, Store, Tx
from agent.model.errors import ShoalError
from agent.model.stamps import now_text
from broker.envelope import Envelope
from broker.errors import BrokerError
from broker.session import Session
from broker.topics import Topics, enroll_resp
from certs import (
    CertError,
    Identity,
    JoinToken,
    Role,
    TokenError,
    new_admin_id,
    new_monitor_id,
    new_node_id,
)

__all__ = ["ROLES", "CAServer"]

log = logging.getLogger("shoal.manager")

ROLES = {"manager": Role.MANAGER, "worker": Role.WORKER}


class CAServer:
    def __init__(
        self,
        *,
        store: Store,
        driver: RaftDriver,
        session: Session,
        topics: Topics,
        cluster_port: int,
        broker: BrokerSync,
        revocation: Revocation,
    ) -> None:
        self.store = store
        self.driver = driver
        self.session = session
        self.topics = topics
        self.cluster_port = cluster_port
        self.broker = broker
        self.revocation = revocation
        self.enroll_limiter = EnrollLimiter(time.monotonic)
        self.renew_limiter = EnrollLimiter(time.monotonic, RENEW_LIMITS, what="certificate renewal")

    # enrollment --------------------------------------------------------------------------
    async def on_enroll(self, topic: str, env: Envelope) -> None:
        if not await serving(self.driver):
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
        except (ShoalError, CertError) as exc:
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
        ca = cluster_ca(self.store)
        if token.ca_digest != ca.digest:
            raise ShoalError("the join token belongs to another swarm (its CA digest differs)")
        role = _role_of(token, cluster_of(self.store), asked)
        node_id = new_node_id()
        cert = ca.issue(csr, node_id=node_id, role=ROLES[role], lifetime=lifetime(self.store))
        serial = str(Identity.from_cert(cert).serial)
        stamp = now_text()

        def add(tx: Tx) -> None:
            tx.put(
                Node(
                    id=node_id,
                    role=NodeRole(role),
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
        await self.broker.wait(self.store.applied)
        await self.broker.settled()
        log.info("node %s (%s) joined as a %s", node_id, hostname, role)
        return {
            "node_id": node_id,
            "cluster_id": ca.cluster_id,
            "role": role,
            "cert": cert,
            "ca": ca.cert_pem,
            "cluster_port": self.cluster_port,
        }

    # renewal -----------------------------------------------------------------------------
    async def on_node_request(self, topic: str, env: Envelope) -> None:
        node_id = Topics.node_of(topic)
        if node_id is None or not await serving(self.driver):
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
        except (ShoalError, CertError) as exc:
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
        cert = cluster_ca(self.store).issue(
            csr, node_id=node_id, role=ROLES[node.role], lifetime=lifetime(self.store)
        )
        serial = str(Identity.from_cert(cert).serial)

        def record(tx: Tx) -> None:
            n = tx.get(Node, node_id)
            if n is None:
                raise ShoalError("this node is not part of the swarm any more")
            tx.put(replace(n, serials=(*n.serials, serial), cert=cert))

        await self.store.update(record)
        log.info("renewed the certificate of node %s", node_id)
        return cert

    # client certificates -----------------------------------------------------------------
    async def cert_issue(self, args: dict[str, Any]) -> dict[str, Any]:
        role = str(args.get("role"))
        if role not in ("admin", "monitor"):
            raise ShoalError(f"unknown client role {role!r}: use admin or monitor")
        csr = str(args.get("csr", "")).encode()
        life = timedelta(seconds=int(args["lifetime_s"])) if args.get("lifetime_s") else None
        ident_id = new_admin_id() if role == "admin" else new_monitor_id()
        ca = cluster_ca(self.store)
        cert = ca.issue(
            csr,
            node_id=ident_id,
            role=Role.ADMIN if role == "admin" else Role.MONITOR,
            lifetime=life or lifetime(self.store),
        )
        serial = str(Identity.from_cert(cert).serial)
        await self.store.update(
            lambda tx: tx.put(Client(id=ident_id, role=ClientRole(role), serial=serial))
        )
        log.info("issued a %s certificate %s", role, ident_id)
        return {"id": ident_id, "cert": cert.decode(), "ca": ca.cert_pem.decode()}

    async def cert_ls(self, args: dict[str, Any]) -> list[dict[str, str]]:
        return [{"id": c.id, "role": c.role} for c in self.store.view().list(Client)]

    async def cert_rm(self, args: dict[str, Any]) -> str:
        ident_id = str(args.get("id"))
        stamp = now_text()

        def remove(tx: Tx) -> None:
            c = tx.get(Client, ident_id)
            cl = tx.get(Cluster, "cluster")
            if c is None or cl is None:
                raise ShoalError(f"no admin or monitor certificate {ident_id}")
            tx.delete(Client, ident_id)
            tx.put(replace(cl, revoked={**cl.revoked, c.serial: stamp}))

        await self.store.update(remove)
        await self.broker.wait(self.store.applied)
        await self.revocation.cut_session(ident_id)
        return ident_id


def _role_of(token: JoinToken, cluster: Cluster, asked: str | None) -> str:
    """The role a join token admits to, refused when it is no current token of the swarm or
    the node asked for the other role."""
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
    return role
