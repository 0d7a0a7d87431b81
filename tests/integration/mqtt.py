"""Small MQTT helpers for tests that poke at the broker directly with chosen identities."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiomqtt

from agent.join import enroll
from broker.tls import client_context
from certs import key_to_pem, new_private_key, write_file_atomic, write_private_key


@dataclass(frozen=True)
class Ident:
    """A certificate and key on disk, as a node would hold them."""

    node_id: str
    cert: Path
    key: Path
    ca: Path


async def enroll_identity(
    directory: Path, port: int, token: str, *, role: str | None = None
) -> Ident:
    """Enroll through the real enrollment listener, without starting a daemon."""
    key = new_private_key()
    got = await enroll("127.0.0.1", port, token, key, hostname=directory.name, role=role)
    directory.mkdir(parents=True, exist_ok=True)
    write_private_key(directory / "key.pem", key)
    write_file_atomic(directory / "cert.pem", got.cert)
    write_file_atomic(directory / "ca.pem", got.ca)
    return Ident(got.node_id, directory / "cert.pem", directory / "key.pem", directory / "ca.pem")


def write_ident(directory: Path, node_id: str, cert: bytes, key: object, ca: Path) -> Ident:
    directory.mkdir(parents=True, exist_ok=True)
    write_file_atomic(directory / "key.pem", key_to_pem(key), 0o600)  # type: ignore[arg-type]
    write_file_atomic(directory / "cert.pem", cert)
    return Ident(node_id, directory / "cert.pem", directory / "key.pem", ca)


@contextlib.asynccontextmanager
async def mqtt(
    port: int,
    *,
    ca: Path,
    cert: Path | None = None,
    key: Path | None = None,
    client_id: str = "",
    timeout: float = 5.0,
) -> AsyncIterator[aiomqtt.Client]:
    ctx = client_context(ca, cert, key)
    client = aiomqtt.Client(
        "127.0.0.1",
        port,
        identifier=client_id or None,
        tls_context=ctx,
        timeout=timeout,
        socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)],
    )
    async with client:
        yield client


def as_client(ident: Ident, port: int) -> contextlib.AbstractAsyncContextManager[aiomqtt.Client]:
    return mqtt(port, ca=ident.ca, cert=ident.cert, key=ident.key, client_id=ident.node_id)


async def collect(
    client: aiomqtt.Client, seconds: float, *, retained: bool = False
) -> list[tuple[str, bytes]]:
    """Every message the client receives within `seconds` (retained ones only if asked)."""
    got: list[tuple[str, bytes]] = []

    async def read() -> None:
        async for m in client.messages:
            if m.retain and not retained:
                continue
            got.append((m.topic.value, bytes(m.payload)))  # type: ignore[arg-type]

    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(read(), seconds)
    return got


async def first(client: aiomqtt.Client, topic: str, timeout: float = 5.0) -> bytes:
    """The first message on `topic` (a positive control: the door that should open does)."""

    async def read() -> bytes:
        async for m in client.messages:
            if m.topic.value == topic:
                return bytes(m.payload)  # type: ignore[arg-type]
        raise AssertionError("message stream ended")

    return await asyncio.wait_for(read(), timeout)
