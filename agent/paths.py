"""Where a node keeps its files. Every command takes --data-dir (or SHOAL_DATA_DIR)."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from agent.model.errors import ShoalError
from certs import write_file_atomic

__all__ = ["DataDir", "NodeConfig", "default_data_dir", "process_alive"]


def default_data_dir() -> Path:
    env = os.environ.get("SHOAL_DATA_DIR")
    if env:
        return Path(env)
    if os.geteuid() == 0:
        return Path("/var/lib/shoal")
    return Path(os.environ.get("XDG_STATE_HOME", Path.home() / ".local" / "state")) / "shoal"


@dataclass(frozen=True, slots=True)
class NodeConfig:
    """What a node knows about itself and its swarm (node.json)."""

    node_id: str
    cluster_id: str
    role: str
    hostname: str
    broker_host: str
    broker_port: int
    enroll_port: int
    embedded_broker: bool = False
    listen_host: str = "0.0.0.0"
    advertise_host: str = ""
    heartbeat: float = 60.0
    driver: str = "auto"
    data_path_addr: str = ""  # where other nodes send this node's overlay traffic ("": found)
    behind_nat: bool = False  # other nodes cannot reach it: no traffic is sent its way
    broker_addresses: tuple[str, ...] = ()
    """Every broker server's "host:port" (a clustered broker); empty: broker_host:broker_port
    alone. The node fails over among them and learns changes to the list from the managers."""
    broker_backend: str = "mosquitto"  # or "nats": what the swarm's broker is
    usage_interval: float = 30.0  # seconds between mon/node/<id>/usage samples (0: off)
    metrics_listen: str = ""  # HOST:PORT of the Prometheus endpoint ("": off)

    @classmethod
    def from_dict(cls, obj: dict[str, Any]) -> NodeConfig:
        fields = cls.__dataclass_fields__
        known = {k: v for k, v in obj.items() if k in fields}
        if "broker_addresses" in known:
            known["broker_addresses"] = tuple(str(a) for a in known["broker_addresses"])
        return cls(**known)


@dataclass(frozen=True, slots=True)
class DataDir:
    root: Path

    @property
    def node_file(self) -> Path:
        return self.root / "node.json"

    @property
    def tls(self) -> Path:
        return self.root / "tls"

    @property
    def ca_cert(self) -> Path:
        return self.tls / "ca.pem"

    @property
    def node_cert(self) -> Path:
        return self.tls / "node.pem"

    @property
    def node_key(self) -> Path:
        return self.tls / "node-key.pem"

    @property
    def manager(self) -> Path:
        return self.root / "manager"

    @property
    def raft(self) -> Path:
        return self.manager / "raft"

    @property
    def broker(self) -> Path:
        return self.root / "broker"

    @property
    def socket(self) -> Path:
        return self.root / "shoal.sock"

    @property
    def pid_file(self) -> Path:
        return self.root / "shoal.pid"

    @property
    def log_file(self) -> Path:
        return self.root / "shoal.log"

    def exists(self) -> bool:
        return self.node_file.exists()

    def load_node(self) -> NodeConfig:
        try:
            return NodeConfig.from_dict(json.loads(self.node_file.read_text()))
        except FileNotFoundError:
            raise ShoalError(
                f"this node is not part of a swarm (no {self.node_file}); run `shoal swarm init`"
                " or `shoal swarm join`, or pass the right --data-dir"
            ) from None
        except (OSError, ValueError, TypeError) as exc:
            raise ShoalError(f"{self.node_file} is unreadable or corrupt: {exc}") from exc

    def save_node(self, node: NodeConfig) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        write_file_atomic(self.node_file, json.dumps(asdict(node), indent=2).encode(), 0o600)

    def daemon_pid(self) -> int | None:
        """The pid of this data dir's running daemon, if one runs."""
        try:
            pid = int(self.pid_file.read_text().strip())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except (OSError, ValueError):
            return None
        if not process_alive(pid) or b"daemon" not in cmdline:
            return None  # exited, or the pid now belongs to another program
        return pid


def process_alive(pid: int) -> bool:
    """Whether a process runs; a zombie (exited, not yet reaped) does not."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    state = stat.rsplit(")", 1)[-1].split()[0] if ")" in stat else "?"
    return state not in ("Z", "X")
