"""`shoal swarm init|join|leave|update|unlock|unlock-key|ca|join-token`, as in Docker.

`init` and `join` start this node's daemon in the background and wait until it is connected
(`--foreground` runs it attached instead, for systemd); `leave` stops it.
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from agent import control
from agent.cli.flagvalues import (
    discovery_prefix,
    interval_seconds,
    ip_address,
    metrics_addr,
    on_off,
    parse_addr,
    parse_bool,
    parse_duration,
)
from agent.model.errors import ShoalError
from agent.paths import DataDir, NodeConfig, process_alive

__all__ = ["leave_refusal", "register", "run_foreground"]

NOTHING_TO_UPDATE = (
    "nothing to update: use --autolock=true|false, --task-history-limit N, --node-grace DURATION,"
    " --home-assistant on|off or --home-assistant-prefix PREFIX"
)


# daemon start/stop -------------------------------------------------------------------------
def _start_daemon(data: DataDir) -> subprocess.Popen[bytes]:
    data.root.mkdir(parents=True, exist_ok=True)
    log = open(data.log_file, "ab")
    proc = subprocess.Popen(
        [sys.executable, "-m", "agent.cli", "daemon", "--data-dir", str(data.root)],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        cwd="/",
    )
    log.close()
    return proc


def _wait_ready(
    data: DataDir, proc: subprocess.Popen[bytes], timeout: float = 30.0
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    last: str = "the daemon did not start"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            last = f"the daemon exited with code {proc.returncode}"
            break
        try:
            info = control.call(data.socket, "info", timeout=5)
            if info.get("connected"):
                return dict(info)
            last = info.get("last_error") or "not connected to the broker yet"
        except ShoalError as exc:
            last = str(exc)
        time.sleep(0.1)
    tail = ""
    try:
        lines = data.log_file.read_text(errors="replace").strip().splitlines()
        tail = "\n  ".join(lines[-5:])
    except OSError:
        pass
    raise ShoalError(f"the node did not come up: {last}" + (f"\n  {tail}" if tail else ""))


def _stop_daemon(data: DataDir, timeout: float = 20.0) -> None:
    pid = data.daemon_pid()
    if pid is None:
        return
    try:
        # the daemon stops its tasks first, each within its stop grace period
        control.call(data.socket, "leave", timeout=45)
    except ShoalError:
        os.kill(pid, 15)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not process_alive(pid):
            return
        time.sleep(0.02)
    os.kill(pid, 9)


def _wait_socket(data: DataDir, proc: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            control.call(data.socket, "info", timeout=2)
            return
        except ShoalError:
            time.sleep(0.05)
    raise ShoalError("the daemon did not start")


def run_foreground(data: DataDir, unlock_key: str = "") -> int:
    import faulthandler
    import signal

    from agent.daemon import Daemon

    faulthandler.register(signal.SIGUSR1, all_threads=True)

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    daemon = Daemon(data)
    if unlock_key:
        daemon.preset_unlock_key(unlock_key)
    import asyncio

    return asyncio.run(daemon.run())


# swarm -------------------------------------------------------------------------------------
def cmd_swarm_init(a: argparse.Namespace, data: DataDir) -> int:
    from agent.setup import default_advertise, forget, init_cluster

    if a.force_new_cluster:
        return _force_new_cluster(a, data)
    host, port = a.listen_addr
    if a.enroll_port == port:
        raise ShoalError(
            f"--enroll-port {port} is the cluster port of --listen-addr: the enrollment"
            " listener needs a port of its own"
        )
    broker = _broker_plan(a, port)
    node, token, unlock_key = init_cluster(
        data,
        hostname=a.hostname or socket.gethostname(),
        listen_host=host,
        cluster_port=port,
        enroll_port=a.enroll_port or port + 1,
        advertise_host=a.advertise_addr or default_advertise(host),
        cert_lifetime=a.cert_expiry,
        autolock=a.autolock,
        driver=a.driver,
        heartbeat=a.heartbeat.total_seconds(),
        data_path_addr=a.data_path_addr or "",
        behind_nat=a.behind_nat,
        broker=broker,
        usage_interval=a.usage_interval,
        metrics_listen=a.metrics_listen or "",
        home_assistant=bool(a.home_assistant),
        home_assistant_prefix=a.home_assistant_prefix,
    )
    if a.foreground:
        _print_init(node, token, unlock_key)
        _print_broker_servers(data, node)
        return run_foreground(data, unlock_key)
    proc = _start_daemon(data)
    try:
        if unlock_key or not node.embedded_broker:
            _wait_socket(data, proc)
        if unlock_key:
            control.call(data.socket, "unlock", {"key": unlock_key})
        if node.embedded_broker:
            # a NATS cluster elects its JetStream leader before it takes MQTT logins
            _wait_ready(data, proc, timeout=60.0 if broker else 30.0)
            token = control.call(data.socket, "join-token", {"role": "worker"})["token"]
    except ShoalError:
        _stop_daemon(data)
        forget(data)
        raise
    _print_init(node, token, unlock_key)
    _print_broker_servers(data, node)
    return 0


def _broker_plan(a: argparse.Namespace, port: int) -> Any:
    """The NATS cluster `--broker nats` asks for (None for the embedded mosquitto)."""
    from agent.manager.nats_host import plan_servers
    from agent.setup import BrokerPlan, free_ports

    if a.broker != "nats":
        if a.broker_servers is not None or a.broker_hosts:
            raise ShoalError("--broker-servers and --broker-hosts need --broker nats")
        return None
    hosts = tuple(h.strip() for h in (a.broker_hosts or "").split(",") if h.strip())
    count = a.broker_servers if a.broker_servers is not None else len(hosts) or 3
    if a.broker_hosts is not None and not hosts:
        raise ShoalError("--broker-hosts: expected host names or addresses, as h1,h2,h3")
    if not 1 <= count <= 7:
        raise ShoalError(f"--broker-servers {count}: expected 1 to 7")
    ports = () if hosts else free_ports(3 * count)
    return BrokerPlan(tuple(plan_servers(count, hosts, mqtt_port=port, free_ports=ports)), hosts)


def _print_broker_servers(data: DataDir, node: NodeConfig) -> None:
    """For a NATS cluster on other hosts: what to copy where and run there."""
    if node.broker_backend != "nats" or node.embedded_broker:
        return
    from agent.manager.nats_host import LOCAL_HOSTS, NatsHost

    host = NatsHost(data.broker, node.cluster_id)
    print("This swarm's broker is a NATS cluster. Start each of its servers on its host:\n")
    for i, server in enumerate(host.servers):
        d = host.files(i).directory
        where = "on this machine" if server.host in LOCAL_HOSTS else f"to {server.host}"
        print(f"    copy {d} {where}, then run there: shoal broker run --dir {d}")
    print("\nThis node connects to the swarm when a majority of them runs.\n")


def _force_new_cluster(a: argparse.Namespace, data: DataDir) -> int:
    """Recover a swarm from this manager's state (its daemon is started if it is stopped):
    it becomes the only manager, and the leader, of a swarm that keeps all else."""
    if not data.exists():
        raise ShoalError(
            f"--force-new-cluster: {data.root} holds no swarm state: this node is not part of"
            " a swarm (run it on a manager's data dir, or `shoal swarm init` without it)"
        )
    node = data.load_node()
    if node.role != "manager":
        raise ShoalError(
            f"--force-new-cluster: this node ({node.node_id}) is a worker; run it on a manager"
            " (its data dir holds the swarm's state)"
        )
    if a.foreground or a.autolock:
        flag = "--foreground" if a.foreground else "--autolock"
        raise ShoalError(f"--force-new-cluster cannot be used with {flag}")
    proc = _start_daemon(data) if data.daemon_pid() is None else None
    if proc is not None:
        _wait_socket(data, proc)
    if control.call(data.socket, "info", timeout=5).get("locked"):
        raise ShoalError(
            "Swarm is encrypted and needs to be unlocked before it can be used."
            " Please use `shoal swarm unlock` to unlock it, then run this command again."
        )
    if proc is not None:
        _wait_ready(data, proc)  # the manager role has started (on its old group)
    res = control.call(data.socket, "force-new-cluster", {}, timeout=60)
    if res.get("warning"):
        print(f"Warning: {res['warning']}", file=sys.stderr)
    token = control.call(data.socket, "join-token", {"role": "worker"}, timeout=20)["token"]
    _print_init(node, token)
    if res.get("removed"):
        print(
            "The other managers were removed from the swarm and their certificates revoked: "
            + ", ".join(res["removed"])
            + ". To bring one back, run `shoal swarm leave --force` on it and join it again.\n"
        )
    if not res.get("embedded_broker"):
        print(f"This node reaches the swarm through the broker at {res.get('broker')}.")
    return 0


def _print_unlock_key(key: str) -> None:
    print("To unlock a swarm manager after it restarts, run the `shoal swarm unlock`")
    print("command and provide the following key:\n")
    print(f"    {key}\n")
    print("Please remember to store this key in a password manager, since without it you")
    print("will not be able to restart the manager.")


def _print_init(node: NodeConfig, token: str, unlock_key: str = "") -> None:
    print(f"Swarm initialized: current node ({node.node_id}) is now a manager.\n")
    print("To add a worker to this swarm, run the following command:\n")
    print(
        f"    shoal swarm join --token {token} mqtts://{node.advertise_host}:{node.broker_port}\n"
    )
    print(
        "To add a manager to this swarm, run 'shoal swarm join-token manager'"
        " and follow the instructions.\n"
    )
    if unlock_key:
        _print_unlock_key(unlock_key)


def cmd_swarm_join(a: argparse.Namespace, data: DataDir) -> int:
    from agent.join import enroll, parse_broker_urls
    from agent.setup import forget, write_joined
    from certs import new_private_key

    if data.exists():
        raise ShoalError(
            "This node is already part of a swarm. Use `shoal swarm leave` to leave this swarm"
            " and join another one."
        )
    servers = parse_broker_urls(a.address)
    (host, port), many = servers[0], len(servers) > 1
    enroll_port = a.enroll_port or port + 1
    hostname = a.hostname or socket.gethostname()
    key = new_private_key()
    import asyncio

    enrolled = asyncio.run(
        enroll(host, enroll_port, a.token, key, hostname=hostname, role=a.role, timeout=a.timeout)
    )
    write_joined(
        data,
        enrolled,
        key,
        hostname=hostname,
        broker_host=host,
        broker_addresses=tuple(_host_port(h, p) for h, p in servers) if many else (),
        enroll_port=enroll_port,
        driver=a.driver,
        heartbeat=a.heartbeat.total_seconds(),
        data_path_addr=a.data_path_addr or "",
        behind_nat=a.behind_nat,
        usage_interval=a.usage_interval,
        metrics_listen=a.metrics_listen or "",
    )
    if a.foreground:
        print(f"This node joined a swarm as a {enrolled.role}.")
        return run_foreground(data)
    proc = _start_daemon(data)
    try:
        _wait_ready(data, proc)
    except ShoalError:
        _stop_daemon(data)
        forget(data)
        raise
    print(f"This node joined a swarm as a {enrolled.role}.")
    return 0


def _host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def cmd_swarm_leave(a: argparse.Namespace, data: DataDir) -> int:
    from agent.setup import forget

    node = data.load_node()
    if node.role == "manager" and not a.force:
        raise ShoalError(leave_refusal(_manager_stats(data)))
    if data.daemon_pid() is not None:
        try:
            res = control.call(data.socket, "leave-prepare", {"force": a.force}, timeout=20)
            if res.get("warning"):
                print(f"Warning: {res['warning']}; leaving anyway (--force)", file=sys.stderr)
        except ShoalError as exc:
            if "unknown command" not in str(exc):
                raise
    _stop_daemon(data)
    forget(data)
    print("Node left the swarm.")
    return 0


def _manager_stats(data: DataDir) -> tuple[int, int] | None:
    """(reachable, unreachable) managers as the cluster sees them; None when unknown."""
    try:
        rows = control.call(data.socket, "node-ls", timeout=5)
    except ShoalError:
        return None
    status = [str(n.get("manager_status") or "") for n in rows]
    reachable = sum(1 for s in status if s in ("Leader", "Reachable"))
    return reachable, sum(1 for s in status if s == "Unreachable")


def leave_refusal(stats: tuple[int, int] | None) -> str:
    """Docker's refusal to let a manager leave without --force, for (reachable, unreachable)
    managers (None when the cluster could not be asked)."""
    msg = "You are attempting to leave the swarm on a node that is participating as a manager. "
    if stats is not None:
        reachable, unreachable = stats
        if reachable == 1 and unreachable == 0:
            return msg + (
                "Removing the last manager erases all current state of the swarm."
                " Use `--force` to ignore this message."
            )
        if reachable - 2 <= unreachable:  # the managers left are no majority of the rest
            msg += (
                f"Removing this node leaves {reachable - 1} managers out of"
                f" {reachable + unreachable}. Without a Raft quorum your swarm will be"
                " inaccessible. "
            )
    return msg + (
        "The only way to restore a swarm that has lost consensus is to reinitialize it with"
        " `--force-new-cluster`. Use `--force` to suppress this message."
    )


def _read_key(prompt: str) -> str:
    import getpass

    if sys.stdin.isatty():
        return getpass.getpass(prompt)
    return sys.stdin.readline().strip()


def cmd_swarm_unlock(a: argparse.Namespace, data: DataDir) -> int:
    key = _read_key("Enter unlock key: ")
    control.call(data.socket, "unlock", {"key": key})
    return 0


def cmd_swarm_unlock_key(a: argparse.Namespace, data: DataDir) -> int:
    res = control.call(data.socket, "unlock-key", {"rotate": a.rotate})
    if a.quiet:
        print(res["unlock_key"])
        return 0
    if a.rotate:
        print("Successfully rotated manager unlock key.\n")
    _print_unlock_key(res["unlock_key"])
    return 0


def cmd_swarm_update(a: argparse.Namespace, data: DataDir) -> int:
    given = (a.autolock, a.task_history_limit, a.node_grace, a.home_assistant)
    if all(v is None for v in given) and a.home_assistant_prefix is None:
        raise ShoalError(NOTHING_TO_UPDATE)
    grace = None if a.node_grace is None else a.node_grace.total_seconds()
    args = {
        "autolock": a.autolock,
        "task_history_limit": a.task_history_limit,
        "node_grace": grace,
        "home_assistant": a.home_assistant,
        "home_assistant_prefix": a.home_assistant_prefix,
    }
    res = control.call(data.socket, "swarm-update", args)
    print("Swarm updated.")
    if res["autolock"] and res["changed"]:
        _print_unlock_key(res["unlock_key"])
    return 0


def cmd_swarm_join_token(a: argparse.Namespace, data: DataDir) -> int:
    res = control.call(data.socket, "join-token", {"role": a.role, "rotate": a.rotate})
    if a.quiet:
        print(res["token"])
        return 0
    if a.rotate:
        print(f"Successfully rotated {a.role} join token.\n")
    print(f"To add a {a.role} to this swarm, run the following command:\n")
    print(f"    {res['command']}\n")
    return 0


def cmd_swarm_ca(a: argparse.Namespace, data: DataDir) -> int:
    """The swarm's root CA certificate, as `docker swarm ca` prints it."""
    data.load_node()
    print(data.ca_cert.read_text().rstrip())
    return 0


def _node_options(sp: argparse.ArgumentParser) -> None:
    sp.add_argument(
        "--driver",
        choices=["auto", "docker", "process", "hollow"],
        default="auto",
        help="how tasks run: docker (Docker Engine or Podman's socket), process (no engine),"
        " hollow (benchmarks); auto picks docker when its socket exists",
    )
    sp.add_argument(
        "--heartbeat",
        type=parse_duration,
        default=timedelta(seconds=60),
        help="heartbeat period (default 60s; the broker's will reports a lost node at once)",
    )
    sp.add_argument(
        "--data-path-addr",
        type=ip_address,
        metavar="ADDR",
        help="address other nodes send this node's overlay (VXLAN) traffic to (default: the"
        " address this node reaches the broker from)",
    )
    sp.add_argument(
        "--behind-nat",
        action="store_true",
        help="other nodes cannot reach this node: the routing mesh and VIPs on other nodes"
        " send it no traffic (its own tasks still reach everything it can reach)",
    )
    sp.add_argument(
        "--usage-interval",
        type=interval_seconds,
        default=30.0,
        metavar="SECONDS",
        help="how often this node samples its CPU, memory and disk for mon/node/<id>/usage"
        " (default 30; published only when the numbers move, or every 10 minutes; 0 = off)",
    )
    metrics_option(sp)


def _home_assistant_options(sp: argparse.ArgumentParser) -> None:
    sp.add_argument(
        "--home-assistant",
        type=on_off,
        metavar="on|off",
        help="the leader publishes Home Assistant MQTT discovery entries: every node and"
        " service appears in Home Assistant as a device with sensors (default off)",
    )
    sp.add_argument(
        "--home-assistant-prefix",
        type=discovery_prefix,
        metavar="PREFIX",
        help="Home Assistant's discovery prefix (default homeassistant)",
    )


def metrics_option(sp: argparse.ArgumentParser) -> None:
    sp.add_argument(
        "--metrics-listen",
        type=metrics_addr,
        metavar="HOST:PORT",
        help="serve Prometheus metrics at http://HOST:PORT/metrics (a bare PORT listens on"
        " 127.0.0.1; `off` turns it off; default off; kept for later starts)",
    )


def register(sub: Any, cmd: Callable[..., argparse.ArgumentParser]) -> None:
    swarm = sub.add_parser("swarm", help="manage the swarm").add_subparsers(
        dest="sub", metavar="COMMAND", required=True
    )
    sp = cmd(swarm, "init", cmd_swarm_init, "initialize a swarm; this node becomes its manager")
    sp.add_argument("--advertise-addr", help="address other nodes use to reach the broker")
    sp.add_argument(
        "--listen-addr", type=parse_addr, default=("0.0.0.0", 8883), help="broker HOST:PORT"
    )
    sp.add_argument("--enroll-port", type=int, help="enrollment listener port (default PORT+1)")
    sp.add_argument("--cert-expiry", type=parse_duration, default=timedelta(days=90))
    sp.add_argument("--hostname", help="node name to record (default: this machine's)")
    sp.add_argument("--foreground", action="store_true", help="run the daemon attached")
    sp.add_argument(
        "--autolock", action="store_true", help="managers need the unlock key after a restart"
    )
    sp.add_argument(
        "--force-new-cluster",
        action="store_true",
        help="recover a swarm that lost its quorum: this manager alone, keeping all the state",
    )
    sp.add_argument(
        "--broker",
        choices=["mosquitto", "nats"],
        default="mosquitto",
        help="the swarm's broker: an embedded mosquitto, or a NATS cluster (no single server)",
    )
    sp.add_argument(
        "--broker-servers", type=int, metavar="N", help="servers of the NATS cluster (default 3)"
    )
    sp.add_argument(
        "--broker-hosts",
        metavar="H1,H2,H3",
        help="hosts of the NATS servers, one each (default: all on this machine's loopback)",
    )
    _home_assistant_options(sp)
    _node_options(sp)

    sp = cmd(swarm, "join", cmd_swarm_join, "join a swarm as a worker or a manager")
    sp.add_argument("--token", required=True, help="the join token (shoal swarm join-token)")
    sp.add_argument("--role", choices=["worker", "manager"], help="refuse a token for another role")
    sp.add_argument("--enroll-port", type=int, help="enrollment listener port (default PORT+1)")
    sp.add_argument("--hostname", help="node name to record (default: this machine's)")
    sp.add_argument("--timeout", type=float, default=15.0, help="seconds to wait for a manager")
    sp.add_argument("--foreground", action="store_true", help="run the daemon attached")
    _node_options(sp)
    sp.add_argument(
        "address",
        metavar="mqtts://HOST:PORT[,mqtts://HOST:PORT...]",
        help="the broker; a clustered broker's servers comma-separated (the node enrolls"
        " through the first and fails over among all)",
    )

    sp = cmd(swarm, "leave", cmd_swarm_leave, "leave the swarm")
    sp.add_argument("--force", "-f", action="store_true", help="leave even as the last manager")

    sp = cmd(swarm, "update", cmd_swarm_update, "update the swarm's settings")
    sp.add_argument(
        "--autolock", type=parse_bool, metavar="true|false", help="lock restarted managers"
    )
    sp.add_argument(
        "--task-history-limit", type=int, metavar="N", help="tasks kept per slot (default 5)"
    )
    sp.add_argument(
        "--node-grace",
        type=parse_duration,
        metavar="DURATION",
        help="time nodes get to report back after a broker outage or a new leader (default 30s)",
    )
    _home_assistant_options(sp)
    cmd(swarm, "unlock", cmd_swarm_unlock, "unlock a locked manager (reads the key from stdin)")
    sp = cmd(swarm, "unlock-key", cmd_swarm_unlock_key, "show or rotate the unlock key")
    sp.add_argument("--rotate", action="store_true", help="rotate the unlock key")
    sp.add_argument("--quiet", "-q", action="store_true", help="print the key only")

    cmd(swarm, "ca", cmd_swarm_ca, "print the swarm's root CA certificate")

    sp = cmd(swarm, "join-token", cmd_swarm_join_token, "manage join tokens")
    sp.add_argument("--rotate", action="store_true", help="rotate the token")
    sp.add_argument("--quiet", "-q", action="store_true", help="print the token only")
    sp.add_argument("role", choices=["worker", "manager"])
