"""What the leader knows about each follower's log, and quorum arithmetic.

Flow control is deliberately simple. A follower's progress is in one of three states:

- Probe: we do not know where its log ends; send one MsgApp, then wait for its answer (or a
  heartbeat response) before sending the next one.
- Replicate: its log is known to match ours up to `match`; stream MsgApps optimistically,
  with at most `max_inflight` of them unacknowledged.
- Snapshot: a snapshot is on its way; send nothing until it is acknowledged or reported.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping
from enum import Enum

__all__ = ["Inflights", "Progress", "ProgressState", "committed_index", "quorum"]


class ProgressState(Enum):
    Probe = "StateProbe"
    Replicate = "StateReplicate"
    Snapshot = "StateSnapshot"


class Inflights:
    """Last indices of the MsgApps sent and not yet acknowledged, oldest first (bounded)."""

    __slots__ = ("_q", "capacity")

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._q: deque[int] = deque()

    def __len__(self) -> int:
        return len(self._q)

    def add(self, last_index: int) -> None:
        self._q.append(last_index)

    def free_le(self, index: int) -> None:
        while self._q and self._q[0] <= index:
            self._q.popleft()

    def free_first_one(self) -> None:
        if self._q:
            self._q.popleft()

    def full(self) -> bool:
        return len(self._q) >= self.capacity

    def reset(self) -> None:
        self._q.clear()


class Progress:
    __slots__ = (
        "inflights",
        "match",
        "next",
        "pending_snapshot",
        "probe_sent",
        "recent_active",
        "state",
    )

    def __init__(self, next_index: int, max_inflight: int, recent_active: bool = False) -> None:
        self.match = 0
        self.next = next_index
        self.state = ProgressState.Probe
        self.pending_snapshot = 0
        self.probe_sent = False
        self.recent_active = recent_active
        self.inflights = Inflights(max_inflight)

    def __repr__(self) -> str:
        extra = f" pending_snap={self.pending_snapshot}" if self.pending_snapshot else ""
        paused = " paused" if self.is_paused() else ""
        return f"{self.state.value} match={self.match} next={self.next}{extra}{paused}"

    def _reset_state(self, state: ProgressState) -> None:
        self.probe_sent = False
        self.pending_snapshot = 0
        self.state = state
        self.inflights.reset()

    def become_probe(self) -> None:
        if self.state is ProgressState.Snapshot:
            pending = self.pending_snapshot
            self._reset_state(ProgressState.Probe)
            self.next = max(self.match + 1, pending + 1)
        else:
            self._reset_state(ProgressState.Probe)
            self.next = self.match + 1

    def become_replicate(self) -> None:
        self._reset_state(ProgressState.Replicate)
        self.next = self.match + 1

    def become_snapshot(self, snapshot_index: int) -> None:
        self._reset_state(ProgressState.Snapshot)
        self.pending_snapshot = snapshot_index

    def maybe_update(self, n: int) -> bool:
        """The follower acknowledged its log up to `n`; True if that is news."""
        updated = False
        if self.match < n:
            self.match = n
            updated = True
            self.probe_sent = False
        self.next = max(self.next, n + 1)
        return updated

    def sent_entries(self, count: int, last_index: int) -> None:
        if self.state is ProgressState.Replicate:
            if count:
                self.next = last_index + 1
                self.inflights.add(last_index)
        elif self.state is ProgressState.Probe:
            self.probe_sent = True

    def maybe_decr_to(self, rejected: int, match_hint: int) -> bool:
        """The follower rejected a MsgApp at index `rejected`; move `next` back. False if stale."""
        if self.state is ProgressState.Replicate:
            if rejected <= self.match:
                return False
            self.next = self.match + 1
            return True
        if self.next - 1 != rejected:
            return False
        self.next = max(min(rejected, match_hint + 1), self.match + 1)
        self.probe_sent = False
        return True

    def is_paused(self) -> bool:
        if self.state is ProgressState.Probe:
            return self.probe_sent
        if self.state is ProgressState.Replicate:
            return self.inflights.full()
        return True


def quorum(n_voters: int) -> int:
    return n_voters // 2 + 1


def committed_index(voters: Iterable[str], matches: Mapping[str, int]) -> int:
    """Highest index that a majority of `voters` have (0 for no voters)."""
    srt = sorted((matches.get(v, 0) for v in voters), reverse=True)
    if not srt:
        return 0
    return srt[quorum(len(srt)) - 1]
