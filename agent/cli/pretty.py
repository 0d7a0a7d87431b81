"""`service inspect --pretty` and `node inspect --pretty`: Docker's human layouts, rendered from
the Docker-shaped JSON the managers return (only the parts shoal has)."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from agent.cli.output import human_duration
from agent.model.stamps import parse_stamp

__all__ = ["go_duration", "human_bytes", "human_since", "node_pretty", "service_pretty"]


def go_duration(ns: int) -> str:
    """Nanoseconds as Go's ``time.Duration`` prints them: 0s, 500ms, 5s, 1m30s, 1h0m0s."""
    if ns == 0:
        return "0s"
    sign, ns = ("-", -ns) if ns < 0 else ("", ns)
    if ns < 1_000_000_000:
        for unit, size in (("ms", 1_000_000), ("µs", 1_000), ("ns", 1)):
            if ns >= size:
                return sign + _trim(ns / size) + unit
    seconds = ns / 1e9
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    text = _trim(round(secs, 9)) + "s"
    if hours:
        return f"{sign}{int(hours)}h{int(minutes)}m{text}"
    if minutes:
        return f"{sign}{int(minutes)}m{text}"
    return sign + text


def _trim(x: float) -> str:
    return f"{x:.9f}".rstrip("0").rstrip(".")


def human_bytes(size: float) -> str:
    """Docker's ``units.BytesSize``: binary units, four significant digits (512MiB)."""
    units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"]
    i = 0
    while size >= 1024 and i < len(units) - 1:
        size /= 1024
        i += 1
    return f"{size:.4g}{units[i]}"


def human_since(stamp: str, now: float) -> str:
    """Docker's ``units.HumanDuration`` of the time since ``stamp``, with "ago"."""
    return f"{human_duration(max(now - parse_stamp(stamp, now), 0))} ago"


def _labels(labels: Mapping[str, str]) -> list[str]:
    if not labels:
        return []
    return ["Labels:", *(f" - {k}={v}" if v else f" - {k}" for k, v in sorted(labels.items()))]


def _mode(mode: Mapping[str, Any]) -> list[str]:
    if "Global" in mode:
        return ["Service Mode:\tGlobal"]
    if "GlobalJob" in mode:
        return ["Service Mode:\tGlobal Job"]
    if "ReplicatedJob" in mode:
        job = mode["ReplicatedJob"]
        lines = ["Service Mode:\tReplicated Job"]
        if job.get("MaxConcurrent"):
            lines.append(f" Max Concurrent:\t{job['MaxConcurrent']}")
        return [*lines, f" Total Completions:\t{job.get('TotalCompletions', 0)}"]
    replicas = (mode.get("Replicated") or {}).get("Replicas")
    return ["Service Mode:\tReplicated", *([f" Replicas:\t{replicas}"] if replicas else [])]


def _rolling(title: str, order_label: str, cfg: Mapping[str, Any]) -> list[str]:
    lines = [f"{title}:", f" Parallelism:\t{cfg.get('Parallelism', 0)}"]
    if cfg.get("Delay"):
        lines.append(f" Delay:\t\t{go_duration(cfg['Delay'])}")
    lines.append(f" On failure:\t{cfg.get('FailureAction', '')}")
    if cfg.get("Monitor"):
        lines.append(f" Monitoring Period: {go_duration(cfg['Monitor'])}")
    lines.append(f" Max failure ratio: {cfg.get('MaxFailureRatio', 0):g}")
    lines.append(f" {order_label}:      {cfg.get('Order', '')}")
    return lines


def _update_status(o: Mapping[str, Any], now: float) -> list[str]:
    u = o.get("UpdateStatus")
    if not u:
        return []
    lines = ["UpdateStatus:", f" State:\t\t{u.get('State', '')}"]
    if u.get("StartedAt"):
        lines.append(f" Started:\t{human_since(u['StartedAt'], now)}")
    if u.get("CompletedAt") and u.get("State") in ("completed", "rollback_completed"):
        lines.append(f" Completed:\t{human_since(u['CompletedAt'], now)}")
    return [*lines, f" Message:\t{u.get('Message', '')}"]


def _placement(p: Mapping[str, Any]) -> list[str]:
    lines = ["Placement:"]
    if p.get("Constraints"):
        lines.append(f" Constraints:\t[{' '.join(p['Constraints'])}]")
    if p.get("Preferences"):
        prefs = [
            f"{kind}={value.get('SpreadDescriptor', '')}"
            for pref in p["Preferences"]
            for kind, value in pref.items()
        ]
        lines.append(f" Preferences:   [{' '.join(prefs)}]")
    if p.get("MaxReplicas"):
        lines.append(f" Max Replicas Per Node:   {p['MaxReplicas']}")
    return lines


def _container(c: Mapping[str, Any]) -> list[str]:
    lines = ["ContainerSpec:", f" Image:\t\t{c.get('Image', '')}"]
    if c.get("Args"):
        lines.append(" Args:\t\t" + "".join(f"{a} " for a in c["Args"]))
    if c.get("Env"):
        lines.append(" Env:\t\t" + "".join(f"{e} " for e in c["Env"]))
    if c.get("Dir"):
        lines.append(f" Dir:\t\t{c['Dir']}")
    if "Init" in c:
        lines.append(f" Init:\t\t{'true' if c['Init'] else 'false'}")
    if c.get("User"):
        lines.append(f" User: {c['User']}")
    if c.get("CapabilityAdd") or c.get("CapabilityDrop"):
        lines.append("Capabilities:")
        if c.get("CapabilityAdd"):
            lines.append(f" Add: {', '.join(c['CapabilityAdd'])}")
        if c.get("CapabilityDrop"):
            lines.append(f" Drop: {', '.join(c['CapabilityDrop'])}")
    if c.get("Mounts"):
        lines.append("Mounts:")
        for m in c["Mounts"]:
            lines += [
                f" Target:\t{m.get('Target', '')}",
                f"  Source:\t{m.get('Source', '')}",
                f"  ReadOnly:\t{'true' if m.get('ReadOnly') else 'false'}",
                f"  Type:\t\t{m.get('Type', '')}",
            ]
    for title, key in (("Configs", "ConfigName"), ("Secrets", "SecretName")):
        if c.get(title):
            lines.append(f"{title}:")
            for ref in c[title]:
                lines += [f" Target:\t{ref['File']['Name']}", f"  Source:\t{ref[key]}"]
    return lines


def _resources(r: Mapping[str, Any]) -> list[str]:
    lines: list[str] = []
    for title, key in (("Reservations", "Reservations"), ("Limits", "Limits")):
        part = r.get(key) or {}
        shown = []
        if part.get("NanoCPUs"):
            shown.append(f"  CPU:\t\t{part['NanoCPUs'] / 1e9:g}")
        if part.get("MemoryBytes"):
            shown.append(f"  Memory:\t{human_bytes(part['MemoryBytes'])}")
        if part.get("Pids"):
            shown.append(f"  PIDs:\t\t{part['Pids']}")
        if shown:
            lines += [f" {title}:", *shown]
    return ["Resources:", *lines] if lines else []


def _ports(ports: list[Mapping[str, Any]]) -> list[str]:
    if not ports:
        return []
    lines = ["Ports:"]
    for p in ports:
        lines += [
            f" PublishedPort = {p.get('PublishedPort', 0)}",
            f"  Protocol = {p.get('Protocol', '')}",
            f"  TargetPort = {p.get('TargetPort', 0)}",
            f"  PublishMode = {p.get('PublishMode', '')}",
        ]
    return lines


def service_pretty(o: Mapping[str, Any], now: float | None = None) -> str:
    """Docker's `service inspect --pretty` layout of one Docker-shaped service."""
    now = time.time() if now is None else now
    spec = o.get("Spec") or {}
    tt = spec.get("TaskTemplate") or {}
    lines = ["", f"ID:\t\t{o.get('ID', '')}", f"Name:\t\t{spec.get('Name', '')}"]
    lines += _labels(spec.get("Labels") or {})
    lines += _mode(spec.get("Mode") or {})
    lines += _update_status(o, now)
    lines += _placement(tt.get("Placement") or {})
    if spec.get("UpdateConfig"):
        lines += _rolling("UpdateConfig", "Update order", spec["UpdateConfig"])
    if spec.get("RollbackConfig"):
        lines += _rolling("RollbackConfig", "Rollback order", spec["RollbackConfig"])
    lines += _container(tt.get("ContainerSpec") or {})
    log_driver = tt.get("LogDriver")
    if log_driver:
        lines += ["Log Driver:", f" Name:\t\t{log_driver.get('Name', '')}"]
        options = log_driver.get("Options") or {}
        if options:
            lines.append(" LogOpts:")
            lines += [f"  {k}:\t{v}" for k, v in sorted(options.items())]
    lines += _resources(tt.get("Resources") or {})
    networks = [n.get("Target", "") for n in tt.get("Networks") or []]
    if networks:
        lines.append("Networks:" + "".join(f" {n}" for n in networks) + " ")
    endpoint = spec.get("EndpointSpec") or {}
    lines.append(f"Endpoint Mode:\t{endpoint.get('Mode', 'vip')}")
    ports = (o.get("Endpoint") or {}).get("Ports") or endpoint.get("Ports") or []
    lines += _ports(ports)
    return "\n".join(lines)


def node_pretty(o: Mapping[str, Any]) -> str:
    """Docker's `node inspect --pretty` layout of one Docker-shaped node."""
    spec = o.get("Spec") or {}
    desc = o.get("Description") or {}
    status = o.get("Status") or {}
    platform = desc.get("Platform") or {}
    res = desc.get("Resources") or {}
    lines = [f"ID:\t\t\t{o.get('ID', '')}"]
    lines += _labels(spec.get("Labels") or {})
    lines += [
        f"Hostname:\t\t{desc.get('Hostname', '')}",
        "Status:",
        f" State:\t\t\t{str(status.get('State', '')).capitalize()}",
        f" Availability:\t\t{str(spec.get('Availability', '')).capitalize()}",
    ]
    if status.get("Addr"):
        lines.append(f" Address:\t\t{status['Addr']}")
    manager = o.get("ManagerStatus")
    if manager:
        lines += [
            "Manager Status:",
            f" Raft Status:\t\t{str(manager.get('Reachability', '')).capitalize()}",
            f" Leader:\t\t{'Yes' if manager.get('Leader') else 'No'}",
        ]
    lines += [
        "Platform:",
        f" Operating System:\t{platform.get('OS', '')}",
        f" Architecture:\t\t{platform.get('Architecture', '')}",
        "Resources:",
        f" CPUs:\t\t\t{res.get('NanoCPUs', 0) / 1e9:g}",
        f" Memory:\t\t{human_bytes(res.get('MemoryBytes', 0))}",
    ]
    engine = desc.get("Engine") or {}
    if engine.get("EngineVersion"):
        lines.append(f"Engine Version:\t\t{engine['EngineVersion']}")
    driver = (o.get("Shoal") or {}).get("Driver")
    if driver:
        lines.append(f"Driver:\t\t\t{driver}")
    return "\n".join(lines)
