"""`shoal dashboard`: a web page, /api/state, /events and /metrics of the cluster, read from
its monitoring topics with a monitoring certificate."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from agent.cli.certs import issue_cert
from agent.dashboard.run import DashboardConfig, DashboardError, serve
from agent.dashboard.server import is_loopback
from agent.model.errors import ShoalError
from agent.paths import DataDir

__all__ = ["register"]


def register(sub: Any, cmd: Callable[..., argparse.ArgumentParser]) -> None:
    sp = cmd(sub, "dashboard", cmd_dashboard, "serve a web dashboard of the swarm")
    sp.add_argument("--listen", default="127.0.0.1:8080", help="HOST:PORT to serve on")
    sp.add_argument("--token", help="token every request must carry (needed off loopback)")
    sp.add_argument(
        "--cert-dir",
        type=Path,
        help="a monitoring certificate (default: the data dir's dashboard/)",
    )
    sp.add_argument("--broker", help="mqtts://HOST:PORT (default: this node's broker)")


def _host_port(text: str, what: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ShoalError(f"{what} {text!r} is not HOST:PORT")
    return host.strip("[]"), int(port)


def config_of(a: argparse.Namespace, data: DataDir) -> DashboardConfig:
    host, port = _host_port(a.listen, "--listen")
    if a.broker is not None:
        url = urlsplit(a.broker)
        if url.scheme != "mqtts" or not url.hostname or url.port is None:
            raise ShoalError(f"--broker {a.broker!r} is not mqtts://HOST:PORT")
        broker_host, broker_port = url.hostname, url.port
    else:
        node = data.load_node()
        broker_host = node.advertise_host or node.broker_host
        broker_host = "127.0.0.1" if broker_host in ("", "0.0.0.0", "::") else broker_host
        broker_port = node.broker_port
    cert_dir = a.cert_dir
    if cert_dir is None:
        # its own identity: one shared with another client (the quick start's monitor/, given
        # to people for mosquitto_sub) would take the session from it, and back, endlessly
        cert_dir = data.root / "dashboard"
        if not (cert_dir / "cert.pem").is_file() and data.load_node().role == "manager":
            issue_cert(data, "monitor", cert_dir)
    return DashboardConfig(cert_dir, broker_host, broker_port, host, port, a.token or None)


def cmd_dashboard(a: argparse.Namespace, data: DataDir) -> int:
    host, _ = _host_port(a.listen, "--listen")
    if not is_loopback(host) and not a.token:
        print(
            f"Error: --listen {a.listen} is not a loopback address: give --token TOKEN",
            file=sys.stderr,
        )
        return 2
    config = config_of(a, data)
    print(f"Dashboard on http://{a.listen}/", flush=True)
    try:
        asyncio.run(serve(config))
    except DashboardError as exc:
        raise ShoalError(str(exc)) from exc
    return 0
