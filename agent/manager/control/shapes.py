"""What `inspect` prints: the store's typed objects in Docker's JSON shapes.

Every function is pure: typed objects (and what the caller looked up for them: the store's
version, the allocator's ports and addresses, who leads) in, plain dicts out. Field names,
nesting and value formats follow Docker's (``CreatedAt`` in RFC 3339 with nanoseconds,
durations in integer nanoseconds, ``omitempty`` fields left out when empty). Fields shoal has
no notion of are left out; what only shoal has is under a ``Shoal`` key.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from agent.manager.store import Config, Network, Node, Secret, Service, Task
from agent.model.spec import (
    ConfigRef,
    ContainerSpec,
    EndpointSpec,
    Mount,
    Placement,
    PortConfig,
    ResourceSpec,
    SecretRef,
    ServiceMode,
    ServiceSpec,
    TaskSpec,
    UpdateConfig,
)
from agent.model.tasks import TaskStatus

__all__ = [
    "ManagerInfo",
    "ServiceCounts",
    "config_shape",
    "docker_time",
    "network_shape",
    "node_shape",
    "secret_shape",
    "service_shape",
    "service_spec_shape",
    "task_shape",
    "task_spec_shape",
]

_ZERO_TIME = "0001-01-01T00:00:00Z"


def docker_time(value: str | float) -> str:
    """A stored stamp (ISO 8601 text, or seconds since the epoch) as Go's RFC3339Nano prints
    it: UTC, ``Z``, nanoseconds without trailing zeros; Go's zero time for none."""
    if isinstance(value, str):
        try:
            when = datetime.fromisoformat(value)
        except ValueError:
            return _ZERO_TIME
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
    elif value > 0:
        when = datetime.fromtimestamp(value, UTC)
    else:
        return _ZERO_TIME
    when = when.astimezone(UTC)
    fraction = f"{when.microsecond * 1000:09d}".rstrip("0")
    return when.strftime("%Y-%m-%dT%H:%M:%S") + (f".{fraction}" if fraction else "") + "Z"


def _meta(ident: str, version: int, created: str, updated: str) -> dict[str, Any]:
    return {
        "ID": ident,
        "Version": {"Index": version},
        "CreatedAt": docker_time(created),
        "UpdatedAt": docker_time(updated or created),
    }


def _some(**fields: Any) -> dict[str, Any]:
    """Go's ``omitempty``: the fields whose value is not empty (None, "", 0, False, [], {})."""
    return {k: v for k, v in fields.items() if v not in (None, "", 0, False, [], {}, ())}


# specs --------------------------------------------------------------------------------------
def _mode(mode: ServiceMode) -> dict[str, Any]:
    if mode.kind == "global":
        return {"Global": {}}
    if mode.kind == "global-job":
        return {"GlobalJob": {}}
    if mode.kind == "replicated-job":
        job = _some(MaxConcurrent=mode.max_concurrent)
        return {"ReplicatedJob": {**job, "TotalCompletions": mode.replicas}}
    return {"Replicated": {"Replicas": mode.replicas}}


def _mount(m: Mount) -> dict[str, Any]:
    out: dict[str, Any] = {"Type": m.type, **_some(Source=m.source), "Target": m.target}
    out.update(_some(ReadOnly=m.read_only))
    if m.bind_options is not None:
        b = m.bind_options
        out["BindOptions"] = _some(Propagation=b.propagation, NonRecursive=b.non_recursive)
    if m.volume_options is not None:
        v = m.volume_options
        driver = v.driver_config
        out["VolumeOptions"] = _some(
            NoCopy=v.nocopy,
            Labels=dict(v.labels),
            DriverConfig=None
            if driver is None
            else {"Name": driver.name, **_some(Options=dict(driver.options))},
        )
    if m.tmpfs_options is not None:
        t = m.tmpfs_options
        out["TmpfsOptions"] = _some(SizeBytes=t.size_bytes, Mode=t.mode)
    return out


def _file(ref: SecretRef | ConfigRef) -> dict[str, Any]:
    return {"Name": ref.target, "UID": ref.uid, "GID": ref.gid, "Mode": ref.mode}


def _container(c: ContainerSpec) -> dict[str, Any]:
    health = c.healthcheck
    dns = c.dns_config
    return {
        "Image": c.image,
        **_some(
            Labels=dict(c.labels),
            Command=list(c.command) if c.command is not None else None,
            Args=list(c.args) if c.args is not None else None,
            Hostname=c.hostname,
            Env=list(c.env),
            Dir=c.dir,
            User=c.user,
            TTY=c.tty,
            OpenStdin=c.open_stdin,
            ReadOnly=c.read_only,
            Mounts=[_mount(m) for m in c.mounts],
            StopSignal=c.stop_signal,
            StopGracePeriod=c.stop_grace_period_ns,
            Healthcheck=None
            if health is None
            else _some(
                Test=list(health.test),
                Interval=health.interval_ns,
                Timeout=health.timeout_ns,
                Retries=health.retries,
                StartPeriod=health.start_period_ns,
                StartInterval=health.start_interval_ns,
            ),
            Hosts=list(c.hosts),
            DNSConfig=None
            if dns is None
            else _some(
                Nameservers=list(dns.nameservers),
                Search=list(dns.search),
                Options=list(dns.options),
            ),
            Secrets=[
                {"File": _file(r), "SecretID": r.secret_id, "SecretName": r.source}
                for r in c.secrets
            ],
            Configs=[
                {"File": _file(r), "ConfigID": r.config_id, "ConfigName": r.source}
                for r in c.configs
            ],
            CapabilityAdd=list(c.cap_add),
            CapabilityDrop=list(c.cap_drop),
            Sysctls=dict(c.sysctls),
            Ulimits=[{"Name": u.name, "Soft": u.soft, "Hard": u.hard} for u in c.ulimits],
        ),
        **({"Init": c.init} if c.init is not None else {}),
    }


def _resources(r: ResourceSpec) -> dict[str, Any]:
    return _some(NanoCPUs=r.nano_cpus, MemoryBytes=r.memory_bytes, Pids=r.pids)


def _placement(p: Placement) -> dict[str, Any]:
    preferences = []
    for pref in p.preferences:
        strategy, _, descriptor = pref.partition("=")
        preferences.append({strategy.capitalize(): {"SpreadDescriptor": descriptor}})
    return _some(
        Constraints=list(p.constraints),
        Preferences=preferences,
        MaxReplicas=p.max_replicas_per_node,
        Platforms=[_some(Architecture=x.architecture, OS=x.os) for x in p.platforms],
    )


def task_spec_shape(t: TaskSpec) -> dict[str, Any]:
    """Docker's TaskTemplate (a service's) or a task's Spec."""
    rp = t.restart_policy
    out: dict[str, Any] = {
        "ContainerSpec": _container(t.container),
        "Resources": {
            "Limits": _resources(t.resources.limits),
            "Reservations": _resources(t.resources.reservations),
        },
        "RestartPolicy": {
            "Condition": rp.condition,
            "Delay": rp.delay_ns,
            "MaxAttempts": rp.max_attempts,
            **_some(Window=rp.window_ns),
        },
        "Placement": _placement(t.placement),
    }
    if t.networks:
        out["Networks"] = [
            {"Target": n.target, **_some(Aliases=list(n.aliases), DriverOpts=dict(n.driver_opts))}
            for n in t.networks
        ]
    if t.log_driver is not None:
        out["LogDriver"] = {"Name": t.log_driver.name, **_some(Options=t.log_driver.options)}
    out["ForceUpdate"] = t.force_update
    return out


def _update_config(u: UpdateConfig) -> dict[str, Any]:
    return {
        "Parallelism": u.parallelism,
        **_some(Delay=u.delay_ns),
        "FailureAction": u.failure_action,
        "Monitor": u.monitor_ns,
        "MaxFailureRatio": u.max_failure_ratio,
        "Order": u.order,
    }


def _port(p: PortConfig) -> dict[str, Any]:
    return {
        **_some(Name=p.name),
        "Protocol": p.protocol,
        "TargetPort": p.target,
        "PublishedPort": p.published,
        "PublishMode": p.publish_mode,
    }


def _endpoint_spec(e: EndpointSpec) -> dict[str, Any]:
    return {"Mode": e.mode, **_some(Ports=[_port(p) for p in e.ports])}


def service_spec_shape(spec: ServiceSpec) -> dict[str, Any]:
    out: dict[str, Any] = {
        "Name": spec.name,
        "Labels": dict(spec.labels),
        "TaskTemplate": task_spec_shape(spec.task_template),
        "Mode": _mode(spec.mode),
    }
    if spec.update_config is not None:
        out["UpdateConfig"] = _update_config(spec.update_config)
    if spec.rollback_config is not None:
        out["RollbackConfig"] = _update_config(spec.rollback_config)
    out["EndpointSpec"] = _endpoint_spec(spec.endpoint_spec)
    return out


def _shoal_spec(spec: ServiceSpec) -> dict[str, Any]:
    """The parts of a service's spec Docker has no field for."""
    c = spec.task_template.container
    return {
        "DisconnectWindow": spec.disconnect_window_ns,
        "Rebalance": spec.rebalance,
        **_some(
            Privileged=c.privileged,
            Devices=[
                {
                    "PathOnHost": d.path_on_host,
                    "PathInContainer": d.path_in_container,
                    "CgroupPermissions": d.cgroup_permissions,
                }
                for d in c.devices
            ],
        ),
    }


# services -------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ServiceCounts:
    """Docker's ServiceStatus: tasks running, wanted, and (jobs) completed."""

    running: int
    desired: int
    completed: int = 0


def service_shape(
    s: Service,
    *,
    version: int,
    ports: Sequence[PortConfig] = (),
    vips: Sequence[tuple[str, str]] = (),
    counts: ServiceCounts | None = None,
    endpoint_errors: Sequence[str] = (),
) -> dict[str, Any]:
    """``ports``: as the allocator published them (a dynamic port resolved); ``vips``:
    (network id, address with prefix) pairs."""
    out = _meta(s.id, version, s.created, s.updated)
    out["Spec"] = service_spec_shape(s.spec)
    if s.previous_spec is not None:
        out["PreviousSpec"] = service_spec_shape(s.previous_spec)
    endpoint: dict[str, Any] = {"Spec": _endpoint_spec(s.spec.endpoint_spec)}
    if ports:
        endpoint["Ports"] = [_port(p) for p in ports]
    if vips:
        endpoint["VirtualIPs"] = [{"NetworkID": n, "Addr": a} for n, a in vips]
    out["Endpoint"] = endpoint
    shoal: dict[str, Any] = {"SpecVersion": s.spec_version, **_shoal_spec(s.spec)}
    u = s.update_status
    if u is not None:
        out["UpdateStatus"] = {
            "State": str(u.state),
            "StartedAt": docker_time(u.started_at),
            **({"CompletedAt": docker_time(u.completed_at)} if u.completed_at else {}),
            "Message": u.message,
        }
        if u.reason:
            shoal["UpdateReason"] = u.reason
    if counts is not None:
        out["ServiceStatus"] = {
            "RunningTasks": counts.running,
            "DesiredTasks": counts.desired,
            "CompletedTasks": counts.completed,
        }
    if endpoint_errors:
        shoal["EndpointErrors"] = list(endpoint_errors)
    out["Shoal"] = shoal
    return out


# tasks ---------------------------------------------------------------------------------------
def _task_status(status: TaskStatus | None, updated: str) -> dict[str, Any]:
    if status is None:
        return {"Timestamp": docker_time(updated), "State": "new", "Message": ""}
    out: dict[str, Any] = {
        "Timestamp": docker_time(status.timestamp or updated),
        "State": status.state.value,
        "Message": status.message,
        **_some(Err=status.err),
    }
    if status.container_id or status.exit_code is not None:
        out["ContainerStatus"] = {
            "ContainerID": status.container_id,
            "ExitCode": status.exit_code or 0,
        }
    return out


def task_shape(t: Task, *, version: int) -> dict[str, Any]:
    out = _meta(t.id, version, t.created, t.updated)
    out["Labels"] = {}
    out["Spec"] = task_spec_shape(t.spec)
    out["ServiceID"] = t.service_id
    if t.slot:
        out["Slot"] = t.slot
    if t.node_id:
        out["NodeID"] = t.node_id
    out["Status"] = _task_status(t.status, t.updated)
    if t.endpoint.ports:
        out["Status"]["PortStatus"] = {"Ports": [_port(p) for p in t.endpoint.ports]}
    out["DesiredState"] = str(t.desired_state)
    shoal: dict[str, Any] = {"SpecVersion": t.spec_version}
    if t.status is not None and t.status.health is not None:
        shoal["Health"] = t.status.health
    out["Shoal"] = shoal
    return out


# nodes ---------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ManagerInfo:
    """A manager as Raft sees it: Docker's ManagerStatus (shoal's managers have no listen
    address: they talk through the broker)."""

    leader: bool
    reachability: str  # "reachable", "unreachable" or "unknown"


def node_shape(n: Node, *, version: int, manager: ManagerInfo | None = None) -> dict[str, Any]:
    out = _meta(n.id, version, n.created, n.updated)
    out["Spec"] = {
        "Labels": dict(n.labels),
        "Role": str(n.role),
        "Availability": str(n.availability),
    }
    desc: Mapping[str, Any] = n.description
    platform = desc.get("platform") or {}
    resources = desc.get("resources") or {}
    engine = desc.get("engine") or {}
    out["Description"] = {
        "Hostname": n.hostname or str(desc.get("hostname", "")),
        "Platform": _some(Architecture=platform.get("arch"), OS=platform.get("os")),
        "Resources": _some(
            NanoCPUs=resources.get("nano_cpus"), MemoryBytes=resources.get("memory_bytes")
        ),
        "Engine": _some(EngineVersion=engine.get("version"), Labels=engine.get("labels")),
    }
    addresses = desc.get("addresses") or []
    out["Status"] = {"State": str(n.status), **_some(Addr=addresses[0] if addresses else "")}
    if manager is not None:
        out["ManagerStatus"] = {
            **_some(Leader=manager.leader),
            "Reachability": manager.reachability,
        }
    out["Shoal"] = _some(
        Driver=engine.get("driver"),
        EngineName=engine.get("name"),
        Addresses=list(addresses),
        NAT=bool(desc.get("nat")),
    )
    return out


# networks, secrets, configs ----------------------------------------------------------------
def network_shape(
    n: Network, *, subnet: str, gateway: str = "", ingress: bool, services: Sequence[str] = ()
) -> dict[str, Any]:
    """As `docker network inspect` prints a swarm network (``Id`` and ``Created`` spelled as
    Docker spells them for networks)."""
    ipam = {"Subnet": subnet, **_some(Gateway=gateway)} if subnet else None
    return {
        "Name": n.name,
        "Id": n.id,
        "Created": docker_time(n.created),
        "Scope": "swarm",
        "Driver": n.driver,
        "EnableIPv6": False,
        "IPAM": {"Driver": "default", "Options": None, "Config": [ipam] if ipam else []},
        "Internal": False,
        "Attachable": n.attachable,
        "Ingress": ingress,
        "Labels": dict(n.labels),
        "Shoal": {"Services": list(services)},
    }


def secret_shape(s: Secret, *, version: int, services: Sequence[str] = ()) -> dict[str, Any]:
    """A secret's data never comes back out (Docker's rule)."""
    out = _meta(s.id, version, s.created, s.updated)
    out["Spec"] = {"Name": s.name, "Labels": dict(s.labels)}
    out["Shoal"] = {"Size": len(s.data), "Services": list(services)}
    return out


def config_shape(c: Config, *, version: int, services: Sequence[str] = ()) -> dict[str, Any]:
    out = _meta(c.id, version, c.created, c.updated)
    out["Spec"] = {
        "Name": c.name,
        "Labels": dict(c.labels),
        "Data": base64.b64encode(c.data).decode(),
    }
    out["Shoal"] = {"Size": len(c.data), "Services": list(services)}
    return out
