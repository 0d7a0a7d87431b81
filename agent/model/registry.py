"""The command registry: every command the control socket and the managers answer, where it
runs and what answers it. The node daemon routes by it (it imports nothing of the manager to
know the names); the manager takes its handlers from it.

A command runs in one of three places (:class:`Where`): on the node itself (the daemon
answers it), on this node's manager from its own copy of the store, or on the leader (any
manager forwards it there, see agent/manager/forwarding.py). A handler is named, never
imported: ``"method"`` of the daemon, or ``"component.method"`` of the manager, resolved when
the daemon or the manager is built (:func:`bind`), so a wrong name fails at once.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any

__all__ = ["COMMANDS", "Command", "Handler", "Where", "bind", "leader_handlers", "node_handlers"]

Handler = Callable[[dict[str, Any]], Awaitable[Any]]


class Where(Enum):
    NODE = "node"  # the node daemon answers it
    MANAGER = "manager"  # the daemon answers it from this node's manager (a worker refuses it)
    LEADER = "leader"  # the leader runs it; any manager forwards it there


@dataclass(frozen=True)
class Command:
    name: str
    where: Where
    handler: str  # NODE, MANAGER: the daemon's method; LEADER: "<component>.<method>"
    entry: str | None = None  # LEADER: the daemon's method that takes it first, on this node
    when_locked: bool = False  # answered while this manager waits for its unlock key
    socket: bool = True  # the control socket takes it (False: only managers send it)


_NODE, _MANAGER, _LEADER = Where.NODE, Where.MANAGER, Where.LEADER

_TABLE = (
    Command("info", _NODE, "_info", when_locked=True),
    Command("unlock", _NODE, "_cmd_unlock", when_locked=True),
    Command("leave-prepare", _NODE, "_leave_prepare"),
    Command("leave", _NODE, "_leave"),
    Command("renew", _NODE, "_cmd_renew"),
    Command("force-new-cluster", _NODE, "_force_new_cluster"),
    Command("service-logs", _MANAGER, "_service_logs"),
    Command("system-df", _MANAGER, "_system_df"),
    Command("events", _MANAGER, "_events"),
    Command("join-token", _LEADER, "swarm.join_token"),
    Command("swarm-update", _LEADER, "swarm.update"),
    Command("unlock-key", _LEADER, "swarm.unlock_key"),
    Command("node-ls", _LEADER, "nodes.ls", entry="_node_ls"),
    Command("node-rm", _LEADER, "nodes.rm"),
    Command("node-promote", _LEADER, "nodes.promote"),
    Command("node-demote", _LEADER, "nodes.demote", entry="_node_demote"),
    Command("manager-leave", _LEADER, "nodes.manager_leave", socket=False),
    Command("cert-issue", _LEADER, "ca.cert_issue"),
    Command("cert-ls", _LEADER, "ca.cert_ls"),
    Command("cert-rm", _LEADER, "ca.cert_rm"),
    *(
        Command(f"service-{verb}", _LEADER, f"services.service_{verb}")
        for verb in ("create", "ls", "spec", "ps", "update", "rollback", "scale", "rm")
    ),
    Command("inspect", _LEADER, "inspect.lookup"),
    *(
        Command(f"{kind}-inspect", _LEADER, f"inspect.{kind}")
        for kind in ("service", "node", "network", "secret", "config")
    ),
    Command("node-ps", _LEADER, "services.node_ps"),
    Command("node-update", _LEADER, "services.node_update"),
    Command("task-ls", _LEADER, "services.task_ls"),
    *(
        Command(f"{kind}-{verb}", _LEADER, f"secrets.{kind}_{verb}")
        for kind in ("secret", "config")
        for verb in ("create", "ls", "rm")
    ),
    *(Command(f"network-{verb}", _LEADER, f"networks.{verb}") for verb in ("create", "ls", "rm")),
    Command("stack-deploy", _LEADER, "stacks.deploy_command"),
    *(
        Command(f"stack-{verb}", _LEADER, f"stacks.{verb}")
        for verb in ("ls", "services", "ps", "rm")
    ),
)

COMMANDS: Mapping[str, Command] = {c.name: c for c in _TABLE}


def _owner(command: Command) -> str:
    return command.handler.rpartition(".")[0]


def bind(obj: object, owner: str) -> dict[str, Handler]:
    """The leader's commands that the component `owner` answers, bound to `obj`."""
    return {
        c.name: getattr(obj, c.handler.rpartition(".")[2])
        for c in COMMANDS.values()
        if c.where is Where.LEADER and _owner(c) == owner
    }


def leader_handlers(components: Mapping[str, object]) -> dict[str, Handler]:
    """Every leader command's handler, from the manager's components by name; a component the
    table names and `components` lacks is a KeyError."""
    owners = {_owner(c) for c in COMMANDS.values() if c.where is Where.LEADER}
    handlers: dict[str, Handler] = {}
    for owner in sorted(owners):
        handlers.update(bind(components[owner], owner))
    return handlers


def node_handlers(daemon: object) -> dict[str, Handler]:
    """The control socket's commands the node daemon answers itself (those on the node or its
    manager, and the leader's that it takes first), bound to `daemon`; the daemon hands every
    other one to its manager."""
    return {
        c.name: getattr(daemon, c.entry or c.handler)
        for c in COMMANDS.values()
        if c.socket and (c.where is not Where.LEADER or c.entry is not None)
    }
