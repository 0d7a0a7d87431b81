"""One checked, merged service definition to a :class:`~agent.model.spec.ServiceSpec`.

Conversion follows docker/cli's ``convert`` package: names and labels are namespaced by the
stack, the service name becomes an alias on every network it joins, environment, secrets,
configs, networks and ports are sorted so that redeploying an unchanged file changes nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from agent.model.limits import MAX_NAME, LimitError, check_service_spec
from agent.model.spec import (
    SECOND,
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
    ResourceSpec,
    RestartPolicy,
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
from stacks.files import Files
from stacks.kinds import Ctx, join
from stacks.node import Node, field_map, field_strings, field_value
from stacks.values import parse_bytes

__all__ = ["LABEL_IMAGE", "LABEL_NAMESPACE", "Scope", "build_service"]

LABEL_NAMESPACE = "com.docker.stack.namespace"
LABEL_IMAGE = "com.docker.stack.image"


@dataclass
class Scope:
    """What all services of one stack share while they are converted."""

    stack: str
    definitions: Mapping[str, Mapping[str, Node]]
    files: Files
    environ: Mapping[str, str]
    ctx: Ctx
    used: dict[str, dict[str, None]] = field(
        default_factory=lambda: {"networks": {}, "volumes": {}}
    )
    published: dict[tuple[int, str], str] = field(default_factory=dict)

    def labels(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        return {**(extra or {}), LABEL_NAMESPACE: self.stack}

    def name_of(self, section: str, key: str) -> str:
        """The cluster-wide name of a top-level object: ``name:``, or namespaced."""
        definition = self.definitions[section].get(key)
        if definition is not None:
            if _v(definition, "name"):
                return str(_v(definition, "name"))
            if _v(definition, "external", False):
                return key
        return f"{self.stack}_{key}"


_v = field_value
_strs = field_strings
_map = field_map


def build_service(name: str, service: Node, scope: Scope) -> ServiceSpec | None:
    """The spec of service ``name``, or None when a problem was recorded in ``scope.ctx``."""
    ctx = scope.ctx
    path = join("services", name)
    errors = len(ctx.errors)
    full_name = f"{scope.stack}_{name}"
    if len(full_name) > MAX_NAME:
        ctx.fail(
            service,
            path,
            f"the service name {full_name!r} is longer than {MAX_NAME} "
            "characters; use a shorter stack or service name",
        )
    image = _v(service, "image")
    if image is None:
        ctx.fail(service, path, "missing required key 'image'")
    deploy = service.get("deploy")
    command, args = service.get("entrypoint"), service.get("command")
    container = ContainerSpec(
        image=image or "-",
        command=None if command is None else _strs(service, "entrypoint"),
        args=None if args is None else _strs(service, "command"),
        env=_environment(service, scope),
        labels=scope.labels(_map(service, "labels")),
        dir=_v(service, "working_dir", ""),
        user=_v(service, "user", ""),
        hostname=_v(service, "hostname", ""),
        hosts=tuple(f"{address} {host}" for host, address in _map(service, "extra_hosts").items()),
        dns_config=_dns(service),
        mounts=_mounts(service, path, scope),
        healthcheck=_healthcheck(service.get("healthcheck"), join(path, "healthcheck"), ctx),
        stop_signal=_v(service, "stop_signal", ""),
        stop_grace_period_ns=_v(service, "stop_grace_period"),
        secrets=tuple(_file_refs(service, path, scope, "secrets")),
        configs=tuple(_file_refs(service, path, scope, "configs")),
        devices=_devices(service),
        privileged=_v(service, "privileged", False),
        init=_v(service, "init"),
        tty=_v(service, "tty", False),
        open_stdin=_v(service, "stdin_open", False),
        read_only=_v(service, "read_only", False),
        cap_add=_strs(service, "cap_add"),
        cap_drop=_strs(service, "cap_drop"),
        sysctls=_map(service, "sysctls"),
        ulimits=_ulimits(service),
    )
    logging = service.get("logging")
    task = TaskSpec(
        container=container,
        resources=_resources(deploy),
        restart_policy=_restart_policy(service, deploy),
        placement=Placement(
            constraints=_strs(_sub(deploy, "placement"), "constraints"),
            preferences=_strs(_sub(deploy, "placement"), "preferences"),
            max_replicas_per_node=_v(_sub(deploy, "placement"), "max_replicas_per_node"),
        ),
        networks=_networks(name, service, path, scope),
        log_driver=Driver(name=_v(logging, "driver"), options=_map(logging, "options"))
        if _v(logging, "driver")
        else None,
    )
    spec = ServiceSpec(
        name=full_name,
        labels={**scope.labels(_map(deploy, "labels")), LABEL_IMAGE: image or ""},
        task_template=task,
        mode=_mode(deploy, path, ctx),
        update_config=_update(deploy, "update_config", path, ctx),
        rollback_config=_update(deploy, "rollback_config", path, ctx),
        endpoint_spec=EndpointSpec(
            mode=_v(deploy, "endpoint_mode", "vip"), ports=_ports(name, service, path, scope)
        ),
    )
    if len(ctx.errors) == errors:
        try:
            check_service_spec(spec)
        except LimitError as exc:
            ctx.fail(service, path, str(exc))
    return spec if len(ctx.errors) == errors else None


def _sub(node: Node | None, key: str) -> Node | None:
    return node.get(key) if node is not None else None


def _list(node: Node, key: str) -> list[Node]:
    child = node.get(key)
    return [] if child is None else child.as_list()


def _devices(service: Node) -> tuple[DeviceMapping, ...]:
    return tuple(
        DeviceMapping(
            path_on_host=_v(device, "source"),
            path_in_container=_v(device, "target"),
            cgroup_permissions=_v(device, "permissions"),
        )
        for device in _list(service, "devices")
    )


def _ulimits(service: Node) -> tuple[Ulimit, ...]:
    limits = service.get("ulimits")
    return tuple(
        Ulimit(name=name, soft=_v(limit, "soft"), hard=_v(limit, "hard"))
        for name, limit in sorted(limits.items() if limits is not None else [])
    )


def _environment(service: Node, scope: Scope) -> tuple[str, ...]:
    entries = []
    for key, value in _map(service, "environment").items():
        if value is None:
            value = scope.environ.get(key)
        entries.append(key if value is None else f"{key}={value}")
    return tuple(sorted(entries))


def _dns(service: Node) -> DNSConfig | None:
    dns = DNSConfig(
        nameservers=_strs(service, "dns"),
        search=_strs(service, "dns_search"),
        options=_strs(service, "dns_opt"),
    )
    return dns if dns != DNSConfig() else None


def _healthcheck(check: Node | None, path: str, ctx: Ctx) -> Healthcheck | None:
    if check is None:
        return None
    if _v(check, "disable", False):
        if check.get("test") is not None:
            ctx.fail(check, path, "test and disable can't be set at the same time")
        return Healthcheck(test=("NONE",))
    return Healthcheck(
        test=_strs(check, "test"),
        interval_ns=_v(check, "interval", 0),
        timeout_ns=_v(check, "timeout", 0),
        retries=_v(check, "retries", 0),
        start_period_ns=_v(check, "start_period", 0),
        start_interval_ns=_v(check, "start_interval", 0),
    )


def _mounts(service: Node, path: str, scope: Scope) -> tuple[Mount, ...]:
    mounts: list[Mount] = []
    where = join(path, "volumes")
    for i, volume in enumerate(_list(service, "volumes")):
        mount = _mount(volume, f"{where}[{i}]", scope)
        if mount is not None:
            mounts.append(mount)
    for i, item in enumerate(_list(service, "tmpfs")):
        mount = _tmpfs(item, f"{path}.tmpfs[{i}]", scope.ctx)
        if mount is not None:
            mounts.append(mount)
    seen: set[str] = set()
    for mount in mounts:
        if mount.target in seen:
            scope.ctx.fail(service, where, f"duplicate mount point {mount.target!r}")
        seen.add(mount.target)
    return tuple(mounts)


def _mount(volume: Node, where: str, scope: Scope) -> Mount | None:
    kind, source = _v(volume, "type"), _v(volume, "source", "")
    target, read_only = _v(volume, "target"), _v(volume, "read_only", False)
    if kind == "bind":
        host_path = scope.files.bind_source(volume, where, scope.ctx, source)
        if host_path is None:
            return None
        propagation = _v(_sub(volume, "bind"), "propagation")
        return Mount(
            type="bind",
            source=host_path,
            target=target,
            read_only=read_only,
            bind_options=BindOptions(propagation=propagation) if propagation else None,
        )
    if kind == "tmpfs":
        options = _sub(volume, "tmpfs")
        return Mount(
            type="tmpfs",
            target=target,
            read_only=read_only,
            tmpfs_options=None
            if options is None
            else TmpfsOptions(size_bytes=_v(options, "size", 0), mode=_v(options, "mode", 0)),
        )
    nocopy = _v(_sub(volume, "volume"), "nocopy", False)
    if not source:
        return Mount(
            type="volume",
            target=target,
            read_only=read_only,
            volume_options=VolumeOptions(nocopy=True) if nocopy else None,
        )
    definition = scope.definitions["volumes"].get(source)
    if definition is None:
        scope.ctx.fail(
            volume,
            where,
            f"undefined volume \"{source}\"; define it under the top-level 'volumes' key",
        )
        return None
    scope.used["volumes"][source] = None
    external = _v(definition, "external", False)
    driver, driver_opts = _v(definition, "driver"), _map(definition, "driver_opts")
    volume_options = VolumeOptions(
        nocopy=nocopy,
        labels={} if external else scope.labels(_map(definition, "labels")),
        driver_config=Driver(name=driver or "local", options=driver_opts)
        if (driver or driver_opts) and not external
        else None,
    )
    return Mount(
        type="volume",
        source=scope.name_of("volumes", source),
        target=target,
        read_only=read_only,
        volume_options=volume_options,
    )


def _tmpfs(item: Node, where: str, ctx: Ctx) -> Mount | None:
    """A service-level ``tmpfs`` entry: ``/run`` or ``/run:size=64m,mode=1777``."""
    target, _, options = item.value.partition(":")
    size, mode = 0, 0
    try:
        for option in filter(None, options.split(",")):
            key, _, value = option.partition("=")
            if key == "size":
                size = parse_bytes(value)
            elif key == "mode":
                mode = parse_mode(value)
    except ValueError as exc:
        ctx.fail(item, where, str(exc))
        return None
    if not target.startswith("/"):
        ctx.fail(item, where, f"the target {target!r} must be an absolute path")
        return None
    return Mount(
        type="tmpfs",
        target=target,
        tmpfs_options=TmpfsOptions(size_bytes=size, mode=mode) if size or mode else None,
    )


def _file_refs(service: Node, path: str, scope: Scope, section: str) -> list[Any]:
    what = section[:-1]
    refs: list[SecretRef | ConfigRef] = []
    for ref in _list(service, section):
        source = _v(ref, "source")
        if source not in scope.definitions[section]:
            scope.ctx.fail(
                ref,
                join(path, section),
                f"undefined {what} \"{source}\"; define it under the top-level '{section}' key",
            )
            continue
        name = scope.name_of(section, source)
        common = {
            "source": name,
            "uid": _v(ref, "uid", "0"),
            "gid": _v(ref, "gid", "0"),
            "mode": _v(ref, "mode", 0o444),
        }
        if section == "secrets":
            refs.append(SecretRef(target=_v(ref, "target", source), **common))
        else:
            refs.append(ConfigRef(target=_v(ref, "target", "/" + source), **common))
    return sorted(refs, key=lambda r: (r.source, r.target))


def _networks(name: str, service: Node, path: str, scope: Scope) -> tuple[NetworkAttachment, ...]:
    refs = service.get("networks")
    entries = refs.items() if refs is not None else [("default", service.with_value({}))]
    attachments = []
    for network, ref in entries:
        if network not in scope.definitions["networks"] and network != "default":
            scope.ctx.fail(
                ref,
                join(join(path, "networks"), network),
                f"undefined network \"{network}\"; define it under the top-level 'networks' key",
            )
            continue
        scope.used["networks"][network] = None
        target = scope.name_of("networks", network)
        aliases = _strs(ref, "aliases")
        if target not in ("host", "bridge", "none") and name not in aliases:
            aliases += (name,)
        attachments.append(
            NetworkAttachment(target=target, aliases=aliases, driver_opts=_map(ref, "driver_opts"))
        )
    return tuple(sorted(attachments, key=lambda a: a.target))


def _resources(deploy: Node | None) -> Resources:
    resources = _sub(deploy, "resources")

    def spec(node: Node | None) -> ResourceSpec:
        return ResourceSpec(
            nano_cpus=_v(node, "cpus", 0),
            memory_bytes=_v(node, "memory", 0),
            pids=_v(node, "pids", 0),
        )

    return Resources(
        limits=spec(_sub(resources, "limits")), reservations=spec(_sub(resources, "reservations"))
    )


def _restart_policy(service: Node, deploy: Node | None) -> RestartPolicy:
    policy = _sub(deploy, "restart_policy")
    if policy is not None:
        return RestartPolicy(
            condition=_v(policy, "condition", "any"),
            delay_ns=_v(policy, "delay", 5 * SECOND),
            max_attempts=_v(policy, "max_attempts", 0),
            window_ns=_v(policy, "window", 0),
        )
    restart = service.get("restart")
    if restart is not None:
        return RestartPolicy(
            condition=_v(restart, "condition"), max_attempts=_v(restart, "max_attempts")
        )
    return RestartPolicy()


def _mode(deploy: Node | None, path: str, ctx: Ctx) -> ServiceMode:
    kind = _v(deploy, "mode", "replicated")
    replicas = _sub(deploy, "replicas")
    if kind in ("global", "global-job"):
        if replicas is not None:
            ctx.fail(
                replicas,
                join(path, "deploy.replicas"),
                "replicas can only be used with replicated or replicated-job mode",
            )
        return ServiceMode(kind=kind, replicas=0)
    count = 1 if replicas is None else replicas.value
    return ServiceMode(
        kind=kind, replicas=count, max_concurrent=count if kind == "replicated-job" else None
    )


def _update(deploy: Node | None, key: str, path: str, ctx: Ctx) -> UpdateConfig | None:
    config = _sub(deploy, key)
    if config is None:
        return None
    action = _v(config, "failure_action", "pause")
    if key == "rollback_config" and action == "rollback":
        ctx.fail(
            config,
            join(path, f"deploy.{key}.failure_action"),
            "a rollback cannot roll back; use 'pause' or 'continue'",
        )
    return UpdateConfig(
        parallelism=_v(config, "parallelism", 1),
        delay_ns=_v(config, "delay", 0),
        failure_action=action,
        monitor_ns=_v(config, "monitor", 5 * SECOND),
        max_failure_ratio=_v(config, "max_failure_ratio", 0.0),
        order=_v(config, "order", "stop-first"),
    )


def _ports(name: str, service: Node, path: str, scope: Scope) -> tuple[PortConfig, ...]:
    ports = []
    for port in _list(service, "ports"):
        config = PortConfig(
            target=_v(port, "target"),
            published=_v(port, "published", 0),
            protocol=_v(port, "protocol", "tcp"),
            publish_mode=_v(port, "mode", "ingress"),
        )
        if config.published and config.publish_mode == "ingress":
            key = (config.published, config.protocol)
            owner = scope.published.get(key)
            if owner is not None:
                scope.ctx.fail(
                    port,
                    join(path, "ports"),
                    f"published port {config.published}/{config.protocol} is already "
                    f"used by service {owner!r}",
                )
                continue
            scope.published[key] = name
        ports.append(config)
    return tuple(sorted(ports, key=lambda p: (p.published, p.target, p.protocol)))
