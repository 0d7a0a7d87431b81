"""The `shoal` parser and its dispatch, and the commands too small for a module of their own.

Each group of commands (`swarm`, `node`, `service`, `secret`/`config`, `stack`, `network`,
`system` with `info`, `events`) adds itself to the parser with its module's ``register``;
`cert`, `daemon` and `version` live here.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from agent import control
from agent.cli import events, inspect, networks, nodes, secrets, services, stacks, swarm, system
from agent.cli.flagvalues import parse_duration
from agent.cli.output import print_error, table
from agent.cli.parser import ShoalParser
from agent.cli.swarm import run_foreground
from agent.model.errors import ShoalError
from agent.paths import DataDir, default_data_dir

__all__ = ["main"]


# cert, daemon, version ---------------------------------------------------------------------
def cmd_cert_issue(a: argparse.Namespace, data: DataDir) -> int:
    from certs import key_to_pem, make_csr, new_private_key, write_file_atomic

    key = new_private_key()
    args = {"role": a.role, "csr": make_csr(key).decode()}
    if a.expiry is not None:
        args["lifetime_s"] = int(a.expiry.total_seconds())
    res = control.call(data.socket, "cert-issue", args)
    out: Path = a.out
    out.mkdir(parents=True, exist_ok=True)
    write_file_atomic(out / "key.pem", key_to_pem(key), 0o600)
    write_file_atomic(out / "cert.pem", res["cert"].encode(), 0o644)
    write_file_atomic(out / "ca.pem", res["ca"].encode(), 0o644)
    node = data.load_node()
    host = node.advertise_host or node.broker_host
    print(f"{res['id']}")
    print(f"Certificate, key and CA written to {out}. Watch the cluster with:\n")
    print(
        f"    mosquitto_sub -h {host} -p {node.broker_port} --cafile {out}/ca.pem"
        f" --cert {out}/cert.pem --key {out}/key.pem -t 'shoal/{node.cluster_id}/mon/#' -v"
    )
    return 0


def cmd_cert_ls(a: argparse.Namespace, data: DataDir) -> int:
    rows = [[str(c["id"]), str(c["role"])] for c in control.call(data.socket, "cert-ls")]
    print(table([["ID", "ROLE"], *rows]))
    return 0


def cmd_cert_rm(a: argparse.Namespace, data: DataDir) -> int:
    for ident in a.ids:
        print(control.call(data.socket, "cert-rm", {"id": ident}))
    return 0


def cmd_daemon(a: argparse.Namespace, data: DataDir) -> int:
    node = data.load_node()
    if data.daemon_pid() not in (None, os.getpid()):
        raise ShoalError(f"a shoal daemon already runs for {data.root} (pid {data.daemon_pid()})")
    if a.metrics_listen is not None and a.metrics_listen != node.metrics_listen:
        data.save_node(dataclasses.replace(node, metrics_listen=a.metrics_listen))
    return run_foreground(data)


def version_text() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"shoal {version('shoal')}"
    except PackageNotFoundError:
        return "shoal (not installed)"


class _Version(argparse.Action):
    """``shoal --version``, as ``docker --version``: the version, then exit."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kw: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kw)

    def __call__(self, parser: argparse.ArgumentParser, *args: Any, **kw: Any) -> None:
        print(version_text())
        parser.exit()


def cmd_version(a: argparse.Namespace, data: DataDir) -> int:
    print(version_text())
    return 0


# parser ------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    common = ShoalParser(add_help=False)
    common.add_argument(
        "--data-dir",
        type=Path,
        default=argparse.SUPPRESS,
        help="this node's state directory (default: $SHOAL_DATA_DIR or /var/lib/shoal as root)",
    )
    p = ShoalParser(
        prog="shoal", description="Run container stacks on fleets of edge devices, over MQTT."
    )
    p.add_argument("--data-dir", type=Path, default=None, help=argparse.SUPPRESS)
    p.add_argument("-v", "--version", action=_Version, help="print the version and exit")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def cmd(parent: Any, name: str, fn: Callable[..., int], help: str) -> argparse.ArgumentParser:
        sp: argparse.ArgumentParser = parent.add_parser(name, help=help, parents=[common])
        sp.set_defaults(fn=fn)
        return sp

    swarm.register(sub, cmd)
    nodes.register(sub, cmd)
    services.register(sub, cmd)
    secrets.register(sub, cmd)
    stacks.register(sub, cmd)
    networks.register(sub, cmd)
    system.register(sub, cmd)
    inspect.register(sub, cmd)
    events.register(sub, cmd)

    cert = sub.add_parser("cert", help="certificates for people and tools").add_subparsers(
        dest="sub", metavar="COMMAND", required=True
    )
    sp = cmd(cert, "issue", cmd_cert_issue, "issue an admin or monitoring certificate")
    sp.add_argument("role", choices=["admin", "monitor"])
    sp.add_argument(
        "--out", type=Path, required=True, help="directory for cert.pem, key.pem, ca.pem"
    )
    sp.add_argument("--expiry", type=parse_duration, default=None, help="lifetime (default 90d)")
    cmd(cert, "ls", cmd_cert_ls, "list admin and monitoring certificates")
    sp = cmd(cert, "rm", cmd_cert_rm, "revoke admin or monitoring certificates")
    sp.add_argument("ids", nargs="+", metavar="ID")

    sp = cmd(sub, "daemon", cmd_daemon, "run this node's daemon in the foreground (for systemd)")
    swarm.metrics_option(sp)
    cmd(sub, "version", cmd_version, "show the version")
    return p


def _runs_the_daemon(a: argparse.Namespace) -> bool:
    return a.fn is cmd_daemon or bool(getattr(a, "foreground", False))


def main(argv: Sequence[str] | None = None) -> int:
    import signal

    parser = build_parser()
    a = parser.parse_args(argv)
    if not _runs_the_daemon(a):
        # `shoal ... | head` ends quietly. Never in the daemon: a peer closing a connection
        # (of the routing mesh, say) must be an error on that socket, not the end of the node.
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    data = DataDir(a.data_dir or default_data_dir())
    try:
        return int(a.fn(a, data))
    except ShoalError as exc:
        print_error(exc)
        return 1
    except KeyboardInterrupt:
        return 130
