"""The wire model: the types managers and nodes both speak, owned by neither.

What a node is told to run (:mod:`~agent.model.assignment`), what it reports and the states a
task moves through (:mod:`~agent.model.tasks`), Swarm's restart policy that both the node and
the orchestrator apply (:mod:`~agent.model.restart`), the routing table a node checks before it
applies it (:mod:`~agent.model.routing`), and the errors of decoding them
(:mod:`~agent.model.errors`). Nothing here imports :mod:`agent.manager` or :mod:`agent.worker`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from agent.model.assignment import (
        Assignment,
        ConfigBlob,
        SecretBlob,
        check_references,
        parse_configs,
        parse_secrets,
    )
    from agent.model.errors import AssignmentError, ModelError, StatusError
    from agent.model.fields import is_id
    from agent.model.restart import restart_delay, restarts_left, should_restart
    from agent.model.routing import check_table
    from agent.model.tasks import DESIRED_STATES, DesiredState, Health, TaskState, TaskStatus

__all__ = [
    "DESIRED_STATES",
    "Assignment",
    "AssignmentError",
    "ConfigBlob",
    "DesiredState",
    "Health",
    "ModelError",
    "SecretBlob",
    "StatusError",
    "TaskState",
    "TaskStatus",
    "check_references",
    "check_table",
    "is_id",
    "parse_configs",
    "parse_secrets",
    "restart_delay",
    "restarts_left",
    "should_restart",
]

_WHERE = {
    "Assignment": "agent.model.assignment",
    "AssignmentError": "agent.model.errors",
    "ConfigBlob": "agent.model.assignment",
    "DESIRED_STATES": "agent.model.tasks",
    "DesiredState": "agent.model.tasks",
    "Health": "agent.model.tasks",
    "ModelError": "agent.model.errors",
    "SecretBlob": "agent.model.assignment",
    "StatusError": "agent.model.errors",
    "TaskState": "agent.model.tasks",
    "TaskStatus": "agent.model.tasks",
    "check_references": "agent.model.assignment",
    "check_table": "agent.model.routing",
    "is_id": "agent.model.fields",
    "parse_configs": "agent.model.assignment",
    "parse_secrets": "agent.model.assignment",
    "restart_delay": "agent.model.restart",
    "restarts_left": "agent.model.restart",
    "should_restart": "agent.model.restart",
}


def __getattr__(name: str) -> Any:
    """The names above, each imported from its module when first asked for: a program that
    needs one part of the model (the CLI, say) does not pay for the rest."""
    where = _WHERE.get(name)
    if where is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(where), name)
    globals()[name] = value
    return value
