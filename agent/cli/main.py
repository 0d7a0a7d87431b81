"""The `shoal` parser and its dispatch, and the commands too small for a module of their own.

Each group of commands (`swarm`, `node`, `service`, `secret`/`config`, `stack`, `network`,
`system` with `info`, `events`) adds itself to the parser with its module's ``register``;
`cert`, `daemon` and `version` live here.

Only the module of the command being run is imported (a CLI process is started for every
command a script runs, and the rest would cost it more than the command itself); the others
appear in the parser by name and help, from :data:`GROUPS`.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from agent import control
from agent.cli.parser import ShoalParser
from agent.model.errors import ShoalError
from agent.paths import DataDir, default_data_dir

__all__ = ["main"]


# cert, daemon, version ---------------------------------------------------------------------
def cmd_cert_issue(a: argparse.Namespace, data: DataDir) -> int:
    from agent.cli.certs import issue_cert

    lifetime = None if a.expiry is None else int(a.expiry.total_seconds())
    out: Path = a.out
    res = issue_cert(data, a.role, out, lifetime)
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
    from agent.cli.output import table

    rows = [[str(c["id"]), str(c["role"])] for c in control.call(data.socket, "cert-ls")]
    print(table([["ID", "ROLE"], *rows]))
    return 0


def cmd_cert_rm(a: argparse.Namespace, data: DataDir) -> int:
    for ident in a.ids:
        print(control.call(data.socket, "cert-rm", {"id": ident}))
    return 0


def cmd_daemon(a: argparse.Namespace, data: DataDir) -> int:
    from agent.cli.swarm import run_foreground

    node = data.load_node()
    if data.daemon_pid() not in (None, os.getpid()):
        raise ShoalError(f"a shoal daemon already runs for {data.root} (pid {data.daemon_pid()})")
    if a.metrics_listen is not None and a.metrics_listen != node.metrics_listen:
        data.save_node(dataclasses.replace(node, metrics_listen=a.metrics_listen))
    return run_foreground(data)


def cmd_broker_run(a: argparse.Namespace, data: DataDir) -> int:
    import asyncio
    import logging

    from agent.natsbroker import run_server
    from broker.errors import BrokerError

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        asyncio.run(run_server(a.dir))
    except BrokerError as exc:
        raise ShoalError(str(exc)) from None
    return 0


def version_text() -> str:
    from agent import __version__

    return f"shoal {__version__}"


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
GROUPS: tuple[tuple[str, tuple[tuple[str, str], ...]], ...] = (
    ("swarm", (("swarm", "manage the swarm"),)),
    ("nodes", (("node", "manage swarm nodes"),)),
    ("services", (("service", "manage services"),)),
    ("secrets", (("secret", "manage secrets"), ("config", "manage configs"))),
    ("stacks", (("stack", "manage stacks"),)),
    ("networks", (("network", "manage networks"),)),
    ("system", (("info", "display system-wide information"), ("system", "manage shoal"))),
    ("inspect", (("inspect", "show any swarm object in detail (Docker's shape)"),)),
    ("events", (("events", "get real time events from the swarm"),)),
    ("dashboard", (("dashboard", "serve a web dashboard of the swarm"),)),
)
"""Each module of agent.cli that registers commands, with the commands (and their help) it
adds, in the order `shoal --help` lists them."""


def _metrics_option(sp: argparse.ArgumentParser) -> None:
    from agent.cli.swarm import metrics_option

    metrics_option(sp)


def _duration(value: str) -> Any:
    from agent.cli.flagvalues import parse_duration

    return parse_duration(value)


def command_of(argv: Sequence[str]) -> str | None:
    """The command word of a command line (`service` in `--data-dir d service ls`)."""
    args = iter(argv)
    for word in args:
        if word == "--data-dir":
            next(args, None)
        elif word == "--":
            return next(args, None)
        elif not word.startswith("-"):
            return word
    return None


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The whole parser; given a command line, the parser of its command in full and the
    other commands by name only (their own flags are not known then)."""
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

    # Without a command line, every command in full. With one, only its command's module:
    # `shoal --version`, `shoal --help` and a mistyped command need the names alone.
    wanted = command_of(argv) if argv is not None else None
    for module, names in GROUPS:
        if argv is None or wanted in {name for name, _ in names}:
            importlib.import_module(f"agent.cli.{module}").register(sub, cmd)
        else:
            for name, help in names:
                sub.add_parser(name, help=help)

    cert = sub.add_parser("cert", help="certificates for people and tools").add_subparsers(
        dest="sub", metavar="COMMAND", required=True
    )
    sp = cmd(cert, "issue", cmd_cert_issue, "issue an admin or monitoring certificate")
    sp.add_argument("role", choices=["admin", "monitor"])
    sp.add_argument(
        "--out", type=Path, required=True, help="directory for cert.pem, key.pem, ca.pem"
    )
    sp.add_argument("--expiry", type=_duration, default=None, help="lifetime (default 90d)")
    cmd(cert, "ls", cmd_cert_ls, "list admin and monitoring certificates")
    sp = cmd(cert, "rm", cmd_cert_rm, "revoke admin or monitoring certificates")
    sp.add_argument("ids", nargs="+", metavar="ID")

    broker = sub.add_parser("broker", help="the swarm's broker servers").add_subparsers(
        dest="sub", metavar="COMMAND", required=True
    )
    sp = cmd(broker, "run", cmd_broker_run, "run one NATS server of the swarm from its directory")
    sp.add_argument(
        "--dir", type=Path, required=True, help="a server's directory (swarm init wrote it)"
    )

    sp = cmd(sub, "daemon", cmd_daemon, "run this node's daemon in the foreground (for systemd)")
    assert isinstance(sp, ShoalParser)
    sp.defer(_metrics_option)
    cmd(sub, "version", cmd_version, "show the version")
    return p


def _runs_the_daemon(a: argparse.Namespace) -> bool:
    return a.fn in (cmd_daemon, cmd_broker_run) or bool(getattr(a, "foreground", False))


def main(argv: Sequence[str] | None = None) -> int:
    import signal
    import sys

    parser = build_parser(sys.argv[1:] if argv is None else argv)
    a = parser.parse_args(argv)
    if not _runs_the_daemon(a):
        # `shoal ... | head` ends quietly. Never in the daemon: a peer closing a connection
        # (of the routing mesh, say) must be an error on that socket, not the end of the node.
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    data = DataDir(a.data_dir or default_data_dir())
    try:
        return int(a.fn(a, data))
    except ShoalError as exc:
        from agent.cli.output import print_error

        print_error(exc)
        return 1
    except KeyboardInterrupt:
        return 130
