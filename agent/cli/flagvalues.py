"""What the text of a flag means: durations, sizes, addresses, labels, mounts, ports and the rest.

Two kinds of parser live here. The ``parse_*`` functions and :func:`ip_address` are argparse
types (or, for labels, read a repeated flag) of the swarm, node, network, secret and stack
commands. The others read the values of ``service create|update`` flags: each converter takes
the text a user typed and returns the value or raises :class:`ValueError` saying what it
expected; :func:`read_one` and :func:`read_each` take a flag's raw text out of the argparse
namespace and turn such a :class:`ValueError` into a :class:`ShoalError` naming the flag, in
Docker's wording: ``invalid argument "abc" for "--replicas" flag: expected a whole number``.
"""

from __future__ import annotations

import argparse
import csv
import ipaddress
import re
import shlex
from collections.abc import Callable, Iterable, Mapping
from datetime import timedelta
from typing import Any, TypeVar

from agent.model.errors import ShoalError
from agent.model.spec import (
    BindOptions,
    ConfigRef,
    DeviceMapping,
    Driver,
    Mount,
    NetworkAttachment,
    PortConfig,
    SecretRef,
    TmpfsOptions,
    Ulimit,
    VolumeOptions,
)
from stacks.fields import parse_mode
from stacks.values import PROPAGATIONS, parse_bytes, parse_cpus, parse_device, parse_port
from stacks.values import parse_duration as parse_duration_ns

T = TypeVar("T")


_NAME = re.compile(r"[0-9A-Za-z][0-9A-Za-z_-]{0,62}")


_CONSTRAINT = re.compile(r"\s*([A-Za-z0-9_.\-]+)\s*(==|!=)\s*(\S.*?)\s*")


_CONSTRAINT_KEYS = (
    "node.id node.hostname node.role node.platform.os node.platform.arch node.ip".split()
)


_ULIMITS = (
    "core cpu data fsize locks memlock msgqueue nice nofile nproc rss rtprio rttime "
    "sigpending stack"
).split()


# argparse types of the other commands -------------------------------------------------------
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")


def parse_duration(text: str) -> timedelta:
    """Durations as Docker writes them: 90s, 1m30s, 2160h, 10d."""
    pos, total = 0, 0.0
    unit = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
    for m in _DURATION.finditer(text):
        if m.start() != pos:
            break
        total += float(m.group(1)) * unit[m.group(2)]
        pos = m.end()
    if pos != len(text) or not text:
        raise argparse.ArgumentTypeError(f"invalid duration {text!r} (examples: 90s, 1h30m, 2160h)")
    return timedelta(seconds=total)


def parse_addr(text: str, default_port: int = 8883) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep:
        host, port = text, str(default_port)
    host = host.strip("[]") or "0.0.0.0"
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"invalid address {text!r}: expected HOST:PORT")
    return host, int(port)


def metrics_addr(text: str) -> str:
    """``--metrics-listen``: HOST:PORT, or a bare PORT (or :PORT) on the loopback address;
    ``off`` is "" (no endpoint)."""
    if text == "off":
        return ""
    host, sep, port = text.rpartition(":")
    if not sep:
        host, port = "", text
    host = host.strip("[]") or "127.0.0.1"
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"invalid address {text!r}: expected HOST:PORT or PORT")
    return f"{host}:{int(port)}"


def interval_seconds(text: str) -> float:
    """A period in seconds (``30``) or as a duration (``30s``, ``2m``); 0 turns it off."""
    try:
        value = float(text)
    except ValueError:
        value = parse_duration(text).total_seconds()
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"invalid interval {text!r}: seconds, 0 or more")
    return value


def parse_labels(items: list[str] | None, flag: str = "--label") -> dict[str, str]:
    """KEY=VALUE flags (a bare KEY is an empty value), as Docker reads labels."""
    out: dict[str, str] = {}
    for item in items or []:
        key, _, value = item.partition("=")
        if not key:
            raise ShoalError(f'invalid argument "{item}" for "{flag}" flag: expected KEY=VALUE')
        out[key] = value
    return out


def parse_bool(text: str) -> bool:
    if text.lower() in ("true", "1", "yes"):
        return True
    if text.lower() in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, found {text!r}")


def on_off(text: str) -> bool:
    if text.lower() == "on":
        return True
    if text.lower() == "off":
        return False
    raise argparse.ArgumentTypeError(f"expected on or off, found {text!r}")


def discovery_prefix(text: str) -> str:
    """A Home Assistant discovery prefix: one topic level (broker.topics says which)."""
    from broker.errors import BrokerError
    from broker.topics import check_discovery_prefix

    try:
        return check_discovery_prefix(text)
    except BrokerError:
        raise argparse.ArgumentTypeError(
            f"expected one topic level of [A-Za-z0-9_-], 1-64 chars, e.g. homeassistant;"
            f" found {text!r}"
        ) from None


def ip_address(text: str) -> str:
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an IP address") from None


# service flags: reading the namespace ------------------------------------------------------
def flag_of(dest: str) -> str:
    return "--" + dest.replace("_", "-")


def bad_flag(flag: str, value: object, why: str) -> ShoalError:
    return ShoalError(f'invalid argument "{value}" for "{flag}" flag: {why}')


def convert_flag(dest: str, raw: str, convert: Callable[[str], T]) -> T:
    try:
        return convert(raw)
    except ValueError as exc:
        raise bad_flag(flag_of(dest), raw, str(exc)) from None


def read_one(ns: argparse.Namespace, dest: str, convert: Callable[[str], T]) -> T | None:
    raw = getattr(ns, dest, None)
    return None if raw is None else convert_flag(dest, raw, convert)


def read_each(ns: argparse.Namespace, dest: str, convert: Callable[[str], T]) -> list[T]:
    return [convert_flag(dest, raw, convert) for raw in getattr(ns, dest, None) or ()]


def given(**values: Any) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


# service flags: values -------------------------------------------------------------------
def uint(text: str) -> int:
    if not re.fullmatch(r"\s*\d{1,18}\s*", text):
        raise ValueError("expected a whole number")
    return int(text)


def duration(text: str) -> int:
    try:
        return parse_duration_ns(text)
    except ValueError:
        raise ValueError("expected a duration like 10s, 1m30s or 500ms") from None


def byte_size(text: str) -> int:
    try:
        return parse_bytes(text)
    except ValueError:
        raise ValueError("expected a size like 64M or 1G") from None


def cpus(text: str) -> int:
    try:
        return parse_cpus(text)
    except ValueError:
        raise ValueError("expected a number of CPUs like 0.5 or 2") from None


def ratio(text: str) -> float:
    try:
        ratio = float(text)
    except ValueError:
        ratio = -1.0
    if not 0.0 <= ratio <= 1.0:
        raise ValueError("expected a number from 0 to 1")
    return ratio


def choice(*choices: str) -> Callable[[str], Any]:
    def convert(text: str) -> str:
        if text not in choices:
            raise ValueError(f"expected {', '.join(choices[:-1])} or {choices[-1]}")
        return text

    return convert


def boolean(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "t", "true"):
        return True
    if lowered in ("0", "f", "false"):
        return False
    raise ValueError(f"expected true or false, found {text!r}")


def shell_words(text: str) -> tuple[str, ...] | None:
    try:
        return tuple(shlex.split(text)) or None
    except ValueError as exc:
        raise ValueError(f"cannot split it into words: {str(exc).lower()}") from None


def key_value(text: str) -> tuple[str, str]:
    key, _, value = text.partition("=")
    if not key.strip():
        raise ValueError("expected KEY=VALUE with a non-empty KEY")
    return key.strip(), value


def strict_key_value(text: str) -> tuple[str, str]:
    if "=" not in text:
        raise ValueError("expected KEY=VALUE")
    return key_value(text)


def _fields(text: str) -> list[tuple[str, str | None]]:
    """CSV ``key=value`` fields, as Docker reads --mount and --publish; bare keys map to None."""
    out: list[tuple[str, str | None]] = []
    for item in next(csv.reader([text]), []):
        key, eq, value = item.partition("=")
        out.append((key.strip().lower(), value if eq else None))
    return out


def _valued(key: str, value: str | None) -> str:
    if value is None:
        raise ValueError(f"field {key!r} needs a value ({key}=...)")
    return value


def _port_number(text: str, low: int) -> int:
    if not text.strip().isdigit() or not low <= int(text) <= 65535:
        raise ValueError(f"expected a port number from {low} to 65535, found {text!r}")
    return int(text)


def service_name(text: str) -> str:
    if not _NAME.fullmatch(text):
        raise ValueError(
            "a service name is 1 to 63 letters, digits, '-' or '_', starting with a letter "
            "or a digit"
        )
    return text


# service flags: list items ---------------------------------------------------------------
def env_entry(text: str, environ: Mapping[str, str]) -> str | None:
    key, eq, _ = text.partition("=")
    if not key:
        raise ValueError("expected KEY=VALUE or KEY")
    if eq:
        return text
    value = environ.get(key)
    return None if value is None else f"{key}={value}"


def env_file(path: str, environ: Mapping[str, str]) -> list[str]:
    """Docker's ``--env-file`` format: ``KEY=VALUE`` lines, ``#`` comments, bare ``KEY``."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise bad_flag("--env-file", path, f"cannot read it: {reason}") from None
    entries = []
    for number, raw in enumerate(text.removeprefix("\ufeff").splitlines(), start=1):
        line = raw.lstrip()
        if not line or line.startswith("#"):
            continue
        key, eq, value = line.partition("=")
        if not key or any(c.isspace() for c in key):
            raise bad_flag("--env-file", path, f"line {number}: invalid variable name {key!r}")
        if eq:
            entries.append(f"{key}={value}")
        elif key in environ:
            entries.append(f"{key}={environ[key]}")
    return entries


def mount(text: str) -> Mount:
    kind: Any = "volume"
    propagation: Any = ""
    source = target = driver = ""
    read_only = nocopy = non_recursive = False
    labels: dict[str, str] = {}
    driver_opts: dict[str, str] = {}
    size = mode = 0
    used: set[str] = set()
    for key, value in _fields(text):
        if key in ("readonly", "ro"):
            read_only = True if value is None else boolean(value)
            continue
        if key == "volume-nocopy":
            nocopy = True if value is None else boolean(value)
        elif key == "bind-nonrecursive":
            non_recursive = True if value is None else boolean(value)
        elif key == "type":
            kind = choice("bind", "volume", "tmpfs")(_valued(key, value))
        elif key in ("source", "src"):
            source = _valued(key, value)
        elif key in ("target", "dst", "destination"):
            target = _valued(key, value)
        elif key == "consistency":
            _valued(key, value)
        elif key == "bind-propagation":
            propagation = choice(*PROPAGATIONS)(_valued(key, value))
        elif key == "volume-label":
            labels.update([key_value(_valued(key, value))])
        elif key == "volume-driver":
            driver = _valued(key, value)
        elif key == "volume-opt":
            driver_opts.update([strict_key_value(_valued(key, value))])
        elif key == "tmpfs-size":
            size = byte_size(_valued(key, value))
        elif key == "tmpfs-mode":
            mode = parse_mode(_valued(key, value))
        else:
            raise ValueError(f"unknown field {key!r}")
        used.add(key.partition("-")[0])
    mixed = sorted(used & {"bind", "volume", "tmpfs"} - {kind})
    if mixed:
        raise ValueError(f"cannot mix '{mixed[0]}-*' options with mount type '{kind}'")
    if not target:
        raise ValueError("a target=/path/in/container is required")
    if not target.startswith("/"):
        raise ValueError(f"the target {target!r} is not an absolute path")
    if kind == "bind" and not source.startswith("/"):
        raise ValueError("a bind mount needs a source=/absolute/host/path")
    if kind == "tmpfs" and source:
        raise ValueError("a tmpfs mount takes no source")
    bind = BindOptions(propagation=propagation, non_recursive=non_recursive)
    volume = VolumeOptions(
        nocopy=nocopy,
        labels=labels,
        driver_config=Driver(name=driver or "local", options=driver_opts)
        if driver or driver_opts
        else None,
    )
    tmpfs = TmpfsOptions(size_bytes=size, mode=mode)
    return Mount(
        type=kind,
        source=source,
        target=target,
        read_only=read_only,
        bind_options=bind if bind != BindOptions() else None,
        volume_options=volume if volume != VolumeOptions() else None,
        tmpfs_options=tmpfs if tmpfs != TmpfsOptions() else None,
    )


def port_configs(text: str) -> list[PortConfig]:
    if "=" not in text:
        entries = parse_port(text)
        if entries[0].host_ip:
            raise ValueError("a host IP is not supported for service ports")
        return [
            PortConfig(**given(target=e.target, published=e.published, protocol=e.protocol))
            for e in entries
        ]
    values: dict[str, Any] = {}
    for key, value in _fields(text):
        value = _valued(key, value)
        if key == "target":
            values["target"] = _port_number(value, 1)
        elif key == "published":
            values["published"] = _port_number(value, 0)
        elif key == "protocol":
            values["protocol"] = choice("tcp", "udp", "sctp")(value.lower())
        elif key == "mode":
            values["publish_mode"] = choice("ingress", "host")(value.lower())
        else:
            raise ValueError(f"unknown field {key!r} (use target, published, protocol, mode)")
    if "target" not in values:
        raise ValueError("target=PORT is required")
    return [PortConfig(**values)]


def _file_ref(text: str) -> dict[str, Any]:
    values: dict[str, Any] = {}
    if "=" not in text:
        values["source"] = text
    else:
        for key, value in _fields(text):
            value = _valued(key, value)
            if key in ("source", "src"):
                values["source"] = value
            elif key in ("target", "uid", "gid"):
                values[key] = value
            elif key == "mode":
                values["mode"] = parse_mode(value)
            else:
                raise ValueError(f"unknown field {key!r} (use source, target, uid, gid, mode)")
    if not values.get("source"):
        raise ValueError("source=NAME is required")
    return values


def secret(text: str) -> SecretRef:
    values = _file_ref(text)
    return SecretRef(**{"target": values["source"], **values})


def config(text: str) -> ConfigRef:
    values = _file_ref(text)
    return ConfigRef(**{"target": "/" + values["source"], **values})


def network(text: str) -> NetworkAttachment:
    if "=" not in text:
        if not text:
            raise ValueError("expected a network name")
        return NetworkAttachment(target=text)
    target, aliases, opts = "", [], dict[str, str]()
    for key, value in _fields(text):
        value = _valued(key, value)
        if key in ("name", "target"):
            target = value
        elif key == "alias":
            aliases.append(value)
        elif key == "driver-opt":
            opts.update([strict_key_value(value)])
        else:
            raise ValueError(f"unknown field {key!r} (use name, alias, driver-opt)")
    if not target:
        raise ValueError("name=NETWORK is required")
    return NetworkAttachment(target=target, aliases=tuple(aliases), driver_opts=opts)


def device(text: str) -> DeviceMapping:
    host, container, permissions = parse_device(text)
    return DeviceMapping(
        path_on_host=host, path_in_container=container, cgroup_permissions=permissions
    )


def constraint(text: str) -> str:
    match = _CONSTRAINT.fullmatch(text)
    if match is None:
        raise ValueError("expected a constraint like node.role==worker or node.labels.zone!=east")
    key = match.group(1)
    if key not in _CONSTRAINT_KEYS and not key.startswith(("node.labels.", "engine.labels.")):
        raise ValueError(
            f"unknown attribute {key!r}; use {', '.join(_CONSTRAINT_KEYS)}, node.labels.* "
            "or engine.labels.*"
        )
    return f"{key}{match.group(2)}{match.group(3)}"


def preference(text: str) -> str:
    strategy, eq, arg = text.partition("=")
    if strategy != "spread" or not eq or not arg:
        raise ValueError("expected spread=ATTRIBUTE, like spread=node.labels.zone")
    return text


def nameserver(text: str) -> str:
    return str(ipaddress.ip_address(text.strip()))


def nonempty(text: str) -> str:
    if not text.strip():
        raise ValueError("expected a non-empty value")
    return text.strip()


def host_entry(text: str) -> str:
    name, _, address = text.partition("=" if "=" in text else ":")
    address = address.strip("[]")
    if address != "host-gateway":
        try:
            ipaddress.ip_address(address)
        except ValueError:
            raise ValueError("expected HOST:IP, like db:10.0.0.5") from None
    if not name or any(c.isspace() for c in name):
        raise ValueError("expected HOST:IP, like db:10.0.0.5")
    return f"{address} {name}"


def ulimit(text: str) -> Ulimit:
    name, _, limits = text.partition("=")
    if name not in _ULIMITS:
        raise ValueError(f"expected NAME=SOFT[:HARD] where NAME is one of {', '.join(_ULIMITS)}")
    soft, _, hard = limits.partition(":")
    if not re.fullmatch(r"-?\d{1,18}", soft) or not re.fullmatch(r"(-?\d{1,18})?", hard):
        raise ValueError("expected NAME=SOFT[:HARD] with whole numbers, like nofile=1024:2048")
    low, high = int(soft), int(hard or soft)
    if low > high:
        raise ValueError(f"the soft limit {low} is above the hard limit {high}")
    return Ulimit(name=name, soft=low, hard=high)


def capability(text: str) -> str:
    cap = text.strip().upper()
    if not re.fullmatch(r"[A-Z_]+", cap):
        raise ValueError("expected a capability like NET_ADMIN or ALL")
    return cap if cap == "ALL" or cap.startswith("CAP_") else "CAP_" + cap


def caps(add: Iterable[str], drop: Iterable[str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Docker's effective capabilities: ALL wins, a capability both added and dropped is moot."""
    added, dropped = set(add), set(drop)
    added = {"ALL"} if "ALL" in added else added
    dropped = {"ALL"} if "ALL" in dropped else dropped
    both = added & dropped
    return tuple(sorted(added - both)), tuple(sorted(dropped - both))
