"""The allocation: what the allocator gave out (subnets, VXLAN ids, virtual IPs, task and node
addresses, published ports, the next-fit cursors and the problems found), and its stored form.

:meth:`Allocation.to_dict` is what the store keeps in its one ``NetworkAllocation`` object;
:meth:`Allocation.from_dict` reads it back and raises :class:`AllocationError` when it is
malformed, never trusting what it reads.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from agent.model.errors import ShoalError
from agent.model.spec import PortConfig, SpecError

__all__ = ["DYNAMIC_PORTS", "Allocation", "AllocationError", "Subnet"]

DYNAMIC_PORTS = (30000, 32767)  # inclusive, as Swarm's


class AllocationError(ShoalError, ValueError):
    """A serialized allocation (``Allocation.from_dict``) is malformed."""


@dataclass(frozen=True, slots=True)
class Subnet:
    """A network's subnet, its gateway, the next host offset to try (next-fit), and its VXLAN
    id (``vni``: 4096 for ingress, the lowest free one above for the others, kept for life)."""

    subnet: str
    gateway: str
    cursor: int = 2
    vni: int = 0


@dataclass(frozen=True, slots=True)
class Allocation:
    """What :func:`allocate` gave out. Treat the maps as read-only."""

    networks: dict[str, Subnet] = field(default_factory=dict)  # network id ->
    vips: dict[str, dict[str, str]] = field(default_factory=dict)  # service -> network -> VIP
    addresses: dict[str, dict[str, str]] = field(default_factory=dict)  # task -> network ->
    nodes: dict[str, dict[str, str]] = field(default_factory=dict)  # node -> network -> address
    ports: dict[str, tuple[PortConfig, ...]] = field(default_factory=dict)  # service ->
    port_cursor: int = DYNAMIC_PORTS[0]
    errors: dict[str, tuple[str, ...]] = field(default_factory=dict)  # service/network id ->

    def to_dict(self) -> dict[str, Any]:
        return {
            "networks": {k: dataclasses.asdict(v) for k, v in self.networks.items()},
            "vips": {k: dict(v) for k, v in self.vips.items()},
            "addresses": {k: dict(v) for k, v in self.addresses.items()},
            "nodes": {k: dict(v) for k, v in self.nodes.items()},
            "ports": {k: [p.to_dict() for p in v] for k, v in self.ports.items()},
            "port_cursor": self.port_cursor,
            "errors": {k: list(v) for k, v in self.errors.items()},
        }

    @classmethod
    def from_dict(cls, obj: object) -> Allocation:
        try:
            data = _map(obj, "allocation")
            networks = {}
            for ident, raw in _map(data.get("networks", {}), "networks").items():
                item = _map(raw, f"networks.{ident}")
                cursor, vni = item.get("cursor", 2), item.get("vni", 0)
                for key, value in (("cursor", cursor), ("vni", vni)):
                    if not isinstance(value, int) or isinstance(value, bool):
                        raise AllocationError(f"networks.{ident}.{key}: expected an integer")
                networks[ident] = Subnet(
                    _text(item.get("subnet"), f"networks.{ident}.subnet"),
                    _text(item.get("gateway"), f"networks.{ident}.gateway"),
                    cursor,
                    vni,
                )
            ports = {
                ident: tuple(PortConfig.from_dict(p, f"ports.{ident}") for p in _list(raw))
                for ident, raw in _map(data.get("ports", {}), "ports").items()
            }
            cursor = data.get("port_cursor", DYNAMIC_PORTS[0])
            if not isinstance(cursor, int) or isinstance(cursor, bool):
                raise AllocationError("port_cursor: expected an integer")
            return cls(
                networks=networks,
                vips=_nested(data.get("vips", {}), "vips"),
                addresses=_nested(data.get("addresses", {}), "addresses"),
                nodes=_nested(data.get("nodes", {}), "nodes"),
                ports=ports,
                port_cursor=cursor,
                errors={
                    k: tuple(_text(m, f"errors.{k}") for m in _list(v))
                    for k, v in _map(data.get("errors", {}), "errors").items()
                },
            )
        except SpecError as exc:
            raise AllocationError(str(exc)) from None


def _map(obj: object, where: str) -> dict[str, Any]:
    if not isinstance(obj, dict) or not all(isinstance(k, str) for k in obj):
        raise AllocationError(f"{where}: expected a map with string keys")
    return obj


def _list(obj: object) -> list[Any]:
    if not isinstance(obj, list | tuple):
        raise AllocationError(f"expected a list, found {type(obj).__name__}")
    return list(obj)


def _text(obj: object, where: str) -> str:
    if not isinstance(obj, str):
        raise AllocationError(f"{where}: expected a string")
    return obj


def _nested(obj: object, where: str) -> dict[str, dict[str, str]]:
    return {
        k: {n: _text(a, f"{where}.{k}.{n}") for n, a in _map(v, f"{where}.{k}").items()}
        for k, v in _map(obj, where).items()
    }
