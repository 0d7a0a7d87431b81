"""Certificate renewal on the node: a new key made by a child process, a certificate for it
from the leader (same identity, the role on record), then a reconnect with it; done again
before each certificate expires (see certs.renewal)."""

from __future__ import annotations

import asyncio
import logging
import os
import random
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from agent.model.errors import ShoalError
from agent.paths import DataDir
from broker.errors import BrokerError
from broker.session import Session, raise_for_reply
from broker.topics import Topics
from certs.certinfo import read_cert_info
from certs.files import write_file_atomic
from certs.renewal import renewal_time

__all__ = ["CLOCK_SKEW", "Renewal"]

log = logging.getLogger("shoal.daemon")

# certificates are back-dated this much for clock skew (certs.ca.CLOCK_SKEW)
CLOCK_SKEW = timedelta(minutes=5)


class Renewal:
    def __init__(
        self,
        data: DataDir,
        session: Session,
        topics: Topics,
        node_id: str,
        rng: random.Random,
        key_password: Callable[[], str | None],
    ) -> None:
        self.data = data
        self.session = session
        self.topics = topics
        self.node_id = node_id
        self.rng = rng
        self.key_password = key_password  # the unlock key, when autolock wraps the node's key

    async def forever(self, removed: Callable[[], bool]) -> None:
        """Renew before each certificate expires, until `removed()` says the swarm removed
        this node."""
        while True:
            ident = read_cert_info(self.data.node_cert)
            # not_before is back-dated for clock skew; renew relative to the issue time
            issued = min(ident.not_before + CLOCK_SKEW, ident.not_after)
            at = renewal_time(issued, ident.not_after, self.rng)
            wait = (at - datetime.now(UTC)).total_seconds()
            if wait > 0:
                await asyncio.sleep(wait)
            if removed():
                return  # the swarm removed this node: it renews nothing any more
            try:
                await self.renew()
            except (BrokerError, ShoalError) as exc:
                log.warning("certificate renewal failed, retrying soon: %s", exc)
                await asyncio.sleep(min(30.0, max(1.0, wait / 10)))

    async def renew(self) -> None:
        """Get a new certificate (same identity and role) and reconnect with it."""
        new_key = self.data.node_key.with_suffix(".new")
        csr = await self._keygen(new_key)
        await self.session.wait_connected(30)
        reply = await self.session.request(
            self.topics.node_req(self.node_id), "renew", {"csr": csr}, timeout=30
        )
        cert = raise_for_reply(reply).get("cert")
        if not isinstance(cert, bytes):
            raise ShoalError("malformed renewal answer")
        write_file_atomic(self.data.node_cert.with_suffix(".new"), cert, 0o644)
        ident = read_cert_info(self.data.node_cert.with_suffix(".new"))
        if ident.node_id != self.node_id:
            raise ShoalError("the renewed certificate names another node; keeping the old one")
        os.replace(self.data.node_cert.with_suffix(".new"), self.data.node_cert)
        os.replace(new_key, self.data.node_key)
        log.info("certificate renewed; valid until %s", ident.not_after.isoformat())
        self.session.reconnect()

    async def _keygen(self, path: Path) -> bytes:
        """A new key at `path` and its CSR, made by a child process (see certs.keygen)."""
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "certs.keygen",
            str(path),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await proc.communicate((self.key_password() or "").encode() + b"\n")
        if proc.returncode != 0 or b"CERTIFICATE REQUEST" not in out:
            raise ShoalError(f"cannot make a new key: {err.decode(errors='replace').strip()}")
        return out
