"""The role a node plays in its group."""

from __future__ import annotations

from enum import Enum

__all__ = ["StateType"]


class StateType(Enum):
    Follower = "StateFollower"
    PreCandidate = "StatePreCandidate"
    Candidate = "StateCandidate"
    Leader = "StateLeader"
