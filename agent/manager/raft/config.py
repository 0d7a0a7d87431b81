"""The value types around a `RaftNode`: its configuration, the `Ready` it hands the driver,
and the status it reports."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from .errors import RaftError
from .messages import Entry, HardState, Message, ReadState, Snapshot, validate_node_id
from .progress import ProgressState
from .state import StateType
from .storage import Storage

__all__ = ["Config", "ProgressInfo", "Ready", "SoftState", "Status"]


@dataclass(frozen=True, slots=True)
class SoftState:
    """Volatile state worth telling the driver about (it need not be persisted)."""

    leader: str | None
    state: StateType


@dataclass(frozen=True, slots=True)
class Ready:
    """Work for the driver; see the module docstring for the order to do it in."""

    hard_state: HardState | None = None
    soft_state: SoftState | None = None
    entries: tuple[Entry, ...] = ()
    snapshot: Snapshot | None = None
    messages: tuple[Message, ...] = ()
    committed_entries: tuple[Entry, ...] = ()
    read_states: tuple[ReadState, ...] = ()

    @property
    def must_sync(self) -> bool:
        """Whether the writes of this Ready must be fsync'd before its messages go out."""
        return bool(self.entries or self.snapshot is not None or self.hard_state is not None)


@dataclass(frozen=True, kw_only=True)
class Config:
    id: str
    storage: Storage
    rng: random.Random
    election_tick: int = 10
    heartbeat_tick: int = 1
    pre_vote: bool = True
    check_quorum: bool = True
    max_entries_per_msg: int = 64
    max_inflight_msgs: int = 256
    applied: int = 0

    def __post_init__(self) -> None:
        try:
            validate_node_id(self.id)
        except RaftError as exc:
            raise RaftError(f"invalid Config.id: {exc}") from None
        if self.heartbeat_tick < 1:
            raise RaftError("heartbeat_tick must be at least 1")
        if self.election_tick <= self.heartbeat_tick:
            raise RaftError("election_tick must be greater than heartbeat_tick")
        if self.max_entries_per_msg < 1 or self.max_inflight_msgs < 1:
            raise RaftError("max_entries_per_msg and max_inflight_msgs must be at least 1")
        if self.applied < 0:
            raise RaftError("applied must not be negative")


@dataclass(frozen=True, slots=True)
class ProgressInfo:
    match: int
    next: int
    state: ProgressState
    recent_active: bool
    paused: bool


@dataclass(frozen=True, slots=True)
class Status:
    id: str
    term: int
    vote: str | None
    state: StateType
    leader_id: str | None
    commit: int
    applied: int
    voters: tuple[str, ...]
    lead_transferee: str | None
    progress: dict[str, ProgressInfo] = field(default_factory=dict)
