"""The bounds on every quantity a user controls, in one place.

The CLI checks them before it sends a request (an early, local refusal) and the managers check
them again on every request that writes (the authoritative refusal: a request off the network
need not come from the CLI); stack conversion checks them per service with the compose file's
names. Every refusal is a :class:`LimitError` naming the value, the limit and what to do.

The numbers are generous for real use: a Swarm cluster rarely runs more than a few thousand
replicas of one service, and ``bench/scale.py`` runs 10 services of 1,000 replicas on 1,000
nodes (10,000 tasks), well within them.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from agent.model.errors import ShoalError

if TYPE_CHECKING:
    from agent.model.spec import ServiceSpec

__all__ = [
    "MAX_ARGS",
    "MAX_ARGS_BYTES",
    "MAX_CLUSTER_TASKS",
    "MAX_CONSTRAINTS",
    "MAX_ENV",
    "MAX_ENV_BYTES",
    "MAX_LABELS",
    "MAX_LABEL_KEY",
    "MAX_LABEL_VALUE",
    "MAX_MOUNTS",
    "MAX_NAME",
    "MAX_OBJECT_BYTES",
    "MAX_PORTS",
    "MAX_REFS",
    "MAX_REPLICAS",
    "MAX_SPEC_BYTES",
    "MAX_TASKS_PER_NODE",
    "MAX_TASK_HISTORY",
    "LimitError",
    "check_cluster_tasks",
    "check_labels",
    "check_replicas",
    "check_service_spec",
    "desired_tasks",
]

MAX_REPLICAS = 10_000  # tasks of one replicated service (completions of a replicated job)
MAX_CLUSTER_TASKS = 50_000  # desired tasks of all services together (global: one per node)
MAX_TASKS_PER_NODE = 1000  # tasks the scheduler places on one node: its assignment set is one
# retained message, which must stay under the broker's 4 MiB (a minimal task takes ~0.8 KB)
MAX_PORTS = 256  # published ports of one service
MAX_LABELS = 100  # labels of one service, container, node, network, secret or config
MAX_LABEL_KEY = 255  # characters
MAX_LABEL_VALUE = 4096  # characters
MAX_ENV = 1000  # environment variables of one service
MAX_ENV_BYTES = 64 * 1024  # all of them together, UTF-8
MAX_ARGS = 1000  # items of command and of args, each
MAX_ARGS_BYTES = 64 * 1024  # command and args together, UTF-8
MAX_MOUNTS = 100
MAX_CONSTRAINTS = 100  # placement constraints (and, apart, preferences)
MAX_REFS = 100  # secrets (and, apart, configs) given to one service
MAX_NAME = 63  # characters of a service name
MAX_OBJECT_BYTES = 500 * 1024  # data of one secret or config (as Docker)
MAX_SPEC_BYTES = 1024 * 1024  # one service spec, encoded as JSON
MAX_TASK_HISTORY = 1000  # `swarm update --task-history-limit`: tasks kept per slot


class LimitError(ShoalError):
    """A value is over its bound; the message names the value, the bound and what to do."""


def _over(what: str, value: int, limit: int, advice: str) -> LimitError:
    return LimitError(f"{what} is {value:,}; at most {limit:,} are allowed: {advice}")


def check_replicas(replicas: int, what: str = "replicas") -> None:
    if replicas > MAX_REPLICAS:
        raise _over(what, replicas, MAX_REPLICAS, "split the work across several services")


def check_labels(labels: Mapping[str, str], what: str = "labels") -> None:
    if len(labels) > MAX_LABELS:
        raise _over(f"the number of {what}", len(labels), MAX_LABELS, "drop some labels")
    for key, value in labels.items():
        if len(key) > MAX_LABEL_KEY:
            raise LimitError(
                f"{what}: key {key[:40]!r}... is {len(key):,} characters; at most"
                f" {MAX_LABEL_KEY} are allowed: use a shorter key"
            )
        if len(value) > MAX_LABEL_VALUE:
            raise LimitError(
                f"{what}: the value of {key!r} is {len(value):,} characters; at most"
                f" {MAX_LABEL_VALUE:,} are allowed: keep large data in a config or secret"
            )


def _size(items: Iterable[str]) -> int:
    return sum(len(s.encode()) for s in items)


def _count(what: str, items: tuple[Any, ...] | None, limit: int, advice: str) -> None:
    if items is not None and len(items) > limit:
        raise _over(what, len(items), limit, advice)


def check_service_spec(spec: ServiceSpec) -> None:
    """Every bound on one service spec (the cluster-wide bound is :func:`check_cluster_tasks`)."""
    if len(spec.name) > MAX_NAME:
        raise _over(
            "the length of the service name", len(spec.name), MAX_NAME, "use a shorter name"
        )
    mode = spec.mode
    check_replicas(mode.replicas)
    if mode.max_concurrent is not None:
        check_replicas(mode.max_concurrent, "max-concurrent")
    _count(
        "the number of published ports",
        spec.endpoint_spec.ports,
        MAX_PORTS,
        "publish a range on fewer services or use a proxy",
    )
    check_labels(spec.labels, "service labels")
    task = spec.task_template
    c = task.container
    check_labels(c.labels, "container labels")
    _count("the number of environment variables", c.env, MAX_ENV, "keep settings in a config")
    if _size(c.env) > MAX_ENV_BYTES:
        raise _over(
            "the environment's size in bytes",
            _size(c.env),
            MAX_ENV_BYTES,
            "keep large settings in a config",
        )
    _count("the number of command items", c.command, MAX_ARGS, "run a script from a config")
    _count("the number of args", c.args, MAX_ARGS, "run a script from a config")
    length = _size(c.command or ()) + _size(c.args or ())
    if length > MAX_ARGS_BYTES:
        raise _over(
            "the command line's size in bytes", length, MAX_ARGS_BYTES, "run a script from a config"
        )
    _count("the number of mounts", c.mounts, MAX_MOUNTS, "mount a parent directory")
    _count("the number of secrets", c.secrets, MAX_REFS, "combine secrets into fewer files")
    _count("the number of configs", c.configs, MAX_REFS, "combine configs into fewer files")
    placement = task.placement
    _count(
        "the number of constraints",
        placement.constraints,
        MAX_CONSTRAINTS,
        "label the nodes and constrain on one label",
    )
    _count(
        "the number of placement preferences",
        placement.preferences,
        MAX_CONSTRAINTS,
        "use fewer preferences",
    )
    size = len(json.dumps(spec.to_dict(), separators=(",", ":")).encode())
    if size > MAX_SPEC_BYTES:
        raise _over(
            "the service spec's size in bytes",
            size,
            MAX_SPEC_BYTES,
            "keep large data in configs and secrets",
        )


def desired_tasks(spec: ServiceSpec, nodes: int) -> int:
    """How many tasks a service spec asks for at once (global kinds: one per node)."""
    mode = spec.mode
    if mode.kind in ("global", "global-job"):
        return nodes
    if mode.kind == "replicated-job" and mode.max_concurrent is not None:
        return min(mode.replicas, mode.max_concurrent)
    return mode.replicas


def check_cluster_tasks(others: int, wanted: int, name: str) -> None:
    """``others``: tasks the other services ask for; ``wanted``: what service ``name`` would."""
    total = others + wanted
    if total > MAX_CLUSTER_TASKS:
        raise LimitError(
            f"service {name} would bring the cluster to {total:,} tasks; at most"
            f" {MAX_CLUSTER_TASKS:,} are allowed in all: scale other services down first"
        )
