"""Parsers for the string forms Compose files use; each raises ValueError with a user message.

Durations follow Go's ``time.ParseDuration`` (``1m30s``, ``500ms``, ``1.5h``), byte sizes
Docker's ``RAMInBytes`` (``512M``, ``1g``, ``100kb``: binary multiples), CPUs Docker's
``ParseCPUs`` (``0.5``), ports Docker's ``nat.ParsePortSpec`` and volumes Docker's
``ParseVolume``.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

__all__ = [
    "PortEntry",
    "VolumeEntry",
    "parse_bytes",
    "parse_cpus",
    "parse_device",
    "parse_duration",
    "parse_port",
    "parse_volume",
]

_UNITS_NS = {
    "ns": 1,
    "us": 1_000,
    "µs": 1_000,
    "μs": 1_000,
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60_000_000_000,
    "h": 3_600_000_000_000,
}
_DURATION_PART = re.compile(r"(\d+\.?\d*|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_SIZE = re.compile(r"^(\d+(?:\.\d+)?) ?([kKmMgGtTpP])?[iI]?[bB]?$")
_SIZE_POWERS = {"k": 1, "m": 2, "g": 3, "t": 4, "p": 5}
PROPAGATIONS = ("private", "rprivate", "shared", "rshared", "slave", "rslave")


def _show(value: object) -> str:
    return repr(value) if isinstance(value, str) else str(value)


def parse_duration(value: object) -> int:
    """A duration in integer nanoseconds."""
    problem = f"expected a duration like '10s' or '1m30s', found {_show(value)}"
    if isinstance(value, int) and not isinstance(value, bool) and value == 0:
        return 0
    if not isinstance(value, str):
        raise ValueError(problem)
    text = value.strip()
    if text == "0":
        return 0
    total = Decimal(0)
    pos = 0
    while pos < len(text):
        match = _DURATION_PART.match(text, pos)
        if match is None:
            raise ValueError(problem)
        total += Decimal(match.group(1)) * _UNITS_NS[match.group(2)]
        pos = match.end()
    if not text or total > 2**63 - 1:
        raise ValueError(problem)
    return int(total)


def parse_bytes(value: object) -> int:
    """A size in bytes; ``k``, ``m``, ``g``... are powers of 1024, as in Docker."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    problem = f"expected a size like '512M' or '1g', found {_show(value)}"
    if not isinstance(value, str):
        raise ValueError(problem)
    match = _SIZE.match(value.strip())
    if match is None:
        raise ValueError(problem)
    number = Decimal(match.group(1))
    power = _SIZE_POWERS.get((match.group(2) or "").lower(), 0)
    result = int(number * (1024**power))
    if result > 2**63 - 1:
        raise ValueError(problem)
    return result


def parse_cpus(value: object) -> int:
    """CPUs as nano-CPUs: ``0.5`` is 500000000."""
    problem = f"expected a number of CPUs like '0.5' or '2', found {_show(value)}"
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ValueError(problem)
    try:
        cpus = Decimal(str(value).strip())
    except InvalidOperation:
        raise ValueError(problem) from None
    if not cpus.is_finite() or cpus < 0 or cpus > 1_000_000:
        raise ValueError(problem)
    nano = cpus * 1_000_000_000
    if nano != nano.to_integral_value():
        raise ValueError(f"{problem} (more precise than 1e-9 CPUs)")
    return int(nano)


@dataclass(frozen=True, slots=True)
class PortEntry:
    target: int
    published: int
    protocol: str
    host_ip: str = ""


def _port_range(text: str, what: str, spec: str) -> tuple[int, int]:
    start, sep, end = text.partition("-")
    try:
        low = int(start)
        high = int(end) if sep else low
    except ValueError:
        raise ValueError(f"invalid {what} {text!r} in port {spec!r}") from None
    if not (1 <= low <= 65535 and 1 <= high <= 65535):
        raise ValueError(f"invalid {what} {text!r} in port {spec!r}: ports are 1-65535")
    if high < low:
        raise ValueError(f"invalid {what} range {text!r} in port {spec!r}: end before start")
    return low, high


def parse_port(spec: str) -> list[PortEntry]:
    """``[ip:][published[-end]:]target[-end][/protocol]``: one entry per port of a range."""
    body, _, protocol = spec.strip().partition("/")
    protocol = (protocol or "tcp").lower()
    if protocol not in ("tcp", "udp", "sctp"):
        raise ValueError(f"invalid protocol {protocol!r} in port {spec!r}: use tcp, udp or sctp")
    parts = body.split(":")
    host_ip, published, target = "", "", parts[-1]
    if len(parts) == 2:
        published = parts[0]
    elif len(parts) >= 3:
        host_ip, published = ":".join(parts[:-2]), parts[-2]
    if not target:
        raise ValueError(f"no container port in {spec!r}")
    host_ip = host_ip.strip("[]")
    if host_ip:
        try:
            ipaddress.ip_address(host_ip)
        except ValueError:
            raise ValueError(f"invalid IP address {host_ip!r} in port {spec!r}") from None
    low, high = _port_range(target, "container port", spec)
    if not published:
        return [PortEntry(p, 0, protocol, host_ip) for p in range(low, high + 1)]
    plow, phigh = _port_range(published, "published port", spec)
    if phigh - plow == high - low:
        return [PortEntry(low + i, plow + i, protocol, host_ip) for i in range(high - low + 1)]
    if low == high:
        return [PortEntry(low, p, protocol, host_ip) for p in range(plow, phigh + 1)]
    raise ValueError(
        f"invalid port {spec!r}: the ranges {published} and {target} have different sizes"
    )


@dataclass(frozen=True, slots=True)
class VolumeEntry:
    type: str
    source: str
    target: str
    read_only: bool = False
    propagation: str = ""
    nocopy: bool = False


_VOLUME_OPTIONS = ("ro", "rw", "nocopy", "z", "Z", "cached", "delegated", "consistent")


def parse_volume(spec: str) -> VolumeEntry:
    """``[source:]target[:options]`` where a source starting with ``.``, ``/`` or ``~`` binds."""
    if not spec:
        raise ValueError("invalid empty volume spec")
    parts = spec.split(":")
    if any(not p for p in parts):
        raise ValueError(f"invalid volume {spec!r}: empty section between colons")
    if len(parts) > 3:
        raise ValueError(f"invalid volume {spec!r}: too many colons")
    source, target, options = ("", parts[0], "") if len(parts) == 1 else [*parts, ""][:3]
    read_only, propagation, nocopy = False, "", False
    for option in filter(None, options.split(",")):
        if option in PROPAGATIONS:
            propagation = option
        elif option in _VOLUME_OPTIONS:
            read_only = option == "ro" or (read_only and option != "rw")
            nocopy = nocopy or option == "nocopy"
        else:
            raise ValueError(
                f"invalid volume {spec!r}: unknown option {option!r} (use ro, rw, nocopy or a "
                "propagation like rshared)"
            )
    kind = "bind" if source[:1] in (".", "/", "~") else "volume"
    if kind == "bind" and nocopy:
        raise ValueError(f"invalid volume {spec!r}: nocopy applies to named volumes only")
    if kind == "volume" and propagation:
        raise ValueError(f"invalid volume {spec!r}: {propagation} applies to bind mounts only")
    return VolumeEntry(kind, source, target, read_only, propagation, nocopy)


def parse_device(spec: str) -> tuple[str, str, str]:
    """``/dev/host[:/dev/container[:permissions]]`` to (host, container, permissions)."""
    parts = spec.split(":")
    if len(parts) > 3 or not parts[0]:
        raise ValueError(f"expected a device like '/dev/ttyUSB0:/dev/ttyUSB0:rwm', found {spec!r}")
    host = parts[0]
    container = parts[1] if len(parts) > 1 and parts[1] else host
    permissions = parts[2] if len(parts) > 2 else "rwm"
    if len(parts) == 2 and parts[1] and set(parts[1]) <= set("rwm"):
        container, permissions = host, parts[1]  # /dev/x:rw
    if not host.startswith("/") or not container.startswith("/"):
        raise ValueError(f"invalid device {spec!r}: device paths must be absolute")
    if not permissions or not set(permissions) <= set("rwm"):
        raise ValueError(f"invalid device {spec!r}: permissions are a combination of r, w and m")
    return host, container, permissions
