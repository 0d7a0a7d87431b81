"""`shoal dashboard` running: one broker session with a monitoring certificate, subscribed to
the cluster's monitoring topics, feeding the state and its event streams; the HTTP server
beside it. It never publishes (the broker would refuse a monitoring certificate anyway)."""

from __future__ import annotations

import asyncio
import logging
import signal
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from agent.dashboard.server import Hub, make_app
from agent.dashboard.state import Change, ClusterState
from broker.session import Session, SessionConfig
from broker.tls import client_context
from certs import CertError, Identity, Role

__all__ = ["DashboardConfig", "DashboardError", "monitor_identity", "serve"]

log = logging.getLogger("shoal.dashboard")


class DashboardError(Exception):
    """A dashboard that cannot start: the message says why and what to do."""


@dataclass(frozen=True, slots=True)
class DashboardConfig:
    cert_dir: Path
    broker_host: str
    broker_port: int
    listen_host: str
    listen_port: int
    token: str | None = None


def monitor_identity(cert_dir: Path) -> Identity:
    """The monitoring identity of ``cert_dir``/cert.pem; DashboardError when it is missing,
    unreadable or not a monitoring certificate."""
    missing = [n for n in ("cert.pem", "key.pem", "ca.pem") if not (cert_dir / n).is_file()]
    if missing:
        raise DashboardError(
            f"{cert_dir} has no {', '.join(missing)}: make one with"
            f" 'shoal cert issue monitor --out {cert_dir}' on a manager"
        )
    try:
        identity = Identity.from_cert((cert_dir / "cert.pem").read_bytes())
    except (CertError, ValueError, OSError) as exc:
        raise DashboardError(f"{cert_dir / 'cert.pem'}: {exc}") from exc
    if identity.role is not Role.MONITOR:
        raise DashboardError(
            f"{cert_dir / 'cert.pem'} is a {identity.role.short_name} certificate: the dashboard"
            " takes a monitoring certificate only ('shoal cert issue monitor')"
        )
    return identity


async def serve(config: DashboardConfig) -> None:
    """Run until SIGINT or SIGTERM."""
    identity = monitor_identity(config.cert_dir)
    state = ClusterState(identity.cluster_id)
    hub = Hub()
    d = config.cert_dir
    session = Session(
        SessionConfig(
            host=config.broker_host,
            port=config.broker_port,
            client_id=identity.node_id,
            sender=identity.node_id,
            tls=lambda: client_context(d / "ca.pem", d / "cert.pem", d / "key.pem"),
        )
    )

    async def on_message(topic: str, payload: bytes) -> None:
        change = state.apply(topic, payload)
        if change is not None:
            hub.publish(change)

    def set_connected(up: bool) -> None:
        state.connected = up
        hub.publish(Change("connected", "", up))

    async def on_connect() -> None:
        set_connected(True)

    session.on_raw(state.prefix + "#", on_message)
    session.on_connect(on_connect)
    session.on_disconnect(lambda: set_connected(False))

    runner = web.AppRunner(make_app(state, hub, config.token), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, config.listen_host, config.listen_port)
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        raise DashboardError(
            f"cannot listen on {config.listen_host}:{config.listen_port}: {exc.strerror}"
        ) from exc
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    session.start()
    log.info("dashboard of cluster %s on %s", identity.cluster_id, config.listen_port)
    try:
        await stop.wait()
    finally:
        await session.close()
        await runner.cleanup()
