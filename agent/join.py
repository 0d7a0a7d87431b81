"""Joining a swarm: pin the CA from the token, enroll over MQTT, get a node certificate."""

from __future__ import annotations

import asyncio
import secrets
import ssl
from dataclasses import dataclass
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from agent.errors import ShoalError
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

__all__ = ["Enrolled", "enroll", "parse_broker_url"]


@dataclass(frozen=True, slots=True)
class Enrolled:
    node_id: str
    cluster_id: str
    role: str
    cert: bytes
    ca: bytes
    cluster_port: int


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
    try:
        chain = await fetch_server_chain(host, enroll_port, timeout=timeout)
    except ssl.SSLError as exc:
        raise ShoalError(f"TLS with {host}:{enroll_port} failed: {exc}") from None
    except (OSError, TimeoutError) as exc:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else "no answer"
        raise ShoalError(
            f"cannot reach the swarm's enrollment listener at {host}:{enroll_port}: {why}"
            " (is the address right? is the manager running?)"
        ) from None
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
    # 2. Enroll over the server-authenticated listener, trusting only that CA.
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
        reply = await session.request(
            enroll_req(client),
            "enroll",
            {"token": str(token), "csr": make_csr(key), "hostname": hostname, "role": role},
            timeout=timeout,
        )
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
    return Enrolled(
        node_id=ident.node_id,
        cluster_id=ident.cluster_id,
        role=role,
        cert=cert_to_pem(load_cert(cert)),
        ca=ca_pem,
        cluster_port=port,
    )


def run_enroll(*args: object, **kwargs: object) -> Enrolled:
    return asyncio.run(enroll(*args, **kwargs))  # type: ignore[arg-type]
