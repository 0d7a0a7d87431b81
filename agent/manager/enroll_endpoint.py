"""The enrollment endpoint a manager runs when the broker cannot take anonymous clients (a
NATS cluster): a TLS server, authenticated by the broker's own server chain so the joiner's
pin of the CA works unchanged, speaking broker.enroll_wire (one request, one answer).

The request is handed to the leader over the broker exactly as an anonymous MQTT enroller's
arrives (`enroll/<client>/req`, answered on `enroll/<client>/resp`), so the leader's checks
and rate limits (enrollment.py) apply to both alike. The answer written back adds where the
broker is (`broker`: backend and server addresses). Connections are bounded in number, in
size and in time; a bad request gets an error answer and the connection is closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import ssl
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from broker.enroll_wire import ENROLL_ALPN, FrameError, encode_frame, read_frame
from broker.envelope import Envelope
from broker.errors import BrokerError
from broker.session import Session
from broker.topics import ROOT, enroll_req

__all__ = ["EnrollEndpoint", "server_context"]

log = logging.getLogger("shoal.manager")

ENROLL_RESP_FILTER = f"{ROOT}/enroll/+/resp"


def server_context(chain: Path, key: Path) -> ssl.SSLContext:
    """Server-authenticated TLS >= 1.2 with the broker's chain, offering ENROLL_ALPN."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(chain, key)
    ctx.set_alpn_protocols([ENROLL_ALPN])
    return ctx


async def _ignore(topic: str, env: Envelope) -> None:
    return None  # an answer to another manager's joiner


class EnrollEndpoint:
    def __init__(
        self,
        session: Session,
        *,
        host: str,
        port: int,
        tls: ssl.SSLContext,
        backend: str,
        addresses: Sequence[str],
        max_connections: int = 32,
        timeout: float = 20.0,
    ) -> None:
        self.session = session
        self.host, self.port, self.tls = host, port, tls
        self.broker = {"backend": backend, "addresses": list(addresses)}
        self.timeout = timeout
        self.max_connections = max_connections
        self.active = 0
        self.refused = 0
        self._server: asyncio.Server | None = None
        session.on(ENROLL_RESP_FILTER, _ignore)  # answers are routed to requests by `re`

    async def start(self) -> None:
        try:
            self._server = await asyncio.start_server(
                self._serve, self.host, self.port, ssl=self.tls, ssl_handshake_timeout=10
            )
        except OSError as exc:
            raise BrokerError(
                f"cannot listen for enrollments on {self.host}:{self.port}: {exc.strerror}"
            ) from exc

    async def close(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 2)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.active >= self.max_connections:
            self.refused += 1  # the joiner retries a connection closed at once
            writer.close()
            return
        self.active += 1
        try:
            answer = await asyncio.wait_for(self._answer(reader), self.timeout)
        except TimeoutError:
            answer = {"ok": False, "error": f"no enrollment answer within {self.timeout:g} s"}
        try:
            writer.write(encode_frame(answer))
            await asyncio.wait_for(writer.drain(), 5)
        except (OSError, TimeoutError, FrameError):
            pass
        finally:
            self.active -= 1
            writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), 2)

    async def _answer(self, reader: asyncio.StreamReader) -> dict[str, Any]:
        try:
            request = await read_frame(reader)
        except FrameError as exc:
            return {"ok": False, "error": f"bad enrollment request: {exc}"}
        client = "j" + secrets.token_hex(12)
        try:
            reply = await self.session.request(
                enroll_req(client), "enroll", request, timeout=self.timeout - 2
            )
        except BrokerError as exc:
            return {"ok": False, "error": f"the managers did not answer: {exc}"}
        body = reply.body if isinstance(reply.body, dict) else {}
        if body.get("ok") is True:
            return {**body, "broker": self.broker}
        return {
            "ok": False,
            "error": str(body.get("error") or "enrollment refused"),
            **({"retry_after": body["retry_after"]} if "retry_after" in body else {}),
        }
