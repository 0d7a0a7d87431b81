"""Translate an assignment into Docker Engine's container create body (a pure function)."""

from __future__ import annotations

from typing import Any

from agent.model import Assignment
from agent.model.spec import ContainerSpec, Healthcheck, Mount, PortConfig, TaskSpec
from agent.worker.docker_files import file_mounts
from agent.worker.driver import labels_for, swarm_labels

__all__ = ["DEFAULT_STOP_SIGNAL", "container_config", "host_ports"]

DEFAULT_STOP_SIGNAL = "SIGTERM"


def host_ports(a: Assignment) -> list[PortConfig]:
    """Ports this task publishes on the node itself (``mode: host``).

    Ingress ports are the routing mesh's business, not the container's.
    """
    return [p for p in a.ports if p.publish_mode == "host"]


def container_config(
    a: Assignment, files_dir: str | None = None, resolv_conf: str | None = None
) -> dict[str, Any]:
    """The create body; ``files_dir`` is where the task's secrets and configs were written.

    ``resolv_conf`` is given for a task on shoal's networks: the container then starts with no
    network of the engine's (the node wires its interfaces in), resolves names through that
    file (the node's embedded DNS server), and its host-mode ports are published by the node.
    """
    spec: TaskSpec = a.spec
    c: ContainerSpec = spec.container
    config: dict[str, Any] = {
        "Image": c.image,
        "Labels": {**c.labels, **swarm_labels(a), **labels_for(a)},
        "Env": list(c.env),
        "Tty": c.tty,
        "OpenStdin": c.open_stdin,
        "AttachStdin": False,
        "AttachStdout": False,
        "AttachStderr": False,
    }
    if c.command is not None:
        config["Entrypoint"] = list(c.command)
    if c.args is not None:
        config["Cmd"] = list(c.args)
    if c.dir:
        config["WorkingDir"] = c.dir
    if c.user:
        config["User"] = c.user
    if c.hostname:
        config["Hostname"] = c.hostname
    if c.stop_signal:
        config["StopSignal"] = c.stop_signal
    if c.stop_grace_period_ns is not None:
        config["StopTimeout"] = max(0, -(-c.stop_grace_period_ns // 1_000_000_000))
    if c.healthcheck is not None:
        config["Healthcheck"] = _healthcheck(c.healthcheck)
    ports = host_ports(a) if resolv_conf is None else []
    if ports:
        config["ExposedPorts"] = {f"{p.target}/{p.protocol}": {} for p in ports}
    config["HostConfig"] = _host_config(a, ports, files_dir)
    if resolv_conf is not None:
        config["HostConfig"]["NetworkMode"] = "none"
        config["HostConfig"]["Mounts"].append(
            {"Type": "bind", "Source": resolv_conf, "Target": "/etc/resolv.conf", "ReadOnly": True}
        )
    return config


def _host_config(a: Assignment, ports: list[PortConfig], files_dir: str | None) -> dict[str, Any]:
    c = a.spec.container
    limits = a.spec.resources.limits
    reservations = a.spec.resources.reservations
    host: dict[str, Any] = {
        # shoal restarts tasks itself (by the task's restart policy), never the engine.
        "RestartPolicy": {"Name": "no"},
        "Mounts": [_mount(m) for m in c.mounts]
        + (file_mounts(a, files_dir) if files_dir is not None else []),
        "Privileged": c.privileged,
        "ReadonlyRootfs": c.read_only,
    }
    if c.init is not None:
        host["Init"] = c.init
    if limits.nano_cpus:
        host["NanoCpus"] = limits.nano_cpus
    if limits.memory_bytes:
        host["Memory"] = limits.memory_bytes
    if limits.pids:
        host["PidsLimit"] = limits.pids
    if reservations.memory_bytes:
        host["MemoryReservation"] = reservations.memory_bytes
    if ports:
        bindings: dict[str, list[dict[str, str]]] = {}
        for p in ports:
            key = f"{p.target}/{p.protocol}"
            host_port = str(p.published) if p.published else ""
            bindings.setdefault(key, []).append({"HostIp": "", "HostPort": host_port})
        host["PortBindings"] = bindings
    if c.devices:
        host["Devices"] = [
            {
                "PathOnHost": d.path_on_host,
                "PathInContainer": d.path_in_container,
                "CgroupPermissions": d.cgroup_permissions,
            }
            for d in c.devices
        ]
    if c.hosts:
        host["ExtraHosts"] = _extra_hosts(c.hosts)
    if c.dns_config is not None:
        host["Dns"] = list(c.dns_config.nameservers)
        host["DnsSearch"] = list(c.dns_config.search)
        host["DnsOptions"] = list(c.dns_config.options)
    if c.cap_add:
        host["CapAdd"] = list(c.cap_add)
    if c.cap_drop:
        host["CapDrop"] = list(c.cap_drop)
    if c.sysctls:
        host["Sysctls"] = dict(c.sysctls)
    if c.ulimits:
        host["Ulimits"] = [{"Name": u.name, "Soft": u.soft, "Hard": u.hard} for u in c.ulimits]
    if a.spec.log_driver is not None:
        host["LogConfig"] = {
            "Type": a.spec.log_driver.name,
            "Config": dict(a.spec.log_driver.options),
        }
    return host


def _mount(m: Mount) -> dict[str, Any]:
    out: dict[str, Any] = {"Type": m.type, "Target": m.target, "ReadOnly": m.read_only}
    if m.source:
        out["Source"] = m.source
    if m.type == "bind" and m.bind_options is not None:
        bind: dict[str, Any] = {"NonRecursive": m.bind_options.non_recursive}
        if m.bind_options.propagation:
            bind["Propagation"] = m.bind_options.propagation
        out["BindOptions"] = bind
    if m.type == "volume" and m.volume_options is not None:
        vo = m.volume_options
        volume: dict[str, Any] = {"NoCopy": vo.nocopy, "Labels": dict(vo.labels)}
        if vo.driver_config is not None:
            volume["DriverConfig"] = {
                "Name": vo.driver_config.name,
                "Options": dict(vo.driver_config.options),
            }
        out["VolumeOptions"] = volume
    if m.type == "tmpfs" and m.tmpfs_options is not None:
        tmpfs: dict[str, Any] = {}
        if m.tmpfs_options.size_bytes:
            tmpfs["SizeBytes"] = m.tmpfs_options.size_bytes
        if m.tmpfs_options.mode:
            tmpfs["Mode"] = m.tmpfs_options.mode
        out["TmpfsOptions"] = tmpfs
    return out


def _healthcheck(h: Healthcheck) -> dict[str, Any]:
    out: dict[str, Any] = {"Test": list(h.test)}
    for key, value in (
        ("Interval", h.interval_ns),
        ("Timeout", h.timeout_ns),
        ("Retries", h.retries),
        ("StartPeriod", h.start_period_ns),
        ("StartInterval", h.start_interval_ns),
    ):
        if value:
            out[key] = value
    return out


def _extra_hosts(hosts: tuple[str, ...]) -> list[str]:
    """Swarm's ``"IP name [alias...]"`` lines become Docker's ``"name:IP"`` entries."""
    out: list[str] = []
    for line in hosts:
        parts = line.split()
        if len(parts) >= 2:
            out.extend(f"{name}:{parts[0]}" for name in parts[1:])
        elif ":" in line:  # already Docker's form
            out.append(line)
    return out
