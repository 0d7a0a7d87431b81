"""What ``service create`` and ``service update`` share: flags, modes and the rules across flags.

Both commands take the same scalar flags (``--workdir``, ``--limit-cpu``, ``--restart-*``,
``--update-*``, ``--health-*``...); :func:`add_shared_flags` declares them and
:func:`apply_shared_flags` applies those given to a spec, each replacing the current value.
:func:`check_rules` checks the finished spec as Swarm's own service validation does.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from typing import Any, TypeVar

from agent.cli.flagvalues import (
    bad_flag,
    byte_size,
    choice,
    cpus,
    duration,
    given,
    ratio,
    read_each,
    read_one,
    shell_words,
    strict_key_value,
    uint,
)
from agent.model.errors import ShoalError
from agent.model.limits import check_service_spec
from agent.model.spec import (
    Driver,
    Healthcheck,
    Resources,
    ServiceMode,
    ServiceSpec,
    UpdateConfig,
)

__all__ = [
    "GLOBAL_MODES",
    "JOB_MODES",
    "MODES",
    "add_shared_flags",
    "apply_mode",
    "apply_shared_flags",
    "check_rules",
    "dedup_env",
    "unique",
]

T = TypeVar("T")

MODES = ("replicated", "global", "replicated-job", "global-job")
GLOBAL_MODES = ("global", "global-job")
JOB_MODES = ("replicated-job", "global-job")


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


def add_shared_flags(parser: argparse.ArgumentParser) -> None:
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


def _update_config(current: UpdateConfig | None, ns: argparse.Namespace, kind: str) -> Any:
    actions = ("pause", "continue", "rollback") if kind == "update" else ("pause", "continue")
    changes = given(
        parallelism=read_one(ns, f"{kind}_parallelism", uint),
        delay_ns=read_one(ns, f"{kind}_delay", duration),
        failure_action=read_one(ns, f"{kind}_failure_action", choice(*actions)),
        monitor_ns=read_one(ns, f"{kind}_monitor", duration),
        max_failure_ratio=read_one(ns, f"{kind}_max_failure_ratio", ratio),
        order=read_one(ns, f"{kind}_order", choice("stop-first", "start-first")),
    )
    return replace(current or UpdateConfig(), **changes) if changes else current


def _healthcheck(current: Healthcheck | None, ns: argparse.Namespace) -> Healthcheck | None:
    command = getattr(ns, "health_cmd", None)
    timing = given(
        interval_ns=read_one(ns, "health_interval", duration),
        timeout_ns=read_one(ns, "health_timeout", duration),
        retries=read_one(ns, "health_retries", uint),
        start_period_ns=read_one(ns, "health_start_period", duration),
        start_interval_ns=read_one(ns, "health_start_interval", duration),
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
    options = dict(read_each(ns, "log_opt", strict_key_value))
    if name is None:
        if not options:
            return current
        if current is None:
            raise bad_flag(
                "--log-opt", ns.log_opt[0], "give the --log-driver these options are for"
            )
        name = current.name
    return Driver(name=name, options=options) if name else None


def apply_shared_flags(spec: ServiceSpec, ns: argparse.Namespace) -> ServiceSpec:
    """The flags create and update share, each replacing the current value when given."""
    task = spec.task_template
    container = replace(
        task.container,
        **given(
            dir=getattr(ns, "workdir", None),
            user=getattr(ns, "user", None),
            hostname=getattr(ns, "hostname", None),
            stop_signal=getattr(ns, "stop_signal", None),
            stop_grace_period_ns=read_one(ns, "stop_grace_period", duration),
            privileged=getattr(ns, "privileged", None),
            init=getattr(ns, "init", None),
            read_only=getattr(ns, "read_only", None),
            tty=getattr(ns, "tty", None),
        ),
    )
    if getattr(ns, "entrypoint", None) is not None:
        container = replace(container, command=read_one(ns, "entrypoint", shell_words))
    container = replace(container, healthcheck=_healthcheck(container.healthcheck, ns))
    limits = given(
        nano_cpus=read_one(ns, "limit_cpu", cpus),
        memory_bytes=read_one(ns, "limit_memory", byte_size),
        pids=read_one(ns, "limit_pids", uint),
    )
    reservations = given(
        nano_cpus=read_one(ns, "reserve_cpu", cpus),
        memory_bytes=read_one(ns, "reserve_memory", byte_size),
    )
    restart = given(
        condition=read_one(ns, "restart_condition", choice("none", "on-failure", "any")),
        delay_ns=read_one(ns, "restart_delay", duration),
        max_attempts=read_one(ns, "restart_max_attempts", uint),
        window_ns=read_one(ns, "restart_window", duration),
    )
    placement = task.placement
    per_node = read_one(ns, "replicas_max_per_node", uint)
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
    endpoint = given(mode=read_one(ns, "endpoint_mode", choice("vip", "dnsrr")))
    service = given(
        disconnect_window_ns=read_one(ns, "disconnect_window", duration),
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


def apply_mode(current: ServiceMode, ns: argparse.Namespace) -> ServiceMode:
    replicas = read_one(ns, "replicas", uint)
    concurrent = read_one(ns, "max_concurrent", uint)
    if replicas is not None:
        if current.kind in GLOBAL_MODES:
            raise bad_flag(
                "--replicas",
                ns.replicas,
                "replicas can only be used with replicated or replicated-job mode",
            )
        current = replace(current, replicas=replicas)
    if concurrent is not None:
        if current.kind != "replicated-job":
            raise bad_flag(
                "--max-concurrent",
                ns.max_concurrent,
                "max-concurrent can only be used with replicated-job mode",
            )
        current = replace(current, max_concurrent=concurrent)
    return current


def check_rules(spec: ServiceSpec, update: bool) -> ServiceSpec:
    """Rules across flags, checked on the finished spec (Swarm's own service validation)."""
    add = "-add" if update else ""
    check_service_spec(spec)
    container, endpoint = spec.task_template.container, spec.endpoint_spec
    unique(container.mounts, lambda m: m.target, f"--mount{add}", "mount target")
    unique(container.secrets, lambda s: s.target, f"--secret{add}", "secret target")
    unique(container.configs, lambda c: c.target, f"--config{add}", "config target")
    published = [p for p in endpoint.ports if p.published]
    unique(published, lambda p: f"{p.published}/{p.protocol}", f"--publish{add}", "port")
    if endpoint.mode == "dnsrr" and any(p.publish_mode == "ingress" for p in endpoint.ports):
        raise bad_flag(
            "--endpoint-mode",
            "dnsrr",
            "ports published in ingress mode need vip; publish them with mode=host",
        )
    if spec.mode.kind in GLOBAL_MODES and spec.task_template.placement.max_replicas_per_node:
        raise bad_flag(
            "--replicas-max-per-node",
            spec.task_template.placement.max_replicas_per_node,
            "replicas-max-per-node can only be used with replicated or replicated-job mode",
        )
    if spec.mode.kind in JOB_MODES and (spec.update_config or spec.rollback_config):
        raise ShoalError(
            f"--update-* and --rollback-* flags do not apply to jobs (mode {spec.mode.kind})"
        )
    return spec


def unique(items: Sequence[T], key: Callable[[T], object], flag: str, what: str) -> None:
    seen: set[object] = set()
    for item in items:
        if key(item) in seen:
            raise ShoalError(f'invalid "{flag}" flags: {what} {key(item)!r} is given twice')
        seen.add(key(item))


def dedup_env(entries: Iterable[str]) -> tuple[str, ...]:
    """One entry per variable; a later value wins, as with Docker."""
    by_key: dict[str, str] = {}
    for entry in entries:
        key = entry.partition("=")[0]
        by_key.pop(key, None)
        by_key[key] = entry
    return tuple(by_key.values())
