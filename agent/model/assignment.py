"""What a node is told to run: an :class:`Assignment` per task, and the secrets and configs
the set carries for them.

They cross the network, so ``from_dict`` trusts nothing: any malformed input raises
:class:`~agent.model.errors.AssignmentError` naming the first bad field, never anything else.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from agent.model.errors import AssignmentError
from agent.model.fields import FieldReader
from agent.model.spec import PortConfig, SpecError, TaskSpec
from agent.model.tasks import DESIRED_STATES, DesiredState

__all__ = [
    "Assignment",
    "ConfigBlob",
    "SecretBlob",
    "check_references",
    "parse_configs",
    "parse_secrets",
]

# A service name is a DNS label, as in Swarm.
_SERVICE_NAME = re.compile(r"[0-9A-Za-z][0-9A-Za-z_-]{0,62}")


@dataclass(frozen=True, slots=True, kw_only=True)
class Assignment:
    """One task a manager wants on this node, as the dispatcher sends it.

    A task's spec never changes: a service update creates new tasks. Only ``desired_state``
    (and with it ``version``) moves. ``ports`` are the task's published ports as the allocator
    resolved them (Swarm keeps them on the task's endpoint, not in its spec).
    """

    task_id: str
    service_id: str
    service_name: str
    slot: int | None
    node_id: str
    spec: TaskSpec
    desired_state: DesiredState = DesiredState.RUNNING
    version: int = 0
    cluster_id: str
    ports: tuple[PortConfig, ...] = ()

    @property
    def container_name(self) -> str:
        """``<service>.<slot>.<task id>`` (``<service>.<node id>.<task id>`` without a slot)."""
        slot = self.node_id if self.slot is None else str(self.slot)
        return f"{self.service_name}.{slot}.{self.task_id}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "task_id": self.task_id,
            "service_id": self.service_id,
            "service_name": self.service_name,
            "slot": self.slot,
            "node_id": self.node_id,
            "spec": self.spec.to_dict(),
            "desired_state": str(self.desired_state),
            "version": self.version,
            "cluster_id": self.cluster_id,
            "ports": [p.to_dict() for p in self.ports],
        }

    @classmethod
    def from_dict(cls, obj: object) -> Assignment:
        r = FieldReader(obj, AssignmentError, _ASSIGNMENT_KEYS, _ASSIGNMENT_REQUIRED)
        spec_obj = r.raw("spec")
        try:
            spec = TaskSpec.from_dict(spec_obj)
        except SpecError as exc:
            raise AssignmentError(f"spec.{exc.path}" if exc.path else "spec", exc.message) from exc
        except (TypeError, ValueError, RecursionError) as exc:  # defensive: never crash on input
            raise AssignmentError("spec", f"malformed task spec ({exc})") from exc
        ports_obj = r.raw("ports", [])
        if not isinstance(ports_obj, list | tuple):
            raise AssignmentError("ports", "expected a list")
        ports: list[PortConfig] = []
        for i, p in enumerate(ports_obj):
            try:
                ports.append(PortConfig.from_dict(p))
            except SpecError as exc:
                where = f"ports[{i}].{exc.path}" if exc.path else f"ports[{i}]"
                raise AssignmentError(where, exc.message) from exc
        slot = r.optional_int("slot", minimum=0)
        desired = r.text("desired_state", "running")
        if desired not in DESIRED_STATES:
            raise AssignmentError(
                "desired_state", f"expected one of running, shutdown, remove, found {desired!r}"
            )
        return cls(
            task_id=r.id("task_id"),
            service_id=r.id("service_id"),
            service_name=r.matching("service_name", _SERVICE_NAME, "a DNS label"),
            slot=slot,
            node_id=r.id("node_id"),
            spec=spec,
            desired_state=DesiredState(desired),
            version=r.integer("version", 0, minimum=0),
            cluster_id=r.id("cluster_id"),
            ports=tuple(ports),
        )


_ASSIGNMENT_KEYS = frozenset(
    {
        "task_id",
        "service_id",
        "service_name",
        "slot",
        "node_id",
        "spec",
        "desired_state",
        "version",
        "cluster_id",
        "ports",
    }
)
_ASSIGNMENT_REQUIRED = frozenset(
    {"task_id", "service_id", "service_name", "slot", "node_id", "spec", "cluster_id"}
)


@dataclass(frozen=True, slots=True, kw_only=True)
class SecretBlob:
    """A secret as the managers send it: ``sealed`` opens only with this node's private key,
    in the context :func:`agent.worker.taskfiles.secret_context` names."""

    id: str
    name: str
    sealed: bytes = field(repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "sealed": self.sealed}

    @classmethod
    def from_dict(cls, obj: object, where: str = "secret") -> SecretBlob:
        r = FieldReader(obj, AssignmentError, _BLOB_KEYS["sealed"], _BLOB_KEYS["sealed"], where)
        return cls(id=r.id("id"), name=r.text("name"), sealed=r.data_bytes("sealed"))


@dataclass(frozen=True, slots=True, kw_only=True)
class ConfigBlob:
    """A config as the managers send it: in clear, configs are not secret."""

    id: str
    name: str
    data: bytes = field(repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "data": self.data}

    @classmethod
    def from_dict(cls, obj: object, where: str = "config") -> ConfigBlob:
        r = FieldReader(obj, AssignmentError, _BLOB_KEYS["data"], _BLOB_KEYS["data"], where)
        return cls(id=r.id("id"), name=r.text("name"), data=r.data_bytes("data"))


_BLOB_KEYS = {key: frozenset({"id", "name", key}) for key in ("sealed", "data")}
_B = TypeVar("_B", SecretBlob, ConfigBlob)


def parse_secrets(obj: object) -> list[SecretBlob]:
    """An assignment set's ``secrets`` list (None or absent: no secrets)."""
    return _parse_blobs(obj, "secrets", SecretBlob.from_dict)


def parse_configs(obj: object) -> list[ConfigBlob]:
    """An assignment set's ``configs`` list (None or absent: no configs)."""
    return _parse_blobs(obj, "configs", ConfigBlob.from_dict)


def _parse_blobs(obj: object, key: str, parse: Callable[[object, str], _B]) -> list[_B]:
    if obj is None:
        return []
    if not isinstance(obj, list | tuple):
        raise AssignmentError(key, f"expected a list, found {type(obj).__name__}")
    out: list[_B] = []
    seen: set[str] = set()
    for i, entry in enumerate(obj):
        blob = parse(entry, f"{key}[{i}]")
        if blob.id in seen:
            raise AssignmentError(f"{key}[{i}].id", f"id {blob.id} appears twice")
        seen.add(blob.id)
        out.append(blob)
    return out


def check_references(
    assignments: Iterable[Assignment],
    secrets: Iterable[SecretBlob],
    configs: Iterable[ConfigBlob],
) -> None:
    """Every running task's secret and config references name an id the set carries."""
    secret_ids = {s.id for s in secrets}
    config_ids = {c.id for c in configs}
    for a in assignments:
        if a.desired_state != DesiredState.RUNNING:
            continue  # managers send files for running tasks only
        c = a.spec.container
        for i, ref in enumerate(c.secrets):
            if ref.secret_id not in secret_ids:
                raise AssignmentError(
                    f"task {a.task_id} spec.container.secrets[{i}].secret_id",
                    f"secret {ref.source} ({ref.secret_id!r}) is not among the set's secrets",
                )
        for i, cref in enumerate(c.configs):
            if cref.config_id not in config_ids:
                raise AssignmentError(
                    f"task {a.task_id} spec.container.configs[{i}].config_id",
                    f"config {cref.source} ({cref.config_id!r}) is not among the set's configs",
                )
