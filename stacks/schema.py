"""Every key shoal reads from a stack file, with its kind.

Keys that ``docker stack deploy`` ignores are accepted and reported in one warning with
Docker's wording; keys it refuses are errors; unknown keys are errors with a suggestion.
Services may use devices and privileged mode, which edge devices need and Swarm lacks.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from stacks.fields import (
    Constraints,
    Devices,
    EnvFiles,
    External,
    ExtraHosts,
    FileRefs,
    HealthTest,
    Ports,
    Preferences,
    Restart,
    ServiceNetworks,
    ServiceVolumes,
    Ulimit,
    parse_subnet,
)
from stacks.kinds import (
    Bool,
    Command,
    Ctx,
    Deprecated,
    Float,
    Forbidden,
    Ignored,
    Int,
    KeyValues,
    Kind,
    ListOf,
    MapOf,
    Obj,
    Parsed,
    Str,
    StrList,
    join,
)
from stacks.node import Node, field_value
from stacks.values import parse_bytes, parse_cpus, parse_duration

__all__ = ["DEPRECATED_OPTIONS", "UNSUPPORTED_OPTIONS", "check_document", "check_name"]

Duration = Parsed(parse_duration)
Bytes = Parsed(parse_bytes)
Cpus = Parsed(parse_cpus)

# docker/cli's UnsupportedProperties, less devices and privileged (shoal runs them), plus keys
# of the Compose Specification that stack deploy has no use for.
UNSUPPORTED_OPTIONS = (
    "annotations",
    "attach",
    "blkio_config",
    "build",
    "cgroup_parent",
    "cgroupns_mode",
    "cpu_count",
    "cpu_percent",
    "cpu_period",
    "cpu_rt_period",
    "cpu_rt_runtime",
    "cpus",
    "credential_spec",
    "depends_on",
    "develop",
    "device_cgroup_rules",
    "domainname",
    "external_links",
    "gpus",
    "group_add",
    "ipc",
    "isolation",
    "label_file",
    "links",
    "mac_address",
    "mem_reservation",
    "mem_swappiness",
    "network_mode",
    "oom_kill_disable",
    "oom_score_adj",
    "pid",
    "platform",
    "post_start",
    "pre_stop",
    "profiles",
    "pull_policy",
    "runtime",
    "scale",
    "security_opt",
    "shm_size",
    "storage_opt",
    "userns_mode",
    "uts",
)
DEPRECATED_OPTIONS = {
    "container_name": "Setting the container name is not supported.",
    "expose": "Exposing ports is unnecessary - services on the same network can access each "
    "other's containers on any port.",
}
_RESOURCE_LIMITS = "Set resource limits using deploy.resources"
_FORBIDDEN_OPTIONS = {
    "extends": "Support for `extends` is not implemented yet.",
    "volume_driver": "Instead of setting the volume driver on the service, define a volume "
    "using the top-level `volumes` option and specify the driver there.",
    "volumes_from": "To share a volume between services, define it using the top-level "
    "`volumes` option and reference it from each service that shares it using "
    "the service-level `volumes` option.",
    "cpu_quota": _RESOURCE_LIMITS,
    "cpu_shares": _RESOURCE_LIMITS,
    "cpuset": _RESOURCE_LIMITS,
    "mem_limit": _RESOURCE_LIMITS,
    "memswap_limit": _RESOURCE_LIMITS,
}

_NAME = re.compile(r"^[a-zA-Z0-9](?:[-_]*[a-zA-Z0-9]+)*$")


_OBJECT_NAME = re.compile(r"^[a-zA-Z0-9._-]+$")


def _object_name(what: str) -> Callable[[str], str | None]:
    def check(name: str) -> str | None:
        if _OBJECT_NAME.match(name):
            return None
        return f"invalid {what} name {name!r}: use letters, digits, '.', '_' and '-'"

    return check


def check_name(name: str, what: str) -> str | None:
    """Swarm's rule for names that become part of a service name (a DNS label)."""
    if _NAME.match(name):
        return None
    return (
        f"invalid {what} name {name!r}: use letters, digits, '-' and '_', starting and "
        "ending with a letter or digit"
    )


_UPDATE = Obj(
    {
        "parallelism": Int(min=0),
        "delay": Duration,
        "failure_action": Str(choices=("pause", "continue", "rollback")),
        "monitor": Duration,
        "max_failure_ratio": Float(min=0.0, max=1.0),
        "order": Str(choices=("stop-first", "start-first")),
    }
)

_DEPLOY = Obj(
    {
        "mode": Str(choices=("replicated", "global", "replicated-job", "global-job")),
        "replicas": Int(min=0),
        "labels": KeyValues(),
        "update_config": _UPDATE,
        "rollback_config": _UPDATE,
        "resources": Obj(
            {
                "limits": Obj({"cpus": Cpus, "memory": Bytes, "pids": Int(min=0)}),
                "reservations": Obj(
                    {
                        "cpus": Cpus,
                        "memory": Bytes,
                        "generic_resources": Ignored(),
                        "devices": Ignored(),
                    }
                ),
            }
        ),
        "restart_policy": Obj(
            {
                "condition": Str(choices=("none", "on-failure", "any")),
                "delay": Duration,
                "max_attempts": Int(min=0),
                "window": Duration,
            }
        ),
        "placement": Obj(
            {
                "constraints": Constraints(),
                "preferences": Preferences(),
                "max_replicas_per_node": Int(min=0),
            }
        ),
        "endpoint_mode": Str(choices=("vip", "dnsrr")),
    }
)

_HEALTHCHECK = Obj(
    {
        "test": HealthTest(),
        "interval": Duration,
        "timeout": Duration,
        "start_period": Duration,
        "start_interval": Duration,
        "retries": Int(min=0),
        "disable": Bool(),
    }
)

_SERVICE_FIELDS: dict[str, Kind] = {
    "image": Str(nonempty=True),
    "command": Command(),
    "entrypoint": Command(),
    "environment": KeyValues(allow_null=True),
    "env_file": EnvFiles(),
    "labels": KeyValues(),
    "deploy": _DEPLOY,
    "ports": Ports(),
    "volumes": ServiceVolumes(),
    "tmpfs": StrList(single=True, nonempty=True),
    "secrets": FileRefs(),
    "configs": FileRefs(),
    "healthcheck": _HEALTHCHECK,
    "networks": ServiceNetworks(),
    "devices": Devices(),
    "hostname": Str(),
    "user": Str(numbers=True),
    "working_dir": Str(),
    "stop_signal": Str(),
    "stop_grace_period": Duration,
    "privileged": Bool(),
    "init": Bool(),
    "tty": Bool(),
    "stdin_open": Bool(),
    "read_only": Bool(),
    "cap_add": StrList(nonempty=True),
    "cap_drop": StrList(nonempty=True),
    "sysctls": KeyValues(),
    "ulimits": MapOf(Ulimit()),
    "extra_hosts": ExtraHosts(),
    "dns": StrList(single=True, nonempty=True),
    "dns_search": StrList(single=True, nonempty=True),
    "dns_opt": StrList(nonempty=True),
    "logging": Obj({"driver": Str(nonempty=True), "options": KeyValues(list_ok=False)}),
    "restart": Restart(),
}
_SERVICE_FIELDS.update({key: Ignored() for key in UNSUPPORTED_OPTIONS})
_SERVICE_FIELDS.update({k: Deprecated(v) for k, v in DEPRECATED_OPTIONS.items()})
_SERVICE_FIELDS.update({k: Forbidden(v) for k, v in _FORBIDDEN_OPTIONS.items()})


def _external(node: Node, path: str, ctx: Ctx, what: str, name: str) -> Node | None:
    """Fold the deprecated ``external: {name: x}`` into ``name: x``, as docker/cli does."""
    fields = node.as_map()
    external = fields.get("external")
    if external is None or not isinstance(external.value, dict):
        return node
    if "name" in fields:
        ctx.fail(
            external,
            join(path, "external"),
            f"{what} {name}: {what}.external.name and {what}.name conflict; only use {what}.name",
        )
        return None
    if "name" in external.value:
        ctx.warn(
            external,
            join(path, "external"),
            f"{what} {name}: {what}.external.name is deprecated in favor of {what}.name",
        )
        fields["name"] = external.value["name"]
    fields["external"] = external.with_value(True)
    return node


def _name_of(path: str) -> str:
    return path.split(".", 1)[1] if "." in path else path


def _network_post(node: Node, path: str, ctx: Ctx) -> Node | None:
    return _external(node, path, ctx, "network", _name_of(path))


def _volume_post(node: Node, path: str, ctx: Ctx) -> Node | None:
    checked = _external(node, path, ctx, "volume", _name_of(path))
    if checked is None or not field_value(checked, "external", False):
        return checked
    for key in ("driver", "driver_opts", "labels"):
        if key in checked.as_map():
            ctx.fail(
                checked.as_map()[key],
                join(path, key),
                f'conflicting parameters "external" '
                f'and "{key}" specified for volume '
                f'"{_name_of(path)}"',
            )
            return None
    return checked


def _file_object_post(what: str, sources: tuple[str, ...]) -> Kind:
    def post(node: Node, path: str, ctx: Ctx) -> Node | None:
        checked = _external(node, path, ctx, what, _name_of(path))
        if checked is None:
            return None
        fields = checked.as_map()
        given = [k for k in sources if k in fields and (k != "external" or fields[k].value)]
        if len(given) == 1:
            return checked
        if not given:
            choices = ", ".join(repr(s) for s in sources[:-1]) + f" or {sources[-1]!r}"
            ctx.fail(checked, path, f"expected one of {choices}")
        else:
            ctx.fail(
                fields[given[1]],
                join(path, given[1]),
                f"conflicting parameters {given[0]!r} and {given[1]!r} specified for "
                f"{what} {_name_of(path)!r}",
            )
        return None

    fields: dict[str, Kind] = {
        "file": Str(nonempty=True),
        "environment": Str(nonempty=True),
        "external": External(),
        "name": Str(nonempty=True),
        "labels": KeyValues(),
        "template_driver": Ignored(),
        "driver": Ignored(),
        "driver_opts": Ignored(),
    }
    if "content" in sources:
        fields["content"] = Str()
    return Obj(fields, post=post)


_NETWORK = Obj(
    {
        "driver": Str(nonempty=True),
        "driver_opts": KeyValues(list_ok=False),
        "attachable": Bool(),
        "internal": Bool(),
        "enable_ipv6": Bool(),
        "ipam": Obj(
            {
                "driver": Str(nonempty=True),
                "config": ListOf(
                    Obj(
                        {
                            "subnet": Parsed(parse_subnet),
                            "ip_range": Parsed(parse_subnet),
                            "gateway": Str(),
                            "aux_addresses": KeyValues(list_ok=False),
                        }
                    )
                ),
                "options": KeyValues(list_ok=False),
            }
        ),
        "external": External(),
        "name": Str(nonempty=True),
        "labels": KeyValues(),
    },
    null_ok=True,
    post=_network_post,
)

_VOLUME = Obj(
    {
        "driver": Str(nonempty=True),
        "driver_opts": KeyValues(list_ok=False),
        "external": External(),
        "labels": KeyValues(),
        "name": Str(nonempty=True),
    },
    null_ok=True,
    post=_volume_post,
)


class _Accept(Kind):
    """A key read elsewhere (``version``) or meaningless for a stack (``name``)."""

    def check(self, node: Node, path: str, ctx: Ctx) -> Node | None:
        return None


_ROOT = Obj(
    {
        "version": _Accept(),
        "name": _Accept(),
        "services": MapOf(Obj(_SERVICE_FIELDS), name=lambda n: check_name(n, "service")),
        "networks": MapOf(_NETWORK, name=_object_name("network")),
        "volumes": MapOf(_VOLUME, name=_object_name("volume")),
        "secrets": MapOf(
            _file_object_post("secret", ("file", "environment", "external")),
            name=_object_name("secret"),
        ),
        "configs": MapOf(
            _file_object_post("config", ("file", "environment", "content", "external")),
            name=_object_name("config"),
        ),
        "include": Forbidden("`include` is not supported; pass several files with -c instead"),
    }
)


def check_document(root: Node, ctx: Ctx) -> Node | None:
    """Check one parsed file; the result has only known keys, each in canonical form."""
    return _ROOT.check(root, "", ctx)
