"""The NATS servers a node's daemon runs when the swarm's broker is a NATS cluster whose
servers are on this machine (`swarm init --broker nats` with no --broker-hosts), and the
enrollment endpoint its manager serves on the enroll port (a NATS listener takes no client
without a certificate)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from pathlib import Path
from typing import Any

from agent.manager.nats_host import NatsHost, load_server
from agent.paths import DataDir, NodeConfig
from broker.errors import BrokerError
from broker.nats_conf import NatsFiles
from broker.nats_supervisor import NatsProcess
from broker.session import Session

__all__ = ["LocalNats", "enroll_endpoint", "run_server"]

log = logging.getLogger("shoal.broker")

JETSTREAM_TIMEOUT = 45.0


class LocalNats:
    """This machine's servers of the cluster: started together, ready when JetStream has a
    leader, each restarted when it dies, reloaded when the users change, stopped together."""

    def __init__(self, data: DataDir, node: NodeConfig) -> None:
        self.host = NatsHost(data.broker, node.cluster_id)
        self.servers = [
            NatsProcess(files, connect_host=server.host, mqtt_port=server.mqtt_port)
            for files, server in self.host.local()
        ]

    async def start(self) -> None:
        try:
            await asyncio.gather(*(s.start() for s in self.servers))
            # MQTT logins need JetStream: wait until the servers have elected its leader
            await asyncio.gather(*(s.wait_jetstream(JETSTREAM_TIMEOUT) for s in self.servers))
        except BrokerError:
            await self.stop()
            raise

    async def supervise(self) -> None:
        await asyncio.gather(*(s.supervise() for s in self.servers))

    def reload(self) -> None:
        for server in self.servers:
            try:
                server.reload()
            except BrokerError as exc:  # down: it reads the new users when it restarts
                log.warning("%s", exc)

    @property
    def pid(self) -> int | None:
        """The first server's (`shoal info` shows one broker pid)."""
        return self.servers[0].pid if self.servers else None

    @property
    def restarts(self) -> int:
        return sum(s.restarts for s in self.servers)

    async def stop(self) -> None:
        await asyncio.gather(*(s.stop() for s in self.servers))


def enroll_endpoint(data: DataDir, node: NodeConfig, session: Session) -> Any:
    """The enrollment endpoint of a manager that holds a server's certificate of the cluster
    (None when it holds none: enrollment is then served by the managers that do)."""
    from agent.manager.enroll_endpoint import EnrollEndpoint, server_context

    host = NatsHost(data.broker, node.cluster_id)
    local = host.local()
    if not local:
        return None
    files, _ = local[0]
    addresses = node.broker_addresses or (f"{node.broker_host}:{node.broker_port}",)
    return EnrollEndpoint(
        session,
        host=node.listen_host,
        port=node.enroll_port,
        tls=server_context(files.server_chain, files.server_key),
        backend="nats",
        addresses=addresses,
    )


async def run_server(directory: Path, poll: float = 1.0) -> None:
    """`shoal broker run --dir DIR`: run the server of a copied directory, restart it when it
    dies, reload it when its users.conf changes, stop it on SIGTERM or SIGINT."""
    server = load_server(directory)
    files = NatsFiles(directory.resolve())
    connect = "127.0.0.1" if server.host in ("0.0.0.0", "::") else server.host
    proc = NatsProcess(files, connect_host=connect, mqtt_port=server.mqtt_port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await proc.start()
    log.info("nats-server %s runs (pid %s)", server.name, proc.pid)
    supervisor = asyncio.create_task(proc.supervise())

    def stamp() -> float:
        try:
            return files.users.stat().st_mtime
        except OSError:
            return 0.0

    seen = stamp()
    try:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), poll)
            if (now := stamp()) != seen:
                seen = now
                log.info("users.conf changed: reloading nats-server %s", server.name)
                with contextlib.suppress(BrokerError):
                    proc.reload()
    finally:
        await proc.stop()
        supervisor.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await supervisor
