"""Revocation: a removed node's or client's certificates go on the CRL, its live session is
cut (brokers do not re-check connected clients against a new CRL), and the CRL is re-signed
before it expires."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from pathlib import Path

from agent.manager.broker_sync import BrokerSync
from agent.manager.cluster import cluster_ca, replace
from agent.manager.store import Cluster, Node, Store, Tx
from agent.model.stamps import now_text
from broker.errors import BrokerError
from broker.session import Session, SessionConfig
from broker.tls import client_context
from certs import Identity, Role, key_to_pem, make_csr, new_private_key, write_file_atomic

__all__ = ["Revocation"]

log = logging.getLogger("shoal.manager")


class Revocation:
    def __init__(
        self,
        *,
        node_id: str,
        work_dir: Path,
        store: Store,
        kick_address: tuple[str, int],
        broker: BrokerSync,
    ) -> None:
        self.node_id = node_id
        self.work_dir = work_dir
        self.store = store
        self.kick_address = kick_address
        self.broker = broker

    async def forget(self, node_id: str) -> None:
        """Delete a node's record and revoke every certificate it held."""
        stamp = now_text()

        def remove(tx: Tx) -> None:
            n = tx.get(Node, node_id)
            c = tx.get(Cluster, "cluster")
            assert c is not None
            if n is not None:
                tx.delete(Node, n.id)
                tx.put(replace(c, revoked={**c.revoked, **{s: stamp for s in n.serials}}))

        await self.store.update(remove)

    async def take_over(self, ident_id: str) -> None:
        """Make a live session of `ident_id` log in again: take it over and leave (its
        owner reconnects). The one-off certificate is not revoked: it lives 5 minutes."""
        await self._with_one_off_cert(ident_id)

    async def _with_one_off_cert(self, ident_id: str, *, store_role: bool = True) -> bytes:
        """Take `ident_id`'s session over with a 5-minute certificate; returns that certificate.
        With `store_role`, a node's certificate carries the role the store gives it."""
        role = Role.WORKER
        if ident_id.startswith("adm-"):
            role = Role.ADMIN
        elif ident_id.startswith("mon-"):
            role = Role.MONITOR
        elif store_role and (node := self.store.view().get(Node, ident_id)) is not None:
            role = Role.MANAGER if node.role == "manager" else Role.WORKER
        ca = cluster_ca(self.store)
        key = new_private_key()
        cert = ca.issue(make_csr(key), node_id=ident_id, role=role, lifetime=timedelta(minutes=5))
        tmp = self.work_dir / f"cut-{ident_id}"
        tmp.mkdir(mode=0o700, parents=True, exist_ok=True)
        write_file_atomic(tmp / "cert.pem", cert, 0o600)
        write_file_atomic(tmp / "key.pem", key_to_pem(key), 0o600)
        write_file_atomic(tmp / "ca.pem", ca.cert_pem, 0o600)
        try:
            await self._take_over(ident_id, tmp)
        finally:
            for f in tmp.iterdir():
                f.unlink()
            tmp.rmdir()
        return cert

    async def cut_session(self, ident_id: str) -> None:
        """End a revoked identity's live session.

        Brokers do not re-check connected clients against a new CRL, so the leader takes the
        session over: it connects with a short-lived certificate for the same identity (the
        broker forces client id = CN, so this replaces the live connection), then leaves
        cleanly. Reconnects are refused by the CRL. The one-off certificate is revoked after.
        """
        cert = await self._with_one_off_cert(ident_id, store_role=False)
        serial = str(Identity.from_cert(cert).serial)
        stamp = now_text()

        def revoke(tx: Tx) -> None:
            c = tx.get(Cluster, "cluster")
            assert c is not None
            tx.put(replace(c, revoked={**c.revoked, serial: stamp}))

        await self.store.update(revoke)

    async def _take_over(self, ident_id: str, tmp: Path) -> None:
        """Connect as `ident_id` with the one-off certificate in `tmp`, then leave."""
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

    async def refresh_crl_forever(self, every: float = 86400.0) -> None:
        """CRLs expire: re-sign it daily (it is valid for a week)."""
        while True:
            await asyncio.sleep(every)
            self.broker.sync()
