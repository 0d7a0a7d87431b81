"""Joining a swarm: pin the CA from the token, enroll over MQTT, get a node certificate."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import ssl
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from agent.model.errors import ShoalError
from broker.enroll_wire import ENROLL_ALPN, FrameError, encode_frame, read_frame
from broker.errors import BrokerError, NotConnected, RequestTimeout
from broker.session import Session, SessionConfig, raise_for_reply
from broker.tls import client_context, fetch_server_chain
from broker.topics import enroll_req, enroll_resp
from certs import (
    CertError,
    Identity,
    JoinToken,
    TokenError,
    ca_digest,
    cert_to_pem,
    load_cert,
    make_csr,
    verify_issued,
)

__all__ = ["Enrolled", "enroll", "parse_broker_url", "parse_broker_urls"]

log = logging.getLogger("shoal.join")


@dataclass(frozen=True, slots=True)
class Enrolled:
    node_id: str
    cluster_id: str
    role: str
    cert: bytes
    ca: bytes
    cluster_port: int
    broker_backend: str = "mosquitto"
    broker_addresses: tuple[str, ...] = ()


def parse_broker_url(url: str, default_port: int = 8883) -> tuple[str, int]:
    text = url if "://" in url else f"mqtts://{url}"
    try:
        parts = urlsplit(text)
        port = parts.port or default_port
    except ValueError as exc:
        raise ShoalError(f"bad broker address {url!r}: {exc}") from None
    if parts.scheme not in ("mqtts", "ssl", "tls") or not parts.hostname:
        raise ShoalError(
            f"bad broker address {url!r}: expected mqtts://HOST:PORT (shoal only speaks TLS)"
        )
    return parts.hostname, port


def parse_broker_urls(text: str, default_port: int = 8883) -> list[tuple[str, int]]:
    """Every server of the swarm's broker, comma-separated (`mqtts://a:8883,mqtts://b:8883`):
    the node enrolls through the first and fails over among all of them."""
    urls = [part.strip() for part in text.split(",")]
    if not all(urls):
        raise ShoalError(
            f"bad broker address {text!r}: an empty address in the list"
            " (expected mqtts://HOST:PORT[,mqtts://HOST:PORT...])"
        )
    servers = [parse_broker_url(url, default_port) for url in urls]
    return list(dict.fromkeys(servers))


async def enroll(
    host: str,
    enroll_port: int,
    token_text: str,
    key: ec.EllipticCurvePrivateKey,
    *,
    hostname: str,
    role: str | None = None,
    timeout: float = 15.0,
) -> Enrolled:
    try:
        token = JoinToken.parse(token_text)
    except TokenError as exc:
        raise ShoalError(str(exc)) from None
    # 1. Pin the CA: nothing is sent before the broker proves it holds the token's CA.
    deadline = asyncio.get_running_loop().time() + timeout
    chain = await _server_chain(host, enroll_port, deadline, timeout)
    ca_pem = None
    for der in chain:
        pem = x509.load_der_x509_certificate(der).public_bytes(serialization.Encoding.PEM)
        if ca_digest(pem) == token.ca_digest:
            ca_pem = pem
            break
    if ca_pem is None:
        raise ShoalError(
            f"the broker at {host}:{enroll_port} does not present the CA that the join token"
            " names: the token is for another swarm, or this is not the swarm's broker."
            " Nothing was sent."
        )
    request: dict[str, Any] = {
        "token": str(token),
        "csr": make_csr(key),
        "hostname": hostname,
        "role": role,
    }
    # 2. A manager's enrollment endpoint (a NATS broker has no anonymous listener) ...
    ctx = client_context(None, ca_data=ca_pem.decode())
    ctx.set_alpn_protocols([ENROLL_ALPN])
    body = await _enroll_direct(host, enroll_port, ctx, request, deadline)
    if body is not None:
        return _check(body, key, ca_pem)
    # 3. ... or the broker's server-authenticated listener, trusting only that CA.
    client = "j" + secrets.token_hex(12)
    session = Session(
        SessionConfig(
            host=host,
            port=enroll_port,
            client_id=client,
            sender=client,
            tls=lambda: client_context(None, ca_data=ca_pem.decode()),
            backoff_min=0.5,
        )
    )
    session.on(enroll_resp(client), _ignore)
    session.start()
    try:
        await session.wait_connected(timeout)
        while True:
            reply = await session.request(enroll_req(client), "enroll", request, timeout=timeout)
            wait = _retry_after(reply.body)
            if wait is None:
                break
            why = str(reply.body.get("error") or "enrollment is rate limited")
            if asyncio.get_running_loop().time() + wait > deadline:
                raise ShoalError(f"the swarm did not let this node in within {timeout:g} s: {why}")
            log.warning("%s; retrying in %g s", why, wait)
            await asyncio.sleep(wait * (1 + 0.5 * secrets.randbelow(1000) / 1000))
        body = raise_for_reply(reply)
    except RequestTimeout:
        raise ShoalError(
            f"no manager answered the enrollment request within {timeout:g} s:"
            " is a manager of this swarm running?"
        ) from None
    except NotConnected as exc:
        raise ShoalError(str(exc)) from None
    except BrokerError as exc:
        raise ShoalError(f"the swarm refused to enroll this node: {exc}") from None
    finally:
        await session.close()
    return _check(body, key, ca_pem)


async def _enroll_direct(
    host: str, port: int, ctx: ssl.SSLContext, request: dict[str, Any], deadline: float
) -> dict[str, Any] | None:
    """Enroll on a manager's enrollment endpoint; None when `port` is not one (the server
    did not pick its ALPN protocol: mosquitto's MQTT listener)."""
    loop = asyncio.get_running_loop()
    while True:
        left = deadline - loop.time()
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(host, port, ssl=ctx), max(1.0, left)
            )
        except (OSError, TimeoutError, ssl.SSLError) as exc:
            raise ShoalError(
                f"TLS with the enrollment listener at {host}:{port} failed: {exc}"
            ) from None
        try:
            sslobj = writer.get_extra_info("ssl_object")
            if sslobj is None or sslobj.selected_alpn_protocol() != ENROLL_ALPN:
                return None
            writer.write(encode_frame(request))
            body = await asyncio.wait_for(read_frame(reader), max(1.0, deadline - loop.time()))
        except (OSError, TimeoutError, FrameError) as exc:
            why = "no answer" if isinstance(exc, TimeoutError) else str(exc)
            if loop.time() + 1 < deadline and isinstance(exc, FrameError | ConnectionError):
                await asyncio.sleep(0.5 + secrets.randbelow(1000) / 1000)  # busy: try again
                continue
            raise ShoalError(
                f"no answer from the enrollment listener at {host}:{port}: {why}"
            ) from None
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
        wait = _retry_after(body)
        if wait is None:
            if body.get("ok") is not True:
                why = str(body.get("error") or "the request was refused")
                raise ShoalError(f"the swarm refused to enroll this node: {why}")
            return body
        if loop.time() + wait > deadline:
            raise ShoalError(f"the swarm did not let this node in in time: {body.get('error')}")
        log.warning("%s; retrying in %g s", body.get("error"), wait)
        await asyncio.sleep(wait * (1 + 0.5 * secrets.randbelow(1000) / 1000))


async def _server_chain(host: str, port: int, deadline: float, timeout: float) -> list[bytes]:
    """The broker's chain. A listener that closes at once may be full: retry until the
    deadline, then say so."""
    loop = asyncio.get_running_loop()
    while True:
        try:
            return await fetch_server_chain(host, port, timeout=max(1.0, deadline - loop.time()))
        except (ssl.SSLEOFError, ConnectionResetError, BrokenPipeError):
            if loop.time() + 1 < deadline:
                await asyncio.sleep(0.5 + secrets.randbelow(1000) / 1000)
                continue
            raise ShoalError(
                f"the swarm's enrollment listener at {host}:{port} kept closing the connection"
                f" at once for {timeout:g} s: it takes a bounded number of connections at a"
                " time and is full (many clients are connected to it); try again later"
            ) from None
        except ssl.SSLError as exc:
            raise ShoalError(f"TLS with {host}:{port} failed: {exc}") from None
        except (OSError, TimeoutError) as exc:
            why = exc.strerror if isinstance(exc, OSError) and exc.strerror else "no answer"
            raise ShoalError(
                f"cannot reach the swarm's enrollment listener at {host}:{port}: {why}"
                " (is the address right? is the manager running?)"
            ) from None


def _retry_after(body: object) -> float | None:
    """Seconds to wait when the answer says enrollment is rate limited (None otherwise)."""
    if not isinstance(body, dict) or body.get("ok") is True:
        return None
    wait = body.get("retry_after")
    if isinstance(wait, int | float) and not isinstance(wait, bool) and 0 < wait <= 60:
        return float(wait)
    return None


async def _ignore(topic: str, env: object) -> None:
    return None


def _check(body: dict[str, object], key: ec.EllipticCurvePrivateKey, ca_pem: bytes) -> Enrolled:
    cert, port = body.get("cert"), body.get("cluster_port")
    if not isinstance(cert, bytes) or not isinstance(port, int):
        raise ShoalError("malformed enrollment answer")
    try:
        ident: Identity = verify_issued(load_cert(ca_pem), load_cert(cert))
    except CertError as exc:
        raise ShoalError(f"the enrollment answer holds a bad certificate: {exc}") from None
    ours = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    theirs = (
        load_cert(cert)
        .public_key()
        .public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    if ours != theirs:
        raise ShoalError("the enrollment answer's certificate is not for this node's key")
    role = "manager" if ident.role.value == "shoal-manager" else "worker"
    broker = body.get("broker")
    backend, addresses = "mosquitto", ()
    if isinstance(broker, dict):
        backend = str(broker.get("backend") or "mosquitto")
        found = broker.get("addresses")
        if isinstance(found, list) and all(isinstance(a, str) for a in found):
            addresses = tuple(found)
    if backend not in ("mosquitto", "nats"):
        raise ShoalError(f"the enrollment answer names an unknown broker {backend!r}")
    return Enrolled(
        node_id=ident.node_id,
        cluster_id=ident.cluster_id,
        role=role,
        cert=cert_to_pem(load_cert(cert)),
        ca=ca_pem,
        cluster_port=port,
        broker_backend=backend,
        broker_addresses=addresses,
    )
