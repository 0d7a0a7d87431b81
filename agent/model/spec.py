"""Service specs: what a user asks shoal to run, in Docker Swarm's shapes and names.

Every class is a frozen dataclass with ``to_dict()`` (plain dicts, lists, strings, numbers,
booleans and ``None``; ``bytes`` only where a field is ``bytes``) and a strict
``from_dict(obj)`` that raises :class:`SpecError` naming the key path of the first problem.
Durations are integer nanoseconds, as in Swarm's API. Zero durations and counts in a
:class:`Healthcheck` mean "inherit from the image", as in Docker.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, Self

__all__ = [
    "MILLISECOND",
    "SECOND",
    "BindOptions",
    "ConfigRef",
    "ContainerSpec",
    "DNSConfig",
    "DeviceMapping",
    "Driver",
    "EndpointSpec",
    "Healthcheck",
    "Mount",
    "NetworkAttachment",
    "Placement",
    "Platform",
    "PortConfig",
    "ResourceSpec",
    "Resources",
    "RestartPolicy",
    "SecretRef",
    "ServiceMode",
    "ServiceSpec",
    "Spec",
    "SpecError",
    "TaskSpec",
    "TmpfsOptions",
    "Ulimit",
    "UpdateConfig",
    "VolumeOptions",
]

MILLISECOND = 1_000_000
SECOND = 1_000 * MILLISECOND

ModeKind = Literal["replicated", "global", "replicated-job", "global-job"]
RestartCondition = Literal["none", "on-failure", "any"]
FailureAction = Literal["pause", "continue", "rollback"]
UpdateOrder = Literal["stop-first", "start-first"]
MountType = Literal["bind", "volume", "tmpfs"]
Propagation = Literal["", "private", "rprivate", "shared", "rshared", "slave", "rslave"]
Protocol = Literal["tcp", "udp", "sctp"]
PublishMode = Literal["ingress", "host"]
ResolutionMode = Literal["vip", "dnsrr"]

# Field constraints checked by from_dict (metadata of dataclass fields).
_NONNEG: Mapping[str, Any] = {"min": 0}
_PORT: Mapping[str, Any] = {"min": 1, "max": 65535}
_PUBLISHED: Mapping[str, Any] = {"min": 0, "max": 65535}
_TEXT: Mapping[str, Any] = {"nonempty": True}
_MODE_BITS: Mapping[str, Any] = {"min": 0, "max": 0o7777}
_RATIO: Mapping[str, Any] = {"min": 0.0, "max": 1.0}


class SpecError(ValueError):
    """A spec read from outside (a message, a file) is malformed; ``path`` names the key."""

    def __init__(self, path: str, message: str) -> None:
        self.path = path
        self.message = message
        super().__init__(f"{path}: {message}" if path else message)


class Spec:
    """Base of all spec dataclasses: the generic, strict dict codec."""

    __slots__ = ()
    _hints: ClassVar[dict[type, dict[str, Any]]] = {}

    def to_dict(self) -> dict[str, Any]:
        return {f.name: _encode(getattr(self, f.name)) for f in dataclasses.fields(_dc(self))}

    @classmethod
    def from_dict(cls, obj: object, path: str = "") -> Self:
        if not isinstance(obj, Mapping):
            raise SpecError(path, f"expected a mapping, found {_describe(obj)}")
        hints = Spec._hints.get(cls)
        if hints is None:
            hints = Spec._hints[cls] = typing.get_type_hints(cls)
        fields = {f.name: f for f in dataclasses.fields(_dc(cls))}
        for key in obj:
            if not isinstance(key, str):
                raise SpecError(path, f"expected string keys, found {_describe(key)}")
            if key not in fields:
                raise SpecError(_join(path, key), "unknown key")
        kwargs: dict[str, Any] = {}
        for name, f in fields.items():
            sub = _join(path, name)
            if name in obj:
                kwargs[name] = _decode(hints[name], obj[name], sub, f.metadata)
            elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise SpecError(sub, "required key is missing")
        return cls(**kwargs)


def _dc(obj: object) -> Any:
    return obj


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _describe(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, str):
        return repr(value) if len(value) <= 40 else repr(value[:37] + "...")
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    return f"a value of type {type(value).__name__}"


def _encode(value: object) -> Any:
    if isinstance(value, Spec):
        return value.to_dict()
    if isinstance(value, tuple | list):
        return [_encode(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _encode(v) for k, v in value.items()}
    return value


def _decode(tp: Any, value: object, path: str, meta: Mapping[str, Any]) -> Any:
    origin = typing.get_origin(tp)
    if origin is Literal:
        choices = typing.get_args(tp)
        if not isinstance(value, str) or value not in choices:
            shown = ", ".join(repr(c) for c in choices if c)
            raise SpecError(path, f"expected one of {shown}, found {_describe(value)}")
        return value
    if origin in (types.UnionType, typing.Union):
        if value is None:
            return None
        (inner,) = [a for a in typing.get_args(tp) if a is not type(None)]
        return _decode(inner, value, path, meta)
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise SpecError(path, f"expected a list, found {_describe(value)}")
        item = typing.get_args(tp)[0]
        return tuple(_decode(item, v, f"{path}[{i}]", {}) for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, Mapping):
            raise SpecError(path, f"expected a mapping, found {_describe(value)}")
        item = typing.get_args(tp)[1]
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise SpecError(path, f"expected string keys, found {_describe(k)}")
            out[k] = _decode(item, v, _join(path, k), {})
        return out
    if isinstance(tp, type) and issubclass(tp, Spec):
        return tp.from_dict(value, path)
    return _decode_scalar(tp, value, path, meta)


def _decode_scalar(tp: Any, value: object, path: str, meta: Mapping[str, Any]) -> Any:
    if tp is bool:
        if not isinstance(value, bool):
            raise SpecError(path, f"expected a boolean, found {_describe(value)}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise SpecError(path, f"expected a string, found {_describe(value)}")
        if meta.get("nonempty") and not value:
            raise SpecError(path, "expected a non-empty string")
        return value
    if tp is bytes:
        if not isinstance(value, bytes | bytearray):
            raise SpecError(path, f"expected bytes, found {_describe(value)}")
        return bytes(value)
    number: int | float
    if tp is int:
        if not isinstance(value, int) or isinstance(value, bool):
            raise SpecError(path, f"expected an integer, found {_describe(value)}")
        number = value
    elif tp is float:
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise SpecError(path, f"expected a number, found {_describe(value)}")
        if not math.isfinite(value):
            raise SpecError(path, f"expected a finite number, found {value}")
        number = float(value)
    else:  # pragma: no cover - a field type this codec does not know is a programming error
        raise TypeError(f"unsupported spec field type {tp!r} at {path}")
    low, high = meta.get("min"), meta.get("max")
    if low is not None and number < low:
        raise SpecError(path, f"expected a number >= {low}, found {number}")
    if high is not None and number > high:
        raise SpecError(path, f"expected a number <= {high}, found {number}")
    return number


@dataclass(frozen=True, slots=True, kw_only=True)
class Driver(Spec):
    """A named driver with options (log driver, volume driver)."""

    name: str = field(metadata=_TEXT)
    options: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class BindOptions(Spec):
    propagation: Propagation = ""
    non_recursive: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class VolumeOptions(Spec):
    nocopy: bool = False
    labels: dict[str, str] = field(default_factory=dict)
    driver_config: Driver | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class TmpfsOptions(Spec):
    size_bytes: int = field(default=0, metadata=_NONNEG)
    mode: int = field(default=0, metadata=_MODE_BITS)


@dataclass(frozen=True, slots=True, kw_only=True)
class Mount(Spec):
    """A filesystem mount; ``source`` is empty for anonymous volumes and tmpfs."""

    type: MountType
    target: str = field(metadata=_TEXT)
    source: str = ""
    read_only: bool = False
    bind_options: BindOptions | None = None
    volume_options: VolumeOptions | None = None
    tmpfs_options: TmpfsOptions | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Healthcheck(Spec):
    """``test`` is ("NONE",), ("CMD", arg, ...) or ("CMD-SHELL", command); empty inherits."""

    test: tuple[str, ...] = ()
    interval_ns: int = field(default=0, metadata=_NONNEG)
    timeout_ns: int = field(default=0, metadata=_NONNEG)
    retries: int = field(default=0, metadata=_NONNEG)
    start_period_ns: int = field(default=0, metadata=_NONNEG)
    start_interval_ns: int = field(default=0, metadata=_NONNEG)


@dataclass(frozen=True, slots=True, kw_only=True)
class SecretRef(Spec):
    """A secret given to a container as a file; ``target`` is relative to /run/secrets."""

    source: str = field(metadata=_TEXT)
    target: str = field(metadata=_TEXT)
    secret_id: str = ""
    uid: str = "0"
    gid: str = "0"
    mode: int = field(default=0o444, metadata=_MODE_BITS)


@dataclass(frozen=True, slots=True, kw_only=True)
class ConfigRef(Spec):
    """A config given to a container as a file at absolute path ``target``."""

    source: str = field(metadata=_TEXT)
    target: str = field(metadata=_TEXT)
    config_id: str = ""
    uid: str = "0"
    gid: str = "0"
    mode: int = field(default=0o444, metadata=_MODE_BITS)


@dataclass(frozen=True, slots=True, kw_only=True)
class DeviceMapping(Spec):
    path_on_host: str = field(metadata=_TEXT)
    path_in_container: str = field(metadata=_TEXT)
    cgroup_permissions: str = "rwm"


@dataclass(frozen=True, slots=True, kw_only=True)
class Ulimit(Spec):
    name: str = field(metadata=_TEXT)
    soft: int
    hard: int


@dataclass(frozen=True, slots=True, kw_only=True)
class DNSConfig(Spec):
    nameservers: tuple[str, ...] = ()
    search: tuple[str, ...] = ()
    options: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class ContainerSpec(Spec):
    """What runs in each task. ``command`` overrides the image's entrypoint, ``args`` its cmd."""

    image: str = field(metadata=_TEXT)
    command: tuple[str, ...] | None = None
    args: tuple[str, ...] | None = None
    env: tuple[str, ...] = ()
    labels: dict[str, str] = field(default_factory=dict)
    dir: str = ""
    user: str = ""
    hostname: str = ""
    hosts: tuple[str, ...] = ()
    dns_config: DNSConfig | None = None
    mounts: tuple[Mount, ...] = ()
    healthcheck: Healthcheck | None = None
    stop_signal: str = ""
    stop_grace_period_ns: int | None = field(default=None, metadata=_NONNEG)
    secrets: tuple[SecretRef, ...] = ()
    configs: tuple[ConfigRef, ...] = ()
    devices: tuple[DeviceMapping, ...] = ()
    privileged: bool = False
    init: bool | None = None
    tty: bool = False
    open_stdin: bool = False
    read_only: bool = False
    cap_add: tuple[str, ...] = ()
    cap_drop: tuple[str, ...] = ()
    sysctls: dict[str, str] = field(default_factory=dict)
    ulimits: tuple[Ulimit, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class ResourceSpec(Spec):
    """Zero means "no limit" / "nothing reserved"."""

    nano_cpus: int = field(default=0, metadata=_NONNEG)
    memory_bytes: int = field(default=0, metadata=_NONNEG)
    pids: int = field(default=0, metadata=_NONNEG)


@dataclass(frozen=True, slots=True, kw_only=True)
class Resources(Spec):
    limits: ResourceSpec = field(default_factory=ResourceSpec)
    reservations: ResourceSpec = field(default_factory=ResourceSpec)


@dataclass(frozen=True, slots=True, kw_only=True)
class RestartPolicy(Spec):
    """``max_attempts`` 0 means unlimited; ``window_ns`` 0 means unbounded."""

    condition: RestartCondition = "any"
    delay_ns: int = field(default=5 * SECOND, metadata=_NONNEG)
    max_attempts: int = field(default=0, metadata=_NONNEG)
    window_ns: int = field(default=0, metadata=_NONNEG)


@dataclass(frozen=True, slots=True, kw_only=True)
class Platform(Spec):
    architecture: str = ""
    os: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class Placement(Spec):
    """Constraints like ``node.role==manager``; preferences like ``spread=node.labels.zone``."""

    constraints: tuple[str, ...] = ()
    preferences: tuple[str, ...] = ()
    max_replicas_per_node: int | None = field(default=None, metadata=_NONNEG)
    platforms: tuple[Platform, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class NetworkAttachment(Spec):
    target: str = field(metadata=_TEXT)
    aliases: tuple[str, ...] = ()
    driver_opts: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskSpec(Spec):
    container: ContainerSpec
    resources: Resources = field(default_factory=Resources)
    restart_policy: RestartPolicy = field(default_factory=RestartPolicy)
    placement: Placement = field(default_factory=Placement)
    networks: tuple[NetworkAttachment, ...] = ()
    log_driver: Driver | None = None
    force_update: int = field(default=0, metadata=_NONNEG)


@dataclass(frozen=True, slots=True, kw_only=True)
class ServiceMode(Spec):
    """How many tasks: ``replicas`` for replicated kinds (total completions for jobs).

    Global kinds run one task per eligible node and carry ``replicas`` 0.
    ``max_concurrent`` applies to replicated jobs only (None: as many as ``replicas``).
    """

    kind: ModeKind = "replicated"
    replicas: int = field(default=1, metadata=_NONNEG)
    max_concurrent: int | None = field(default=None, metadata=_NONNEG)


@dataclass(frozen=True, slots=True, kw_only=True)
class UpdateConfig(Spec):
    """How a rolling update (or rollback) proceeds."""

    parallelism: int = field(default=1, metadata=_NONNEG)
    delay_ns: int = field(default=0, metadata=_NONNEG)
    failure_action: FailureAction = "pause"
    monitor_ns: int = field(default=5 * SECOND, metadata=_NONNEG)
    max_failure_ratio: float = field(default=0.0, metadata=_RATIO)
    order: UpdateOrder = "stop-first"


@dataclass(frozen=True, slots=True, kw_only=True)
class PortConfig(Spec):
    """A published port; ``published`` 0 asks the cluster to pick one."""

    target: int = field(metadata=_PORT)
    published: int = field(default=0, metadata=_PUBLISHED)
    protocol: Protocol = "tcp"
    publish_mode: PublishMode = "ingress"
    name: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class EndpointSpec(Spec):
    mode: ResolutionMode = "vip"
    ports: tuple[PortConfig, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class ServiceSpec(Spec):
    """The desired state of one service, as ``docker service create`` would send it."""

    name: str = field(metadata=_TEXT)
    labels: dict[str, str] = field(default_factory=dict)
    task_template: TaskSpec
    mode: ServiceMode = field(default_factory=ServiceMode)
    update_config: UpdateConfig | None = None
    rollback_config: UpdateConfig | None = None
    endpoint_spec: EndpointSpec = field(default_factory=EndpointSpec)
    # How long managers wait, after a node's session ends, before they replace its tasks
    # elsewhere (a flaky link should not reschedule everything). Nomad calls it lost_after.
    disconnect_window_ns: int = field(default=2 * SECOND, metadata=_NONNEG)
    # Move tasks onto a node that joins or returns, to even out the spread (off by default).
    rebalance: bool = False
