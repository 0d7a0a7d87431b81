"""Cluster state kept by a single manager, on disk.

This is the foundation's stand-in for the replicated store: every change goes through one
method here and is saved atomically before anyone is told it happened, so moving the same
operations onto Raft entries later changes where they are stored, not what they mean.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from agent.errors import ShoalError
from certs import JoinToken, write_file_atomic

__all__ = ["ClusterState", "NodeRecord"]


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass(slots=True)
class NodeRecord:
    id: str
    role: str  # "manager" | "worker"
    hostname: str
    serials: list[int] = field(default_factory=list)
    status: str = "unknown"  # ready | down | unknown
    availability: str = "active"
    created: str = field(default_factory=_now)
    updated: str = field(default_factory=_now)

    @property
    def serial(self) -> int:
        return self.serials[-1]


@dataclass(slots=True)
class ClusterState:
    cluster_id: str
    worker_token: str
    manager_token: str
    cert_lifetime_s: int = 90 * 86400
    nodes: dict[str, NodeRecord] = field(default_factory=dict)
    revoked: dict[str, str] = field(default_factory=dict)  # serial (decimal) -> revoked at
    admins: dict[str, int] = field(default_factory=dict)
    monitors: dict[str, int] = field(default_factory=dict)

    # persistence ---------------------------------------------------------------------
    @classmethod
    def load(cls, path: Path) -> ClusterState:
        try:
            obj = json.loads(path.read_text())
            nodes = {k: NodeRecord(**v) for k, v in obj.pop("nodes").items()}
            return cls(nodes=nodes, **obj)
        except FileNotFoundError:
            raise ShoalError(f"no cluster state at {path}: is this node a manager?") from None
        except (OSError, ValueError, TypeError, KeyError, AttributeError) as exc:
            raise ShoalError(f"cluster state {path} is corrupt: {exc}") from exc

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_file_atomic(path, json.dumps(asdict(self), indent=1).encode(), 0o600)

    # tokens --------------------------------------------------------------------------
    def token_for(self, role: str) -> str:
        if role == "worker":
            return self.worker_token
        if role == "manager":
            return self.manager_token
        raise ShoalError(f"unknown role {role!r}: use worker or manager")

    def rotate_token(self, role: str, ca_digest: str) -> str:
        token = str(JoinToken.new(ca_digest))
        if role == "worker":
            self.worker_token = token
        elif role == "manager":
            self.manager_token = token
        else:
            raise ShoalError(f"unknown role {role!r}: use worker or manager")
        return token

    def role_for_token(self, token: JoinToken) -> str | None:
        """The role a presented token grants, compared in constant time; None if neither."""
        worker = token.matches(JoinToken.parse(self.worker_token))
        manager = token.matches(JoinToken.parse(self.manager_token))
        if manager:
            return "manager"
        if worker:
            return "worker"
        return None

    # nodes ---------------------------------------------------------------------------
    def add_node(self, node_id: str, role: str, hostname: str, serial: int) -> NodeRecord:
        rec = NodeRecord(id=node_id, role=role, hostname=hostname, serials=[serial])
        self.nodes[node_id] = rec
        return rec

    def find_node(self, ref: str) -> NodeRecord:
        """A node by id, unique id prefix or hostname, as Docker resolves node references."""
        if ref in self.nodes:
            return self.nodes[ref]
        matches = [n for n in self.nodes.values() if n.id.startswith(ref) or n.hostname == ref]
        if len(matches) == 1:
            return matches[0]
        if not matches:
            raise ShoalError(f"node {ref} not found")
        raise ShoalError(f"node reference {ref} is ambiguous ({len(matches)} nodes match)")

    def set_status(self, node_id: str, status: str) -> bool:
        rec = self.nodes.get(node_id)
        if rec is None or rec.status == status:
            return False
        rec.status = status
        rec.updated = _now()
        return True

    def remove_node(self, node_id: str) -> NodeRecord:
        rec = self.nodes.pop(node_id)
        for serial in rec.serials:
            self.revoke(serial)
        return rec

    def revoke(self, serial: int) -> None:
        self.revoked.setdefault(str(serial), _now())

    def revoked_list(self) -> list[tuple[int, datetime]]:
        return [(int(s), datetime.fromisoformat(t)) for s, t in sorted(self.revoked.items())]

    def managers(self) -> list[str]:
        return sorted(n.id for n in self.nodes.values() if n.role == "manager")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)
