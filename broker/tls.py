"""TLS contexts for shoal's MQTT clients, and diagnosis of refused connections.

A refused client certificate often surfaces in MQTT client libraries only as a timeout; the
real reason is in the TLS alert. :func:`diagnose` opens a raw TLS connection, sends an MQTT
CONNECT and turns whatever happens into a sentence a user can act on.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from pathlib import Path

__all__ = ["REVOKED", "client_context", "diagnose", "explain_refusal", "fetch_server_chain"]

# What :func:`diagnose` says when the broker refuses a certificate it has revoked: the
# swarm has removed the node (its certificates are revoked only then), a definite verdict.
REVOKED = "this node's certificate has been revoked (the node was removed from the swarm)"


def client_context(
    ca_file: Path | None,
    cert_file: Path | None = None,
    key_file: Path | None = None,
    *,
    ca_data: str | None = None,
    key_password: str | None = None,
) -> ssl.SSLContext:
    """A TLS >= 1.2 client context trusting only the cluster CA.

    Host names are not checked: the cluster CA is pinned (by digest, at join) and it issues
    serverAuth certificates only to the cluster's brokers, so the name a node used to reach
    the broker (an IP, a NAT address) does not matter.
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.check_hostname = False
    if ca_file is None and ca_data is None:
        ctx.verify_mode = ssl.CERT_NONE
    else:
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(cafile=str(ca_file) if ca_file else None, cadata=ca_data)
    if cert_file is not None:
        ctx.load_cert_chain(
            str(cert_file), str(key_file) if key_file else None, password=key_password
        )
    return ctx


def _connect_packet(client_id: str) -> bytes:
    cid = client_id.encode()
    var = b"\x00\x04MQTT\x04\x02\x00\x1e" + len(cid).to_bytes(2, "big") + cid
    return b"\x10" + bytes([len(var)]) + var


_CONNACK = {
    1: "the broker refused the MQTT protocol version",
    2: "the broker refused the client id",
    3: "the broker is unavailable",
    4: "the broker refused the user name or password",
    5: "the broker refused this identity (not authorized)",
}


_CONNACK_V5 = {133: 2, 134: 4, 135: 5, 136: 3}  # MQTT 5 reason codes with a 3.1.1 meaning


def explain_refusal(exc: BaseException) -> str | None:
    """What a CONNACK refusal that the MQTT client raised means (None: not a refusal), so
    that naming it needs no CONNECT of our own (which would take over the session)."""
    rc = getattr(exc, "rc", None)
    code = getattr(rc, "value", rc)
    if not isinstance(code, int) or code == 0:
        return None
    code = _CONNACK_V5.get(code, code)
    return _CONNACK.get(code)


def explain_ssl_error(exc: BaseException) -> str:
    text = str(exc).lower()
    if "revoked" in text:
        return REVOKED
    if "expired" in text:
        return "the certificate has expired"
    if "certificate required" in text or "peer did not return a certificate" in text:
        return "the broker requires a client certificate and none was presented"
    if "unknown ca" in text or "bad certificate" in text or "unsupported certificate" in text:
        return "the broker does not accept this certificate (was it issued by this swarm's CA?)"
    if "certificate verify failed" in text:
        return "the broker's certificate is not signed by this swarm's CA"
    return f"TLS failed: {exc}"


def _probe(host: str, port: int, ctx: ssl.SSLContext, timeout: float, mqtt: bool) -> str:
    try:
        with socket.create_connection((host, port), timeout=timeout) as raw:
            with ctx.wrap_socket(raw, server_hostname=host) as tls:
                # A refused client certificate arrives as an alert right after the handshake;
                # read it before writing, or the server's reset can swallow it.
                tls.settimeout(min(0.5, timeout))
                try:
                    head = tls.recv(4)
                except TimeoutError:
                    if not mqtt:
                        return "ok"
                    tls.settimeout(timeout)
                    tls.sendall(_connect_packet("shoal-probe"))
                    head = tls.recv(4)
    except ssl.SSLError as exc:
        return explain_ssl_error(exc)
    except ConnectionRefusedError:
        return f"nothing listens at {host}:{port} (is the broker running? is the port right?)"
    except TimeoutError:
        return f"no answer from {host}:{port} within {timeout:g} s"
    except OSError as exc:
        return f"cannot reach {host}:{port}: {exc.strerror or exc}"
    if len(head) == 4 and head[0] == 0x20:
        return "ok" if head[3] == 0 else _CONNACK.get(head[3], f"CONNACK code {head[3]}")
    return "the broker closed the connection without answering"


async def diagnose(
    host: str, port: int, ctx: ssl.SSLContext, *, timeout: float = 5.0, mqtt: bool = True
) -> str:
    """Say in one sentence why an MQTT connection to host:port with ctx fails (or 'ok').

    With ``mqtt`` False only TLS is tried, never an MQTT CONNECT: the broker takes the client
    id from the certificate, so a CONNECT would take over a session of the same identity."""
    return await asyncio.to_thread(_probe, host, port, ctx, timeout, mqtt)


async def fetch_server_chain(host: str, port: int, *, timeout: float = 10.0) -> list[bytes]:
    """The DER certificates a TLS server presents, fetched WITHOUT verifying them.

    Used only to pin the cluster CA by digest before anything else is sent.
    """
    ctx = client_context(None)
    writer = None
    try:
        _, writer = await asyncio.wait_for(
            asyncio.open_connection(host, port, ssl=ctx, server_hostname=host), timeout
        )
        sslobj = writer.get_extra_info("ssl_object")
        getter = getattr(sslobj, "get_unverified_chain", None)
        if getter is None:  # Python 3.11/3.12 keep it on the private object
            getter = sslobj._sslobj.get_unverified_chain
        chain = getter() or []
        out: list[bytes] = []
        for cert in chain:
            der = cert if isinstance(cert, bytes) else cert.public_bytes(ssl._ssl.ENCODING_DER)  # type: ignore[attr-defined]
            out.append(der)
        return out
    finally:
        if writer is not None:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
