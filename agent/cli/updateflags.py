"""The flags of ``shoal service update``, applied to the service's current ServiceSpec.

``service update`` changes only what its flags name. Its ``--x-rm`` removals apply before its
``--x-add`` additions, so ``--mount-rm /data --mount-add type=volume,target=/data`` replaces the
mount at ``/data``; an addition replaces the entry it matches (same key, target or path).
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from typing import TypeVar

from agent.cli.flagvalues import (
    capability,
    caps,
    config,
    constraint,
    convert_flag,
    device,
    env_entry,
    host_entry,
    key_value,
    mount,
    nameserver,
    network,
    nonempty,
    port_configs,
    preference,
    read_each,
    read_one,
    secret,
    shell_words,
    strict_key_value,
    ulimit,
)
from agent.cli.sharedflags import (
    add_shared_flags,
    apply_mode,
    apply_shared_flags,
    check_rules,
    dedup_env,
    unique,
)
from agent.model.spec import ContainerSpec, DNSConfig, ServiceSpec

__all__ = ["add_update_flags", "apply_update"]

T = TypeVar("T")

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


def add_update_flags(parser: argparse.ArgumentParser) -> None:
    """The flags of ``service update`` and its ``SERVICE`` (dest ``service``)."""
    parser.add_argument("--image", metavar="IMAGE", help="new image")
    parser.add_argument("--args", metavar="ARGS", help="new command arguments (shell-quoted)")
    parser.add_argument("--force", action="store_true", help="replace the tasks even unchanged")
    parser.add_argument("--rollback", action="store_true", help="go back to the previous spec")
    add_shared_flags(parser)
    for flag, metavar, key, text in _UPDATE_LISTS:
        parser.add_argument(
            f"--{flag}-add", action="append", default=[], metavar=metavar, help=f"add a {text}"
        )
        parser.add_argument(
            f"--{flag}-rm", action="append", default=[], metavar=key, help=f"remove a {text}"
        )
    parser.add_argument("service", metavar="SERVICE")


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
            constraints=_edit_list(task.placement.constraints, ns, "constraint", constraint),
            preferences=_edit_list(task.placement.preferences, ns, "placement_pref", preference),
        ),
        networks=_edit(
            task.networks,
            lambda n: n.target in networks_rm,
            read_each(ns, "network_add", network),
            lambda a, b: a.target == b.target,
        ),
        force_update=task.force_update + (1 if getattr(ns, "force", False) else 0),
    )
    ports_rm = [
        (p.target, p.protocol, p.publish_mode)
        for r in read_each(ns, "publish_rm", port_configs)
        for p in r
    ]
    ports = _edit(
        spec.endpoint_spec.ports,
        lambda p: (p.target, p.protocol, p.publish_mode) in ports_rm,
        [p for raw in read_each(ns, "publish_add", port_configs) for p in raw],
        lambda a, b: a == b,
    )
    spec = replace(
        spec,
        labels=_edit_map(spec.labels, _keys(ns, "label_rm"), read_each(ns, "label_add", key_value)),
        task_template=task,
        mode=apply_mode(spec.mode, ns),
        endpoint_spec=replace(spec.endpoint_spec, ports=ports),
    )
    return check_rules(apply_shared_flags(spec, ns), update=True)


def _update_container(
    c: ContainerSpec, ns: argparse.Namespace, environ: Mapping[str, str]
) -> ContainerSpec:
    if getattr(ns, "image", None) is not None:
        c = replace(c, image=convert_flag("image", ns.image, nonempty))
    if getattr(ns, "args", None) is not None:
        c = replace(c, args=read_one(ns, "args", shell_words))
    caps_add, caps_drop = caps(
        read_each(ns, "cap_add", capability), read_each(ns, "cap_drop", capability)
    )
    if caps_add or caps_drop:
        c = replace(
            c,
            cap_add=tuple(sorted(set(c.cap_add) - set(caps_drop) | set(caps_add))),
            cap_drop=tuple(sorted(set(c.cap_drop) - set(caps_add) | set(caps_drop))),
        )
    return _update_host_lists(_update_file_lists(c, ns, environ), ns)


def _update_file_lists(
    c: ContainerSpec, ns: argparse.Namespace, environ: Mapping[str, str]
) -> ContainerSpec:
    """``--env``, ``--mount``, ``--secret`` and ``--config`` additions and removals."""
    env_rm = set(_keys(ns, "env_rm"))
    env_add = [e for e in read_each(ns, "env_add", lambda t: env_entry(t, environ)) if e]
    mounts_add = read_each(ns, "mount_add", mount)
    secrets_add = read_each(ns, "secret_add", secret)
    configs_add = read_each(ns, "config_add", config)
    unique(mounts_add, lambda m: m.target, "--mount-add", "mount target")
    unique(secrets_add, lambda s: s.target, "--secret-add", "secret target")
    unique(configs_add, lambda c: c.target, "--config-add", "config target")
    mounts_rm = set(getattr(ns, "mount_rm", None) or ())
    secrets_rm = set(getattr(ns, "secret_rm", None) or ())
    configs_rm = set(getattr(ns, "config_rm", None) or ())
    return replace(
        c,
        env=dedup_env(_edit(c.env, lambda e: _env_key(e) in env_rm, env_add, _same_env)),
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
    )


def _update_host_lists(c: ContainerSpec, ns: argparse.Namespace) -> ContainerSpec:
    """Labels, devices, /etc/hosts entries, DNS, sysctls and ulimits: additions and removals."""
    devices_rm = set(read_each(ns, "device_rm", nonempty))
    hosts_rm = {r.partition(":")[0] for r in read_each(ns, "host_rm", nonempty)}
    ulimits_rm = set(_keys(ns, "ulimit_rm"))
    dns = c.dns_config or DNSConfig()
    dns = DNSConfig(
        nameservers=_edit_list(dns.nameservers, ns, "dns", nameserver),
        search=_edit_list(dns.search, ns, "dns_search", nonempty),
        options=_edit_list(dns.options, ns, "dns_option", nonempty),
    )
    return replace(
        c,
        labels=_edit_map(
            c.labels,
            _keys(ns, "container_label_rm"),
            read_each(ns, "container_label_add", key_value),
        ),
        devices=_edit(
            c.devices,
            lambda d: bool({d.path_on_host, d.path_in_container} & devices_rm),
            read_each(ns, "device_add", device),
            lambda a, b: a.path_in_container == b.path_in_container,
        ),
        hosts=_edit(
            c.hosts,
            lambda h: bool(set(h.split()[1:2]) & hosts_rm),
            read_each(ns, "host_add", host_entry),
            lambda a, b: a == b,
        ),
        dns_config=dns if dns != DNSConfig() else None,
        sysctls=_edit_map(
            c.sysctls, _keys(ns, "sysctl_rm"), read_each(ns, "sysctl_add", strict_key_value)
        ),
        ulimits=_edit(
            c.ulimits,
            lambda u: u.name in ulimits_rm,
            read_each(ns, "ulimit_add", ulimit),
            lambda a, b: a.name == b.name,
        ),
    )


def _edit_list(
    current: tuple[str, ...], ns: argparse.Namespace, dest: str, convert: Callable[[str], str]
) -> tuple[str, ...]:
    removed = set(read_each(ns, f"{dest}_rm", convert))
    return _edit(current, lambda x: x in removed, read_each(ns, f"{dest}_add", convert), str.__eq__)


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


def _keys(ns: argparse.Namespace, dest: str) -> list[str]:
    return [raw.partition("=")[0].strip() for raw in getattr(ns, dest, None) or ()]


def _env_key(entry: str) -> str:
    return entry.partition("=")[0]


def _same_env(a: str, b: str) -> bool:
    return _env_key(a) == _env_key(b)
