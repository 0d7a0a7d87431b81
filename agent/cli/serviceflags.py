"""The flags of ``shoal service create`` and ``shoal service update``, to and from a ServiceSpec.

Flags keep Docker's names and meanings. argparse only collects them: every value stays the
string the user typed (``None`` when the flag was not given, a list for repeatable flags), and
:func:`spec_from_create` and :func:`apply_update` convert them, raising :class:`ShoalError` with
Docker's wording, ``invalid argument "abc" for "--replicas" flag: expected a whole number``.

``service update`` changes only what its flags name. Its ``--x-rm`` removals apply before its
``--x-add`` additions, so ``--mount-rm /data --mount-add type=volume,target=/data`` replaces the
mount at ``/data``; an addition replaces the entry it matches (same key, target or path).
"""

from __future__ import annotations

import argparse
import csv
import ipaddress
import os
import random
import re
import shlex
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Any, TypeVar

from agent.errors import ShoalError
from agent.limits import check_service_spec
from agent.spec import (
    BindOptions,
    ConfigRef,
    ContainerSpec,
    DeviceMapping,
    DNSConfig,
    Driver,
    EndpointSpec,
    Healthcheck,
    Mount,
    NetworkAttachment,
    Placement,
    PortConfig,
    Resources,
    SecretRef,
    ServiceMode,
    ServiceSpec,
    TaskSpec,
    TmpfsOptions,
    Ulimit,
    UpdateConfig,
    VolumeOptions,
)
from stacks.fields import parse_mode
from stacks.values import (
    PROPAGATIONS,
    parse_bytes,
    parse_cpus,
    parse_device,
    parse_duration,
    parse_port,
)

__all__ = [
    "add_create_flags",
    "add_update_flags",
    "apply_update",
    "random_name",
    "spec_from_create",
]

T = TypeVar("T")

MODES = ("replicated", "global", "replicated-job", "global-job")
_GLOBAL = ("global", "global-job")
_JOBS = ("replicated-job", "global-job")
_NAME = re.compile(r"[0-9A-Za-z][0-9A-Za-z_-]{0,62}")
_CONSTRAINT = re.compile(r"\s*([A-Za-z0-9_.\-]+)\s*(==|!=)\s*(\S.*?)\s*")
_CONSTRAINT_KEYS = (
    "node.id node.hostname node.role node.platform.os node.platform.arch node.ip".split()
)
_ULIMITS = (
    "core cpu data fsize locks memlock msgqueue nice nofile nproc rss rtprio rttime "
    "sigpending stack"
).split()
_ADJECTIVES = (
    "amber bold brave bright calm clever cosmic crisp deep eager fair fast fierce gentle "
    "golden happy hidden jolly keen kind lively lucky merry misty nimble noble quick quiet "
    "rapid silent silver sleek smooth snug steady stormy sunny swift tidal tranquil vivid "
    "wandering warm wild wise witty zesty"
).split()
_NOUNS = (
    "anchovy barracuda bass bream carp cod coral dolphin eel flounder grouper gudgeon haddock "
    "halibut herring jellyfish kelp krill mackerel manta marlin minnow mullet narwhal octopus "
    "orca perch pike plankton pollock ray roach salmon sardine shad shrimp smelt snapper sole "
    "sprat squid sturgeon tarpon trout tuna turbot urchin wahoo whiting"
).split()


# flags -------------------------------------------------------------------------------------
_SHARED: tuple[tuple[tuple[str, ...], str, str], ...] = (
    (("-w", "--workdir"), "DIR", "working directory inside the container"),
    (("-u", "--user"), "USER", "username or UID (<name|uid>[:<group|gid>])"),
    (("--hostname",), "NAME", "container hostname"),
    (("--entrypoint",), "CMD", "override the image's ENTRYPOINT (a shell-quoted string)"),
    (("--replicas",), "N", "number of tasks (replicated modes; default 1)"),
    (("--max-concurrent",), "N", "job tasks to run at once (default: --replicas)"),
    (("--replicas-max-per-node",), "N", "most tasks per node (0: unlimited)"),
    (("--reserve-cpu",), "CPUS", "CPUs to reserve, like 0.5"),
    (("--reserve-memory",), "BYTES", "memory to reserve, like 64M"),
    (("--limit-cpu",), "CPUS", "CPU limit, like 1.5"),
    (("--limit-memory",), "BYTES", "memory limit, like 512M"),
    (("--limit-pids",), "N", "most processes (0: unlimited)"),
    (("--restart-condition",), "COND", "restart on none, on-failure or any (default any)"),
    (("--restart-delay",), "DURATION", "delay between restart attempts (default 5s)"),
    (("--restart-max-attempts",), "N", "restarts before giving up (0: unlimited)"),
    (("--restart-window",), "DURATION", "window used to count restart attempts"),
    (("--stop-signal",), "SIGNAL", "signal that stops the container"),
    (("--stop-grace-period",), "DURATION", "wait before killing a stopping container"),
    (("--endpoint-mode",), "MODE", "vip or dnsrr (default vip)"),
    (("--health-cmd",), "CMD", "shell command that checks health"),
    (("--health-interval",), "DURATION", "time between checks"),
    (("--health-timeout",), "DURATION", "longest a check may run"),
    (("--health-retries",), "N", "failures in a row that make a task unhealthy"),
    (("--health-start-period",), "DURATION", "start-up time when failures do not count"),
    (("--health-start-interval",), "DURATION", "time between checks during the start period"),
    (("--log-driver",), "NAME", "logging driver"),
    (
        ("--disconnect-window",),
        "DURATION",
        "how long a node may be disconnected before its tasks are replaced (default 2s)",
    ),
)
_UPDATE_FLAGS = (
    ("parallelism", "N", "tasks {0} at once (0: all; default 1)"),
    ("delay", "DURATION", "delay between {0} batches"),
    ("failure-action", "ACTION", "on failure: {1} (default pause)"),
    ("monitor", "DURATION", "time to watch each {0} task for failure (default 5s)"),
    ("max-failure-ratio", "RATIO", "failure rate to tolerate, 0 to 1"),
    ("order", "ORDER", "stop-first or start-first"),
)
_BOOLS = (
    (("--privileged",), "give the containers extended privileges (devices need it)"),
    (("--init",), "run an init process inside the containers"),
    (("--read-only",), "mount the containers' root filesystems read-only"),
    (("-t", "--tty"), "allocate a pseudo-TTY"),
)
_CREATE_LISTS = (
    (("-e", "--env"), "KEY=VALUE", "set an environment variable (KEY alone: from this shell)"),
    (("--env-file",), "FILE", "read environment variables from a file"),
    (("--label",), "KEY=VALUE", "service label"),
    (("--container-label",), "KEY=VALUE", "container label"),
    (("--mount",), "SPEC", "mount: type=bind|volume|tmpfs,source=...,target=...[,readonly]"),
    (("-p", "--publish"), "PORT", "publish a port: 8080:80[/udp] or published=8080,target=80"),
    (("--constraint",), "EXPR", "placement constraint, like node.role==worker"),
    (("--placement-pref",), "PREF", "placement preference, like spread=node.labels.zone"),
    (("--network",), "NETWORK", "network to attach: NAME or name=NAME,alias=ALIAS"),
    (("--device",), "DEVICE", "host device: /dev/x[:/dev/y[:rwm]] (needs --privileged)"),
    (("--dns",), "IP", "DNS server"),
    (("--dns-search",), "DOMAIN", "DNS search domain"),
    (("--dns-option",), "OPTION", "DNS option"),
    (("--host",), "HOST:IP", "add a line to /etc/hosts"),
    (("--secret",), "SECRET", "secret to expose: NAME or source=NAME,target=FILE"),
    (("--config",), "CONFIG", "config to expose: NAME or source=NAME,target=/PATH"),
    (("--sysctl",), "KEY=VALUE", "kernel parameter"),
    (("--ulimit",), "NAME=SOFT[:HARD]", "ulimit, like nofile=1024:2048"),
)
_UPDATE_LISTS = (
    ("env", "KEY=VALUE", "KEY", "environment variable"),
    ("label", "KEY=VALUE", "KEY", "service label"),
    ("container-label", "KEY=VALUE", "KEY", "container label"),
    ("constraint", "EXPR", "EXPR", "placement constraint"),
    ("placement-pref", "PREF", "PREF", "placement preference"),
    ("mount", "SPEC", "TARGET", "mount (removed by target)"),
    ("publish", "PORT", "PORT", "published port (removed by target port)"),
    ("secret", "SECRET", "NAME", "secret"),
    ("config", "CONFIG", "NAME", "config"),
    ("network", "NETWORK", "NAME", "network"),
    ("device", "DEVICE", "PATH", "device"),
    ("dns", "IP", "IP", "DNS server"),
    ("dns-search", "DOMAIN", "DOMAIN", "DNS search domain"),
    ("dns-option", "OPTION", "OPTION", "DNS option"),
    ("host", "HOST:IP", "HOST", "/etc/hosts entry"),
    ("sysctl", "KEY=VALUE", "KEY", "kernel parameter"),
    ("ulimit", "NAME=SOFT[:HARD]", "NAME", "ulimit"),
)


def _add_shared(parser: argparse.ArgumentParser) -> None:
    for names, metavar, text in _SHARED:
        parser.add_argument(*names, metavar=metavar, help=text)
    for kind, verb in (("update", "updated"), ("rollback", "rolled back")):
        actions = "pause, continue or rollback" if kind == "update" else "pause or continue"
        for suffix, metavar, text in _UPDATE_FLAGS:
            parser.add_argument(
                f"--{kind}-{suffix}", metavar=metavar, help=text.format(verb, actions)
            )
    for names, text in _BOOLS:
        parser.add_argument(*names, action=argparse.BooleanOptionalAction, help=text)
    parser.add_argument(
        "--no-healthcheck", action="store_const", const=True, help="disable the image's check"
    )
    parser.add_argument(
        "--rebalance",
        action=argparse.BooleanOptionalAction,
        help="move tasks onto nodes that join or return, to even out the spread (default off)",
    )
    for names, metavar, text in (
        (("--cap-add",), "CAP", "add a Linux capability"),
        (("--cap-drop",), "CAP", "drop a Linux capability"),
        (("--log-opt",), "KEY=VALUE", "logging driver option"),
    ):
        parser.add_argument(*names, action="append", default=[], metavar=metavar, help=text)
    parser.add_argument(
        "-d", "--detach", action="store_true", help="return at once, without waiting"
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="print no progress")


def add_create_flags(parser: argparse.ArgumentParser) -> None:
    """The flags of ``service create`` and its ``IMAGE [COMMAND] [ARG...]`` (dest ``args``)."""
    parser.add_argument("--name", metavar="NAME", help="service name (default: a random one)")
    parser.add_argument("--mode", metavar="MODE", help=f"{', '.join(MODES)} (default replicated)")
    _add_shared(parser)
    for names, metavar, text in _CREATE_LISTS:
        parser.add_argument(*names, action="append", default=[], metavar=metavar, help=text)
    parser.add_argument("image", metavar="IMAGE")
    parser.add_argument("args", nargs=argparse.REMAINDER, help="command and arguments")


def add_update_flags(parser: argparse.ArgumentParser) -> None:
    """The flags of ``service update`` and its ``SERVICE`` (dest ``service``)."""
    parser.add_argument("--image", metavar="IMAGE", help="new image")
    parser.add_argument("--args", metavar="ARGS", help="new command arguments (shell-quoted)")
    parser.add_argument("--force", action="store_true", help="replace the tasks even unchanged")
    parser.add_argument("--rollback", action="store_true", help="go back to the previous spec")
    _add_shared(parser)
    for flag, metavar, key, text in _UPDATE_LISTS:
        parser.add_argument(
            f"--{flag}-add", action="append", default=[], metavar=metavar, help=f"add a {text}"
        )
        parser.add_argument(
            f"--{flag}-rm", action="append", default=[], metavar=key, help=f"remove a {text}"
        )
    parser.add_argument("service", metavar="SERVICE")


# values ------------------------------------------------------------------------------------
def _flag(dest: str) -> str:
    return "--" + dest.replace("_", "-")


def _bad(flag: str, value: object, why: str) -> ShoalError:
    return ShoalError(f'invalid argument "{value}" for "{flag}" flag: {why}')


def _convert(dest: str, raw: str, convert: Callable[[str], T]) -> T:
    try:
        return convert(raw)
    except ValueError as exc:
        raise _bad(_flag(dest), raw, str(exc)) from None


def _get(ns: argparse.Namespace, dest: str, convert: Callable[[str], T]) -> T | None:
    raw = getattr(ns, dest, None)
    return None if raw is None else _convert(dest, raw, convert)


def _each(ns: argparse.Namespace, dest: str, convert: Callable[[str], T]) -> list[T]:
    return [_convert(dest, raw, convert) for raw in getattr(ns, dest, None) or ()]


def _given(**values: Any) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


def _uint(text: str) -> int:
    if not re.fullmatch(r"\s*\d{1,18}\s*", text):
        raise ValueError("expected a whole number")
    return int(text)


def _duration(text: str) -> int:
    try:
        return parse_duration(text)
    except ValueError:
        raise ValueError("expected a duration like 10s, 1m30s or 500ms") from None


def _bytes(text: str) -> int:
    try:
        return parse_bytes(text)
    except ValueError:
        raise ValueError("expected a size like 64M or 1G") from None


def _cpus(text: str) -> int:
    try:
        return parse_cpus(text)
    except ValueError:
        raise ValueError("expected a number of CPUs like 0.5 or 2") from None


def _ratio(text: str) -> float:
    try:
        ratio = float(text)
    except ValueError:
        ratio = -1.0
    if not 0.0 <= ratio <= 1.0:
        raise ValueError("expected a number from 0 to 1")
    return ratio


def _choice(*choices: str) -> Callable[[str], Any]:
    def convert(text: str) -> str:
        if text not in choices:
            raise ValueError(f"expected {', '.join(choices[:-1])} or {choices[-1]}")
        return text

    return convert


def _bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "t", "true"):
        return True
    if lowered in ("0", "f", "false"):
        return False
    raise ValueError(f"expected true or false, found {text!r}")


def _shell(text: str) -> tuple[str, ...] | None:
    try:
        return tuple(shlex.split(text)) or None
    except ValueError as exc:
        raise ValueError(f"cannot split it into words: {str(exc).lower()}") from None


def _key_value(text: str) -> tuple[str, str]:
    key, _, value = text.partition("=")
    if not key.strip():
        raise ValueError("expected KEY=VALUE with a non-empty KEY")
    return key.strip(), value


def _strict_key_value(text: str) -> tuple[str, str]:
    if "=" not in text:
        raise ValueError("expected KEY=VALUE")
    return _key_value(text)


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


def _name(text: str) -> str:
    if not _NAME.fullmatch(text):
        raise ValueError(
            "a service name is 1 to 63 letters, digits, '-' or '_', starting with a letter "
            "or a digit"
        )
    return text


def random_name(rng: random.Random) -> str:
    """A name for a service created without ``--name``, like ``brave-herring``."""
    return f"{rng.choice(_ADJECTIVES)}-{rng.choice(_NOUNS)}"


# list items --------------------------------------------------------------------------------
def _env_entry(text: str, environ: Mapping[str, str]) -> str | None:
    key, eq, _ = text.partition("=")
    if not key:
        raise ValueError("expected KEY=VALUE or KEY")
    if eq:
        return text
    value = environ.get(key)
    return None if value is None else f"{key}={value}"


def _env_file(path: str, environ: Mapping[str, str]) -> list[str]:
    """Docker's ``--env-file`` format: ``KEY=VALUE`` lines, ``#`` comments, bare ``KEY``."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise _bad("--env-file", path, f"cannot read it: {reason}") from None
    entries = []
    for number, raw in enumerate(text.removeprefix("\ufeff").splitlines(), start=1):
        line = raw.lstrip()
        if not line or line.startswith("#"):
            continue
        key, eq, value = line.partition("=")
        if not key or any(c.isspace() for c in key):
            raise _bad("--env-file", path, f"line {number}: invalid variable name {key!r}")
        if eq:
            entries.append(f"{key}={value}")
        elif key in environ:
            entries.append(f"{key}={environ[key]}")
    return entries


def _mount(text: str) -> Mount:
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
            read_only = True if value is None else _bool(value)
            continue
        if key == "volume-nocopy":
            nocopy = True if value is None else _bool(value)
        elif key == "bind-nonrecursive":
            non_recursive = True if value is None else _bool(value)
        elif key == "type":
            kind = _choice("bind", "volume", "tmpfs")(_valued(key, value))
        elif key in ("source", "src"):
            source = _valued(key, value)
        elif key in ("target", "dst", "destination"):
            target = _valued(key, value)
        elif key == "consistency":
            _valued(key, value)
        elif key == "bind-propagation":
            propagation = _choice(*PROPAGATIONS)(_valued(key, value))
        elif key == "volume-label":
            labels.update([_key_value(_valued(key, value))])
        elif key == "volume-driver":
            driver = _valued(key, value)
        elif key == "volume-opt":
            driver_opts.update([_strict_key_value(_valued(key, value))])
        elif key == "tmpfs-size":
            size = _bytes(_valued(key, value))
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


def _ports(text: str) -> list[PortConfig]:
    if "=" not in text:
        entries = parse_port(text)
        if entries[0].host_ip:
            raise ValueError("a host IP is not supported for service ports")
        return [
            PortConfig(**_given(target=e.target, published=e.published, protocol=e.protocol))
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
            values["protocol"] = _choice("tcp", "udp", "sctp")(value.lower())
        elif key == "mode":
            values["publish_mode"] = _choice("ingress", "host")(value.lower())
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


def _secret(text: str) -> SecretRef:
    values = _file_ref(text)
    return SecretRef(**{"target": values["source"], **values})


def _config(text: str) -> ConfigRef:
    values = _file_ref(text)
    return ConfigRef(**{"target": "/" + values["source"], **values})


def _network(text: str) -> NetworkAttachment:
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
            opts.update([_strict_key_value(value)])
        else:
            raise ValueError(f"unknown field {key!r} (use name, alias, driver-opt)")
    if not target:
        raise ValueError("name=NETWORK is required")
    return NetworkAttachment(target=target, aliases=tuple(aliases), driver_opts=opts)


def _device(text: str) -> DeviceMapping:
    host, container, permissions = parse_device(text)
    return DeviceMapping(
        path_on_host=host, path_in_container=container, cgroup_permissions=permissions
    )


def _constraint(text: str) -> str:
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


def _preference(text: str) -> str:
    strategy, eq, arg = text.partition("=")
    if strategy != "spread" or not eq or not arg:
        raise ValueError("expected spread=ATTRIBUTE, like spread=node.labels.zone")
    return text


def _nameserver(text: str) -> str:
    return str(ipaddress.ip_address(text.strip()))


def _nonempty(text: str) -> str:
    if not text.strip():
        raise ValueError("expected a non-empty value")
    return text.strip()


def _host(text: str) -> str:
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


def _ulimit(text: str) -> Ulimit:
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


def _capability(text: str) -> str:
    cap = text.strip().upper()
    if not re.fullmatch(r"[A-Z_]+", cap):
        raise ValueError("expected a capability like NET_ADMIN or ALL")
    return cap if cap == "ALL" or cap.startswith("CAP_") else "CAP_" + cap


def _caps(add: Iterable[str], drop: Iterable[str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Docker's effective capabilities: ALL wins, a capability both added and dropped is moot."""
    added, dropped = set(add), set(drop)
    added = {"ALL"} if "ALL" in added else added
    dropped = {"ALL"} if "ALL" in dropped else dropped
    both = added & dropped
    return tuple(sorted(added - both)), tuple(sorted(dropped - both))


# editing -----------------------------------------------------------------------------------
def _edit(
    current: Iterable[T],
    drop: Callable[[T], bool],
    add: Iterable[T],
    same: Callable[[T, T], bool],
) -> tuple[T, ...]:
    """Remove the entries ``drop`` selects, then add each new one, replacing what it matches."""
    kept = [item for item in current if not drop(item)]
    for new in add:
        for i, old in enumerate(kept):
            if same(old, new):
                kept[i] = new
                break
        else:
            kept.append(new)
    return tuple(kept)


def _edit_map(
    current: Mapping[str, str], drop: Iterable[str], add: Iterable[tuple[str, str]]
) -> dict[str, str]:
    out = {k: v for k, v in current.items() if k not in set(drop)}
    out.update(add)
    return out


def _unique(items: Sequence[T], key: Callable[[T], object], flag: str, what: str) -> None:
    seen: set[object] = set()
    for item in items:
        if key(item) in seen:
            raise ShoalError(f'invalid "{flag}" flags: {what} {key(item)!r} is given twice')
        seen.add(key(item))


def _env(entries: Iterable[str]) -> tuple[str, ...]:
    """One entry per variable; a later value wins, as with Docker."""
    by_key: dict[str, str] = {}
    for entry in entries:
        key = entry.partition("=")[0]
        by_key.pop(key, None)
        by_key[key] = entry
    return tuple(by_key.values())


def _env_key(entry: str) -> str:
    return entry.partition("=")[0]


def _same_env(a: str, b: str) -> bool:
    return _env_key(a) == _env_key(b)


def _keys(ns: argparse.Namespace, dest: str) -> list[str]:
    return [raw.partition("=")[0].strip() for raw in getattr(ns, dest, None) or ()]


# shared scalars ----------------------------------------------------------------------------
def _update_config(current: UpdateConfig | None, ns: argparse.Namespace, kind: str) -> Any:
    actions = ("pause", "continue", "rollback") if kind == "update" else ("pause", "continue")
    changes = _given(
        parallelism=_get(ns, f"{kind}_parallelism", _uint),
        delay_ns=_get(ns, f"{kind}_delay", _duration),
        failure_action=_get(ns, f"{kind}_failure_action", _choice(*actions)),
        monitor_ns=_get(ns, f"{kind}_monitor", _duration),
        max_failure_ratio=_get(ns, f"{kind}_max_failure_ratio", _ratio),
        order=_get(ns, f"{kind}_order", _choice("stop-first", "start-first")),
    )
    return replace(current or UpdateConfig(), **changes) if changes else current


def _healthcheck(current: Healthcheck | None, ns: argparse.Namespace) -> Healthcheck | None:
    command = getattr(ns, "health_cmd", None)
    timing = _given(
        interval_ns=_get(ns, "health_interval", _duration),
        timeout_ns=_get(ns, "health_timeout", _duration),
        retries=_get(ns, "health_retries", _uint),
        start_period_ns=_get(ns, "health_start_period", _duration),
        start_interval_ns=_get(ns, "health_start_interval", _duration),
    )
    if getattr(ns, "no_healthcheck", None):
        if command is not None or timing:
            raise ShoalError("--no-healthcheck conflicts with --health-* options")
        return Healthcheck(test=("NONE",))
    if command is None and not timing:
        return current
    check = current or Healthcheck()
    if check.test[:1] == ("NONE",):
        check = replace(check, test=())
    if command is not None:
        check = replace(check, test=("CMD-SHELL", command) if command else ())
    check = replace(check, **timing)
    return None if check == Healthcheck() else check


def _log_driver(current: Driver | None, ns: argparse.Namespace) -> Driver | None:
    name = getattr(ns, "log_driver", None)
    options = dict(_each(ns, "log_opt", _strict_key_value))
    if name is None:
        if not options:
            return current
        if current is None:
            raise _bad("--log-opt", ns.log_opt[0], "give the --log-driver these options are for")
        name = current.name
    return Driver(name=name, options=options) if name else None


def _apply_shared(spec: ServiceSpec, ns: argparse.Namespace) -> ServiceSpec:
    """The flags create and update share, each replacing the current value when given."""
    task = spec.task_template
    container = replace(
        task.container,
        **_given(
            dir=getattr(ns, "workdir", None),
            user=getattr(ns, "user", None),
            hostname=getattr(ns, "hostname", None),
            stop_signal=getattr(ns, "stop_signal", None),
            stop_grace_period_ns=_get(ns, "stop_grace_period", _duration),
            privileged=getattr(ns, "privileged", None),
            init=getattr(ns, "init", None),
            read_only=getattr(ns, "read_only", None),
            tty=getattr(ns, "tty", None),
        ),
    )
    if getattr(ns, "entrypoint", None) is not None:
        container = replace(container, command=_get(ns, "entrypoint", _shell))
    container = replace(container, healthcheck=_healthcheck(container.healthcheck, ns))
    limits = _given(
        nano_cpus=_get(ns, "limit_cpu", _cpus),
        memory_bytes=_get(ns, "limit_memory", _bytes),
        pids=_get(ns, "limit_pids", _uint),
    )
    reservations = _given(
        nano_cpus=_get(ns, "reserve_cpu", _cpus), memory_bytes=_get(ns, "reserve_memory", _bytes)
    )
    restart = _given(
        condition=_get(ns, "restart_condition", _choice("none", "on-failure", "any")),
        delay_ns=_get(ns, "restart_delay", _duration),
        max_attempts=_get(ns, "restart_max_attempts", _uint),
        window_ns=_get(ns, "restart_window", _duration),
    )
    placement = task.placement
    per_node = _get(ns, "replicas_max_per_node", _uint)
    if per_node is not None:
        placement = replace(placement, max_replicas_per_node=per_node or None)
    task = replace(
        task,
        container=container,
        resources=Resources(
            limits=replace(task.resources.limits, **limits),
            reservations=replace(task.resources.reservations, **reservations),
        ),
        restart_policy=replace(task.restart_policy, **restart),
        placement=placement,
        log_driver=_log_driver(task.log_driver, ns),
    )
    endpoint = _given(mode=_get(ns, "endpoint_mode", _choice("vip", "dnsrr")))
    service = _given(
        disconnect_window_ns=_get(ns, "disconnect_window", _duration),
        rebalance=getattr(ns, "rebalance", None),
    )
    return replace(
        spec,
        **service,
        task_template=task,
        update_config=_update_config(spec.update_config, ns, "update"),
        rollback_config=_update_config(spec.rollback_config, ns, "rollback"),
        endpoint_spec=replace(spec.endpoint_spec, **endpoint),
    )


def _mode(current: ServiceMode, ns: argparse.Namespace) -> ServiceMode:
    replicas = _get(ns, "replicas", _uint)
    concurrent = _get(ns, "max_concurrent", _uint)
    if replicas is not None:
        if current.kind in _GLOBAL:
            raise _bad(
                "--replicas",
                ns.replicas,
                "replicas can only be used with replicated or replicated-job mode",
            )
        current = replace(current, replicas=replicas)
    if concurrent is not None:
        if current.kind != "replicated-job":
            raise _bad(
                "--max-concurrent",
                ns.max_concurrent,
                "max-concurrent can only be used with replicated-job mode",
            )
        current = replace(current, max_concurrent=concurrent)
    return current


def _check(spec: ServiceSpec, update: bool) -> ServiceSpec:
    """Rules across flags, checked on the finished spec (Swarm's own service validation)."""
    add = "-add" if update else ""
    check_service_spec(spec)
    container, endpoint = spec.task_template.container, spec.endpoint_spec
    _unique(container.mounts, lambda m: m.target, f"--mount{add}", "mount target")
    _unique(container.secrets, lambda s: s.target, f"--secret{add}", "secret target")
    _unique(container.configs, lambda c: c.target, f"--config{add}", "config target")
    published = [p for p in endpoint.ports if p.published]
    _unique(published, lambda p: f"{p.published}/{p.protocol}", f"--publish{add}", "port")
    if endpoint.mode == "dnsrr" and any(p.publish_mode == "ingress" for p in endpoint.ports):
        raise _bad(
            "--endpoint-mode",
            "dnsrr",
            "ports published in ingress mode need vip; publish them with mode=host",
        )
    if spec.mode.kind in _GLOBAL and spec.task_template.placement.max_replicas_per_node:
        raise _bad(
            "--replicas-max-per-node",
            spec.task_template.placement.max_replicas_per_node,
            "replicas-max-per-node can only be used with replicated or replicated-job mode",
        )
    if spec.mode.kind in _JOBS and (spec.update_config or spec.rollback_config):
        raise ShoalError(
            f"--update-* and --rollback-* flags do not apply to jobs (mode {spec.mode.kind})"
        )
    return spec


# create ------------------------------------------------------------------------------------
def spec_from_create(
    ns: argparse.Namespace,
    *,
    environ: Mapping[str, str] | None = None,
    rng: random.Random | None = None,
) -> ServiceSpec:
    """The spec ``service create`` asks for; ``environ`` serves ``-e KEY`` and env files."""
    environ = os.environ if environ is None else environ
    name = _get(ns, "name", _name) or random_name(rng or random.Random())
    image = str(ns.image).strip()
    if not image:
        raise ShoalError('invalid argument "" for IMAGE: expected an image like nginx:1.27')
    kind: Any = _get(ns, "mode", _choice(*MODES)) or "replicated"
    mode = ServiceMode(kind=kind, replicas=0 if kind in _GLOBAL else 1)
    mode = _mode(mode, ns)
    if kind == "replicated-job" and mode.max_concurrent is None:
        mode = replace(mode, max_concurrent=mode.replicas)
    env = [e for path in getattr(ns, "env_file", None) or () for e in _env_file(path, environ)]
    env += [e for e in _each(ns, "env", lambda t: _env_entry(t, environ)) if e is not None]
    cap_add, cap_drop = _caps(_each(ns, "cap_add", _capability), _each(ns, "cap_drop", _capability))
    dns = DNSConfig(
        nameservers=tuple(_each(ns, "dns", _nameserver)),
        search=tuple(_each(ns, "dns_search", _nonempty)),
        options=tuple(_each(ns, "dns_option", _nonempty)),
    )
    container = ContainerSpec(
        image=image,
        args=tuple(getattr(ns, "args", None) or ()) or None,
        env=_env(env),
        labels=dict(_each(ns, "container_label", _key_value)),
        hosts=tuple(_each(ns, "host", _host)),
        dns_config=dns if dns != DNSConfig() else None,
        mounts=tuple(_each(ns, "mount", _mount)),
        secrets=tuple(_each(ns, "secret", _secret)),
        configs=tuple(_each(ns, "config", _config)),
        devices=tuple(_each(ns, "device", _device)),
        cap_add=cap_add,
        cap_drop=cap_drop,
        sysctls=dict(_each(ns, "sysctl", _strict_key_value)),
        ulimits=tuple(_each(ns, "ulimit", _ulimit)),
    )
    ports = [p for raw in _each(ns, "publish", _ports) for p in raw]
    task = TaskSpec(
        container=container,
        placement=Placement(
            constraints=tuple(dict.fromkeys(_each(ns, "constraint", _constraint))),
            preferences=tuple(_each(ns, "placement_pref", _preference)),
        ),
        networks=tuple(_each(ns, "network", _network)),
    )
    spec = ServiceSpec(
        name=name,
        labels=dict(_each(ns, "label", _key_value)),
        task_template=task,
        mode=mode,
        endpoint_spec=EndpointSpec(ports=tuple(dict.fromkeys(ports))),
    )
    return _check(_apply_shared(spec, ns), update=False)


# update ------------------------------------------------------------------------------------
def apply_update(
    spec: ServiceSpec, ns: argparse.Namespace, *, environ: Mapping[str, str] | None = None
) -> ServiceSpec:
    """``spec`` changed as ``service update`` flags say; what they do not name stays as is."""
    environ = os.environ if environ is None else environ
    task = spec.task_template
    networks_rm = set(getattr(ns, "network_rm", None) or ())
    task = replace(
        task,
        container=_update_container(task.container, ns, environ),
        placement=replace(
            task.placement,
            constraints=_edit_list(task.placement.constraints, ns, "constraint", _constraint),
            preferences=_edit_list(task.placement.preferences, ns, "placement_pref", _preference),
        ),
        networks=_edit(
            task.networks,
            lambda n: n.target in networks_rm,
            _each(ns, "network_add", _network),
            lambda a, b: a.target == b.target,
        ),
        force_update=task.force_update + (1 if getattr(ns, "force", False) else 0),
    )
    ports_rm = [
        (p.target, p.protocol, p.publish_mode) for r in _each(ns, "publish_rm", _ports) for p in r
    ]
    ports = _edit(
        spec.endpoint_spec.ports,
        lambda p: (p.target, p.protocol, p.publish_mode) in ports_rm,
        [p for raw in _each(ns, "publish_add", _ports) for p in raw],
        lambda a, b: a == b,
    )
    spec = replace(
        spec,
        labels=_edit_map(spec.labels, _keys(ns, "label_rm"), _each(ns, "label_add", _key_value)),
        task_template=task,
        mode=_mode(spec.mode, ns),
        endpoint_spec=replace(spec.endpoint_spec, ports=ports),
    )
    return _check(_apply_shared(spec, ns), update=True)


def _update_container(
    c: ContainerSpec, ns: argparse.Namespace, environ: Mapping[str, str]
) -> ContainerSpec:
    if getattr(ns, "image", None) is not None:
        c = replace(c, image=_convert("image", ns.image, _nonempty))
    if getattr(ns, "args", None) is not None:
        c = replace(c, args=_get(ns, "args", _shell))
    caps_add, caps_drop = _caps(
        _each(ns, "cap_add", _capability), _each(ns, "cap_drop", _capability)
    )
    if caps_add or caps_drop:
        c = replace(
            c,
            cap_add=tuple(sorted(set(c.cap_add) - set(caps_drop) | set(caps_add))),
            cap_drop=tuple(sorted(set(c.cap_drop) - set(caps_add) | set(caps_drop))),
        )
    env_rm = set(_keys(ns, "env_rm"))
    env_add = [e for e in _each(ns, "env_add", lambda t: _env_entry(t, environ)) if e]
    mounts_add = _each(ns, "mount_add", _mount)
    secrets_add = _each(ns, "secret_add", _secret)
    configs_add = _each(ns, "config_add", _config)
    _unique(mounts_add, lambda m: m.target, "--mount-add", "mount target")
    _unique(secrets_add, lambda s: s.target, "--secret-add", "secret target")
    _unique(configs_add, lambda c: c.target, "--config-add", "config target")
    mounts_rm = set(getattr(ns, "mount_rm", None) or ())
    secrets_rm = set(getattr(ns, "secret_rm", None) or ())
    configs_rm = set(getattr(ns, "config_rm", None) or ())
    devices_rm = set(_each(ns, "device_rm", _nonempty))
    hosts_rm = {r.partition(":")[0] for r in _each(ns, "host_rm", _nonempty)}
    ulimits_rm = set(_keys(ns, "ulimit_rm"))
    dns = c.dns_config or DNSConfig()
    dns = DNSConfig(
        nameservers=_edit_list(dns.nameservers, ns, "dns", _nameserver),
        search=_edit_list(dns.search, ns, "dns_search", _nonempty),
        options=_edit_list(dns.options, ns, "dns_option", _nonempty),
    )
    return replace(
        c,
        env=_env(_edit(c.env, lambda e: _env_key(e) in env_rm, env_add, _same_env)),
        labels=_edit_map(
            c.labels, _keys(ns, "container_label_rm"), _each(ns, "container_label_add", _key_value)
        ),
        mounts=_edit(
            c.mounts, lambda m: m.target in mounts_rm, mounts_add, lambda a, b: a.target == b.target
        ),
        secrets=_edit(
            c.secrets,
            lambda s: s.source in secrets_rm,
            secrets_add,
            lambda a, b: a.target == b.target,
        ),
        configs=_edit(
            c.configs,
            lambda s: s.source in configs_rm,
            configs_add,
            lambda a, b: a.target == b.target,
        ),
        devices=_edit(
            c.devices,
            lambda d: bool({d.path_on_host, d.path_in_container} & devices_rm),
            _each(ns, "device_add", _device),
            lambda a, b: a.path_in_container == b.path_in_container,
        ),
        hosts=_edit(
            c.hosts,
            lambda h: bool(set(h.split()[1:2]) & hosts_rm),
            _each(ns, "host_add", _host),
            lambda a, b: a == b,
        ),
        dns_config=dns if dns != DNSConfig() else None,
        sysctls=_edit_map(
            c.sysctls, _keys(ns, "sysctl_rm"), _each(ns, "sysctl_add", _strict_key_value)
        ),
        ulimits=_edit(
            c.ulimits,
            lambda u: u.name in ulimits_rm,
            _each(ns, "ulimit_add", _ulimit),
            lambda a, b: a.name == b.name,
        ),
    )


def _edit_list(
    current: tuple[str, ...], ns: argparse.Namespace, dest: str, convert: Callable[[str], str]
) -> tuple[str, ...]:
    removed = set(_each(ns, f"{dest}_rm", convert))
    return _edit(current, lambda x: x in removed, _each(ns, f"{dest}_add", convert), str.__eq__)
