"""The manager role of the foundation: enrollment, certificate renewal, node status,
join tokens and revocation, over one MQTT session.

Cluster state lives in :class:`ClusterState` on this manager's disk for now; every change is
saved before it is acknowledged.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from agent.errors import ShoalError
from agent.manager.broker_host import BrokerHost
from agent.manager.state import ClusterState, NodeRecord
from broker.envelope import Envelope
from broker.errors import BrokerError
from broker.session import Session, SessionConfig
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
    make_csr,
    new_admin_id,
    new_monitor_id,
    new_node_id,
    new_private_key,
    write_file_atomic,
)

__all__ = ["Manager"]

log = logging.getLogger("shoal.manager")

_ROLES = {"manager": Role.MANAGER, "worker": Role.WORKER}


class Manager:
    def __init__(
        self,
        *,
        node_id: str,
        state_file: Path,
        ca: ClusterCA,
        session: Session,
        broker_host: BrokerHost | None,
        reload_broker: Callable[[], None] | None,
        join_address: str,
        kick_address: tuple[str, int],
        cluster_port: int,
        enroll_port: int,
    ) -> None:
        self.node_id = node_id
        self.state_file = state_file
        self.state = ClusterState.load(state_file)
        self.ca = ca
        self.session = session
        self.topics = Topics(ca.cluster_id)
        self.broker_host = broker_host
        self.reload_broker = reload_broker
        self.join_address = join_address
        self.kick_address = kick_address
        self.cluster_port = cluster_port
        self.enroll_port = enroll_port
        self._lock = asyncio.Lock()
        session.on(ENROLL_REQ_FILTER, self._on_enroll)
        session.on(self.topics.all_nodes("state"), self._on_node_state)
        session.on(self.topics.all_nodes("req"), self._on_node_request)

    # state ---------------------------------------------------------------------------
    def _save(self) -> None:
        self.state.save(self.state_file)

    def sync_broker(self) -> None:
        if self.broker_host is not None:
            self.broker_host.sync(self.state)
            if self.reload_broker is not None:
                self.reload_broker()

    @property
    def lifetime(self) -> timedelta:
        return timedelta(seconds=self.state.cert_lifetime_s)

    # enrollment ----------------------------------------------------------------------
    async def _on_enroll(self, topic: str, env: Envelope) -> None:
        client = topic.split("/")[2]
        try:
            body = await self._enroll(env.body)
            reply: dict[str, Any] = {"ok": True, **body}
        except (ShoalError, CertError) as exc:
            log.warning("enrollment from %s refused: %s", client, exc)
            reply = {"ok": False, "error": str(exc)}
        with contextlib.suppress(BrokerError):
            await self.session.send(enroll_resp(client), "enrolled", reply, re=env.seq)

    async def _enroll(self, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise ShoalError("malformed enrollment request")
        token_text, csr = body.get("token"), body.get("csr")
        hostname, asked = body.get("hostname", ""), body.get("role")
        if not isinstance(token_text, str) or not isinstance(csr, bytes):
            raise ShoalError("malformed enrollment request: token and csr are required")
        if not isinstance(hostname, str) or len(hostname) > 253:
            raise ShoalError("malformed enrollment request: bad hostname")
        try:
            token = JoinToken.parse(token_text)
        except TokenError as exc:
            raise ShoalError(str(exc)) from None
        if token.ca_digest != self.ca.digest:
            raise ShoalError("the join token belongs to another swarm (its CA digest differs)")
        role = self.state.role_for_token(token)
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
        async with self._lock:
            node_id = new_node_id()
            cert = self.ca.issue(csr, node_id=node_id, role=_ROLES[role], lifetime=self.lifetime)
            serial = Identity.from_cert(cert).serial
            self.state.add_node(node_id, role, hostname or node_id, serial)
            self._save()
            if role == "manager":
                self.sync_broker()
        log.info("node %s (%s) joined as a %s", node_id, hostname, role)
        return {
            "node_id": node_id,
            "cluster_id": self.ca.cluster_id,
            "role": role,
            "cert": cert,
            "ca": self.ca.cert_pem,
            "cluster_port": self.cluster_port,
        }

    # node status and requests --------------------------------------------------------
    async def _on_node_state(self, topic: str, env: Envelope) -> None:
        node_id = Topics.node_of(topic)
        if node_id is None or node_id not in self.state.nodes:
            self.session.rejections.reject(topic, "state from an unknown node")
            return
        body = env.body
        status = body.get("status") if isinstance(body, dict) else None
        if status not in ("ready", "down"):
            self.session.rejections.reject(topic, "malformed node state")
            return
        if self.state.set_status(node_id, status):
            self._save()
            log.info("node %s is %s", node_id, status)
        await self._publish_node(self.state.nodes[node_id])

    async def _publish_node(self, rec: NodeRecord) -> None:
        doc = {
            "id": rec.id,
            "hostname": rec.hostname,
            "role": rec.role,
            "status": rec.status,
            "availability": rec.availability,
            "updated": rec.updated,
        }
        with contextlib.suppress(BrokerError):
            await self.session.publish(
                self.topics.mon("node", rec.id), json.dumps(doc).encode(), retain=True
            )

    async def _on_node_request(self, topic: str, env: Envelope) -> None:
        node_id = Topics.node_of(topic)
        if node_id is None:
            return
        if env.type != "renew":
            self.session.rejections.reject(topic, f"unknown request type {env.type!r}")
            return
        try:
            reply: dict[str, Any] = {"ok": True, "cert": await self._renew(node_id, env.body)}
        except (ShoalError, CertError) as exc:
            reply = {"ok": False, "error": str(exc)}
        with contextlib.suppress(BrokerError):
            await self.session.send(self.topics.node_resp(node_id), "renewed", reply, re=env.seq)

    async def _renew(self, node_id: str, body: Any) -> bytes:
        """A new certificate for a known node. The role stays the one on record."""
        csr = body.get("csr") if isinstance(body, dict) else None
        if not isinstance(csr, bytes):
            raise ShoalError("malformed renewal request")
        async with self._lock:
            rec = self.state.nodes.get(node_id)
            if rec is None:
                raise ShoalError("this node is not part of the swarm any more")
            cert = self.ca.issue(
                csr, node_id=node_id, role=_ROLES[rec.role], lifetime=self.lifetime
            )
            rec.serials.append(Identity.from_cert(cert).serial)
            self._save()
        log.info("renewed the certificate of node %s", node_id)
        return cert

    # commands from the control socket ------------------------------------------------
    def join_token(self, role: str, rotate: bool) -> dict[str, str]:
        if rotate:
            self.state.rotate_token(role, self.ca.digest)
            self._save()
        token = self.state.token_for(role)
        return {
            "role": role,
            "token": token,
            "command": f"shoal swarm join --token {token} mqtts://{self.join_address}",
        }

    def node_list(self) -> list[dict[str, Any]]:
        out = []
        for rec in sorted(self.state.nodes.values(), key=lambda r: (r.hostname, r.id)):
            mstatus = ""
            if rec.role == "manager":
                if rec.id == self.node_id:
                    mstatus = "Leader"
                else:
                    mstatus = "Reachable" if rec.status == "ready" else "Unreachable"
            out.append(
                {
                    "id": rec.id,
                    "hostname": rec.hostname,
                    "role": rec.role,
                    "status": rec.status,
                    "availability": rec.availability,
                    "manager_status": mstatus,
                    "self": rec.id == self.node_id,
                }
            )
        return out

    async def remove_node(self, ref: str, force: bool) -> str:
        async with self._lock:
            rec = self.state.find_node(ref)
            if rec.id == self.node_id:
                raise ShoalError(
                    f"node {rec.id} is this manager itself; use `shoal swarm leave --force` here"
                )
            if rec.role == "manager" and not force:
                raise ShoalError(
                    f"node {rec.id} is a swarm manager; demote it to a worker before removal"
                    " (or use --force)"
                )
            if rec.status == "ready" and not force:
                raise ShoalError(
                    f"node {rec.id} is not down and can't be removed (use --force to remove it)"
                )
            self.state.remove_node(rec.id)
            self._save()
            self.sync_broker()
        await self._cut_session(rec.id)
        for leaf in ("state", "assign"):
            with contextlib.suppress(BrokerError):
                await self.session.publish(self.topics.node(rec.id, leaf), b"", retain=True)
        with contextlib.suppress(BrokerError):
            await self.session.publish(self.topics.mon("node", rec.id), b"", retain=True)
        log.info("removed node %s and revoked its certificates", rec.id)
        return rec.id

    async def _cut_session(self, node_id: str) -> None:
        """End a revoked node's live session.

        Brokers do not re-check connected clients against a new CRL, so the manager takes the
        session over: it connects with a short-lived certificate for the same identity (the
        broker forces client id = CN, so this replaces the node's connection), then leaves
        cleanly. The revoked node's reconnect is refused by the CRL. The one-off certificate
        is revoked right after.
        """
        key = new_private_key()
        role = Role.WORKER
        if node_id.startswith("adm-"):
            role = Role.ADMIN
        elif node_id.startswith("mon-"):
            role = Role.MONITOR
        cert = self.ca.issue(
            make_csr(key), node_id=node_id, role=role, lifetime=timedelta(minutes=5)
        )
        tmp = self.state_file.parent / f"cut-{node_id}"
        tmp.mkdir(mode=0o700, exist_ok=True)
        write_file_atomic(tmp / "cert.pem", cert, 0o600)
        write_file_atomic(tmp / "key.pem", key_to_pem(key), 0o600)
        write_file_atomic(tmp / "ca.pem", self.ca.cert_pem, 0o600)
        host, port = self.kick_address
        kicker = Session(
            SessionConfig(
                host=host,
                port=port,
                client_id=node_id,
                sender=self.node_id,
                tls=lambda: client_context(tmp / "ca.pem", tmp / "cert.pem", tmp / "key.pem"),
                clean_session=True,
            )
        )
        kicker.start()
        try:
            await kicker.wait_connected(10)
        except BrokerError as exc:
            log.warning("could not take over the session of %s: %s", node_id, exc)
        finally:
            await kicker.close()
            for f in tmp.iterdir():
                f.unlink()
            tmp.rmdir()
        async with self._lock:
            self.state.revoke(Identity.from_cert(cert).serial)
            self._save()
            self.sync_broker()

    async def issue_client(self, role: str, csr: bytes, lifetime_s: int | None) -> dict[str, Any]:
        """A certificate for a person or tool: an admin (control topics, monitoring) or a
        monitor (read-only monitoring topics). Recorded, so the broker's ACL knows it."""
        if role not in ("admin", "monitor"):
            raise ShoalError(f"unknown client role {role!r}: use admin or monitor")
        lifetime = timedelta(seconds=lifetime_s) if lifetime_s else self.lifetime
        async with self._lock:
            ident_id = new_admin_id() if role == "admin" else new_monitor_id()
            cert = self.ca.issue(
                csr,
                node_id=ident_id,
                role=Role.ADMIN if role == "admin" else Role.MONITOR,
                lifetime=lifetime,
            )
            registry = self.state.admins if role == "admin" else self.state.monitors
            registry[ident_id] = Identity.from_cert(cert).serial
            self._save()
            self.sync_broker()
        log.info("issued a %s certificate %s", role, ident_id)
        return {"id": ident_id, "cert": cert.decode(), "ca": self.ca.cert_pem.decode()}

    def client_list(self) -> list[dict[str, str]]:
        out = [{"id": i, "role": "admin"} for i in sorted(self.state.admins)]
        return out + [{"id": i, "role": "monitor"} for i in sorted(self.state.monitors)]

    async def revoke_client(self, ident_id: str) -> str:
        async with self._lock:
            for registry in (self.state.admins, self.state.monitors):
                if ident_id in registry:
                    self.state.revoke(registry.pop(ident_id))
                    break
            else:
                raise ShoalError(f"no admin or monitor certificate {ident_id}")
            self._save()
            self.sync_broker()
        await self._cut_session(ident_id)
        return ident_id

    async def refresh_crl_forever(self, every: float = 86400.0) -> None:
        """CRLs expire: re-sign it daily (it is valid for a week)."""
        while True:
            await asyncio.sleep(every)
            async with self._lock:
                self.sync_broker()
