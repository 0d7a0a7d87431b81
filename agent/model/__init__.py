"""The wire model: the types managers and nodes both speak, owned by neither.

What a node is told to run (:mod:`~agent.model.assignment`), what it reports and the states a
task moves through (:mod:`~agent.model.tasks`), Swarm's restart policy that both the node and
the orchestrator apply (:mod:`~agent.model.restart`), the routing table a node checks before it
applies it (:mod:`~agent.model.routing`), and the errors of decoding them
(:mod:`~agent.model.errors`). Nothing here imports :mod:`agent.manager` or :mod:`agent.worker`.
"""

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
