"""The routing mesh: this node's published ingress ports, kept in line with the routing table.

:func:`parse_ingress` reads the ingress part of a routing table (and says which key is wrong);
:class:`Mesh` holds one :class:`agent.net.proxy.PortProxy` per published port and reconciles
them with that part (:meth:`Mesh.apply`): new ports are opened, changed ones get their new
backends, ports no longer listed are closed.
"""

from __future__ import annotations

import asyncio
import ipaddress
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, cast

from agent.net.balancer import Backend, Clock, is_port
from agent.net.errors import MeshError
from agent.net.proxy import PortProxy
from agent.net.proxybase import ProxyStats, Transport

__all__ = ["IngressPort", "Mesh", "parse_ingress"]


@dataclass(frozen=True, slots=True)
class IngressPort:
    """One published port of a routing table's ingress part."""

    protocol: Transport
    published: int
    backends: tuple[Backend, ...] = ()
    proxy_protocol: bool = False
    source: str | None = None


def parse_ingress(table: Mapping[str, Any]) -> dict[tuple[Transport, int], IngressPort]:
    """The ingress ports of ``table`` keyed by (protocol, published); MeshError names the key."""
    if not isinstance(table, Mapping):
        raise MeshError(f"routing table must be a mapping, got {type(table).__name__}")
    entries = table.get("ingress", [])
    if not isinstance(entries, list):
        raise MeshError(f"ingress: expected a list, got {type(entries).__name__}")
    ports: dict[tuple[Transport, int], IngressPort] = {}
    for i, entry in enumerate(entries):
        where = f"ingress[{i}]"
        if not isinstance(entry, Mapping):
            raise MeshError(f"{where}: expected a mapping, got {type(entry).__name__}")
        protocol = entry.get("protocol", "tcp")
        if protocol not in ("tcp", "udp"):
            raise MeshError(f"{where}.protocol: expected tcp or udp, got {protocol!r}")
        published = entry.get("published")
        if not is_port(published):
            raise MeshError(f"{where}.published: expected a port 1-65535, got {published!r}")
        proxy_protocol = entry.get("proxy_protocol", False)
        if not isinstance(proxy_protocol, bool):
            raise MeshError(f"{where}.proxy_protocol: expected true or false")
        if proxy_protocol and protocol == "udp":
            raise MeshError(f"{where}.proxy_protocol: the PROXY protocol needs tcp")
        source = entry.get("source")
        if source is not None:
            try:
                source = str(ipaddress.ip_address(source))
            except ValueError:
                raise MeshError(f"{where}.source: expected an IP address, got {source!r}") from None
        raw = entry.get("backends", [])
        if not isinstance(raw, list):
            raise MeshError(f"{where}.backends: expected a list, got {type(raw).__name__}")
        backends = []
        for j, b in enumerate(raw):
            if not isinstance(b, Mapping):
                raise MeshError(f"{where}.backends[{j}]: expected a mapping")
            host: Any = b.get("host")
            number: Any = b.get("port")
            try:
                backends.append(Backend(host, number, b.get("weight", 1)))
            except MeshError as exc:
                raise MeshError(f"{where}.backends[{j}]: {exc}") from None
        key = (cast(Transport, protocol), cast(int, published))
        if key in ports:
            raise MeshError(f"{where}: {protocol}/{published} is published twice")
        ports[key] = IngressPort(key[0], key[1], tuple(backends), proxy_protocol, source)
    return ports


class Mesh:
    """This node's published ingress ports, kept in line with the routing table."""

    def __init__(
        self,
        host: str | None = None,
        *,
        connect_timeout: float = 2.5,
        down_for: float = 2.0,
        udp_idle: float = 60.0,
        clock: Clock = time.monotonic,
    ) -> None:
        self.host = host
        self._options: dict[str, Any] = dict(
            connect_timeout=connect_timeout, down_for=down_for, udp_idle=udp_idle, clock=clock
        )
        self._proxies: dict[tuple[Transport, int], PortProxy] = {}
        self._lock = asyncio.Lock()

    @property
    def proxies(self) -> dict[tuple[Transport, int], PortProxy]:
        return dict(self._proxies)

    def stats(self) -> dict[tuple[Transport, int], ProxyStats]:
        return {key: proxy.stats for key, proxy in self._proxies.items()}

    async def apply(self, table: Mapping[str, Any], *, cut_removed: bool = False) -> None:
        """Open, update and close proxies to match ``table``; idempotent.

        A malformed table raises :class:`MeshError` before anything changes. Ports whose
        entries are unchanged, and the connections through them, are left alone. Ports that
        cannot be bound are reported together in one MeshError after the rest is applied.
        """
        wanted = parse_ingress(table)
        async with self._lock:
            for key in [k for k in self._proxies if k not in wanted]:
                await self._proxies.pop(key).close()
            failed: list[str] = []
            for key, port in wanted.items():
                proxy = self._proxies.get(key)
                if proxy is None:
                    proxy = PortProxy(
                        port.published,
                        host=self.host,
                        protocol=port.protocol,
                        backends=port.backends,
                        proxy_protocol=port.proxy_protocol,
                        source=port.source,
                        **self._options,
                    )
                    try:
                        await proxy.start()
                    except OSError as exc:
                        failed.append(f"{port.protocol}/{port.published}: {exc.strerror or exc}")
                        continue
                    self._proxies[key] = proxy
                    continue
                proxy.proxy_protocol = port.proxy_protocol
                proxy.source = port.source
                proxy.set_backends(port.backends, cut=cut_removed)
            if failed:
                where = self.host or "every interface"
                raise MeshError(f"cannot publish on {where}: " + "; ".join(failed))

    async def close(self) -> None:
        async with self._lock:
            proxies, self._proxies = list(self._proxies.values()), {}
            for proxy in proxies:
                await proxy.close()

    async def __aenter__(self) -> Mesh:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
