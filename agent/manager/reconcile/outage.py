"""A broker outage is not node loss.

When the broker stops answering, every node's session ends at about the same moment and the
broker (or its successor) reports them all as down, although their tasks run on. Replacing
those tasks would restart healthy work and, with the nodes coming back one by one, pile the
replacements onto whichever came back first. So a down node's tasks are held where they are:

- while the leader's own session to the broker is down (dropped, or stalled until the
  keepalive noticed): the leader cannot see the fleet, so nothing it saw counts;
- for ``grace`` seconds after the leader's session came back, and after a manager became
  leader: every node found down then (down already, or reported down within ``burst``
  seconds, as the wills of an outage are) gets that long to report back (Swarm likewise
  gives nodes time to re-register after a leader change). A node seen going down later,
  while the leader watches, is an ordinary loss;
- when most nodes dropped at about the same moment (a *mass drop*): at least two nodes, and
  either more than half of the nodes other than the leader or every worker, went down within
  ``burst`` seconds of each other; they get ``grace`` seconds from the last of those drops,
  since a broker outage that the leader's session did not notice looks just like this.

A held node that reports back in time keeps its tasks. One that does not counts as down from
the end of the hold, and its tasks move once the service's disconnect window has run from
when it went down or the hold ended, whichever is later.

A node can also die without any will reaching the managers: during the outage itself (its
session ended with the broker, which kept its last retained state), or while the broker
restarts. So a node the store holds as ready but that the leader has not heard from (state,
description, heartbeat, status) for three of its heartbeats plus 5 s counts as down
(:func:`silent_nodes`); that silence is counted from when the leader began watching, and is
never shorter than the grace period after that. A silent node heard again is ready again.

:class:`FleetWatch` is the leader's record of its own session (fed by the session's connect
and disconnect callbacks and by leadership); :func:`replace_after` is the pure rule. Time is
wall-clock seconds, as in the store's stamps, passed in by the caller.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from agent.manager.store import Node, NodeRole, NodeStatus
from agent.model.stamps import parse_stamp

__all__ = [
    "DEFAULT_HEARTBEAT",
    "FleetWatch",
    "Hold",
    "OutageRule",
    "held_until",
    "mass_drop_end",
    "replace_after",
    "silence_limit",
    "silent_nodes",
]

DEFAULT_HEARTBEAT = 60.0  # a node's heartbeat when its description does not say (shoal join)


@dataclass(frozen=True, slots=True)
class OutageRule:
    grace: float = 30.0  # longer than a reconnect attempt's timeout (10 s) + the longest backoff
    burst: float = 2.0


@dataclass(frozen=True, slots=True)
class Hold:
    """What the orchestrator needs to know at one moment: who leads, whether its session is
    up and since when it has watched the fleet (see :class:`FleetWatch`)."""

    leader_id: str = ""
    since: float = -math.inf
    connected: bool = True
    rule: OutageRule = OutageRule()


class FleetWatch:
    """What the leader knows about its own view of the fleet: when it became leader, and
    whether (and since when) its session to the broker is up."""

    def __init__(self) -> None:
        self.since = 0.0  # became leader, or its session came back; whichever is later
        self.connected = True
        self.listener: Callable[[], None] | None = None

    def leading(self, now: float) -> None:
        self.since = max(self.since, now)
        self._tell()

    def lost(self, now: float) -> None:
        self.connected = False
        self._tell()

    def back(self, now: float) -> None:
        self.connected = True
        self.since = max(self.since, now)
        self._tell()

    def hold(self, leader_id: str, rule: OutageRule) -> Hold:
        return Hold(leader_id, self.since, self.connected, rule)

    def _tell(self) -> None:
        if self.listener is not None:
            self.listener()


def _down_at(node: Node, now: float) -> float:
    return parse_stamp(node.updated, now)


def mass_drop_end(
    node: Node, nodes: Mapping[str, Node], *, leader_id: str, burst: float, now: float
) -> float:
    """When the mass drop this down node belongs to ended (its last drop), or -inf if it went
    down on its own. See the module docstring for what counts as a mass drop."""
    if node.status != NodeStatus.DOWN:
        return -math.inf
    at = _down_at(node, now)
    others = [n for n in nodes.values() if n.id != leader_id]
    together = [
        n for n in others if n.status == NodeStatus.DOWN and abs(_down_at(n, now) - at) <= burst
    ]
    workers = [n for n in others if n.role != NodeRole.MANAGER]
    dropped_workers = [n for n in together if n.role != NodeRole.MANAGER]
    if len(together) < 2:
        return -math.inf
    if 2 * len(together) > len(others) or (workers and len(dropped_workers) == len(workers)):
        return max(_down_at(n, now) for n in together)
    return -math.inf


def held_until(node: Node, nodes: Mapping[str, Node], *, hold: Hold, now: float) -> float:
    """Until when a down node's tasks stay where they are whatever its disconnect window
    (infinity while the leader's session is down)."""
    if not hold.connected:
        return math.inf
    rule = hold.rule
    until = -math.inf
    if _down_at(node, now) <= hold.since + rule.burst:  # found down when the leader looked
        until = hold.since + rule.grace
    burst_end = mass_drop_end(node, nodes, leader_id=hold.leader_id, burst=rule.burst, now=now)
    return max(until, burst_end + rule.grace)


def replace_after(
    node: Node, nodes: Mapping[str, Node], *, window: float, now: float, hold: Hold
) -> float:
    """When the tasks of a down node are due to move: its disconnect window after it went
    down, and not before any hold on it ends (infinity: not while the hold lasts)."""
    return max(_down_at(node, now) + window, held_until(node, nodes, hold=hold, now=now))


def silence_limit(heartbeat: float) -> float:
    """How long a node may go unheard before it counts as down: three heartbeats and 5 s (the
    same rule a node applies to the managers)."""
    return 3 * heartbeat + 5


def silent_nodes(
    nodes: Mapping[str, Node],
    heard: Mapping[str, float],
    heartbeats: Mapping[str, float],
    *,
    hold: Hold,
    now: float,
) -> list[str]:
    """The ready nodes (other than the leader) that have been silent too long: unheard for
    ``silence_limit`` of their heartbeat since they were last heard, and since the leader
    began watching the fleet for that long or the grace period, whichever is longer. None
    while the leader's own session is down."""
    if not hold.connected:
        return []
    out = []
    for node in nodes.values():
        if node.id == hold.leader_id or node.status != NodeStatus.READY:
            continue
        limit = silence_limit(heartbeats.get(node.id, DEFAULT_HEARTBEAT))
        due = max(heard.get(node.id, -math.inf) + limit, hold.since + max(limit, hold.rule.grace))
        if now >= due:
            out.append(node.id)
    return sorted(out)
