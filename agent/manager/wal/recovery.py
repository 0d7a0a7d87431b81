"""Recovery: rebuilding a `LogState` from the segments of the log.

Segments are replayed oldest first through the same `LogState` operations as the live writes.
The first segment left starts the state from its header; every later header must match the
state the replay has reached (a segment missing in between, or out of order, shows there). The
torn tail of the last segment is reported to the caller, who cuts it off; see
`records.read_frames` for the rule that tells a torn write from damage.
"""

from __future__ import annotations

import itertools
import re
from pathlib import Path

from cryptography.exceptions import InvalidTag

from agent.manager.raft.errors import StorageError
from agent.manager.raft.messages import Entry, HardState

from .errors import StorageCorrupt
from .records import RecordType, Sealer, SegmentHeader, decode_body, read_frames
from .state import LogState

__all__ = ["WRONG_KEY", "list_segments", "replay"]

WRONG_KEY = "cannot decrypt the raft log: wrong data key?"
_SEGMENT = re.compile(r"([0-9a-f]{16})-([0-9a-f]{16})\.seg")


def list_segments(wal: Path) -> list[tuple[int, Path]]:
    """(seq, path) of the segments in `wal`, oldest first; StorageCorrupt if one is missing."""
    found = []
    for path in wal.iterdir():
        m = _SEGMENT.fullmatch(path.name)
        if m:
            found.append((int(m.group(1), 16), path))
    found.sort()
    for (seq, path), (next_seq, _) in itertools.pairwise(found):
        if next_seq != seq + 1:
            raise StorageCorrupt(path, None, f"the segment after it (number {seq + 1}) is missing")
    return found


def replay(segments: list[tuple[int, Path]], sealer: Sealer) -> tuple[LogState, int | None]:
    """The state `segments` hold, and the offset of the last one's torn tail (or None)."""
    state: LogState | None = None
    torn_at: int | None = None
    for seq, path in segments:
        frames, torn_at = read_frames(path.read_bytes(), path)
        if torn_at is not None and seq != segments[-1][0]:
            raise StorageCorrupt(path, torn_at, "a segment that is not the last one is cut short")
        if not frames or frames[0].rtype != RecordType.HEADER:
            raise StorageCorrupt(path, 0, "the segment does not start with its header")
        for fr in frames:
            try:
                body = sealer.open(fr.rtype, seq, fr.offset, fr.payload)
            except InvalidTag:
                if state is None:
                    raise StorageError(
                        f"{WRONG_KEY} ({path} does not decrypt with the key given: unlock "
                        "the manager with its unlock key, or restore its data key)"
                    ) from None
                raise StorageCorrupt(path, fr.offset, "an intact record does not decrypt") from None
            try:
                value = decode_body(fr.rtype, body)
            except ValueError as exc:
                raise StorageCorrupt(path, fr.offset, f"malformed record: {exc}") from None
            if fr.offset == 0:
                state = _replay_header(state, value, seq, path)
            else:
                assert state is not None
                _replay_record(state, fr.rtype, value, seq, path, fr.offset)
    assert state is not None
    if state.missing:
        raise StorageCorrupt(
            segments[0][1],
            None,
            f"the entries up to {state.base.index} are in segments that no longer exist",
        )
    return state, torn_at


def _replay_header(state: LogState | None, header: object, seq: int, path: Path) -> LogState:
    if not isinstance(header, SegmentHeader) or header.seq != seq:
        raise StorageCorrupt(path, 0, "the segment's header does not belong to it")
    if state is None:
        return LogState.from_header(header)
    reason = state.continues(header)
    if reason is not None:
        raise StorageCorrupt(path, 0, f"the segment does not continue the previous one: {reason}")
    state.seg_max[seq] = 0
    return state


def _replay_record(
    state: LogState, rtype: int, value: object, seq: int, path: Path, offset: int
) -> None:
    if rtype == RecordType.ENTRY and isinstance(value, Entry):
        base, last = state.base.index, state.last_index()
        if value.index > last + 1 or (value.index <= base and not state.missing):
            raise StorageCorrupt(path, offset, f"entry {value.index} does not continue the log")
        state.do_append([value], seq)
    elif rtype == RecordType.HARD_STATE and isinstance(value, HardState):
        state.do_hard_state(value)
    elif rtype == RecordType.SNAPSHOT and isinstance(value, tuple):
        meta, replaces_log = value
        if replaces_log:
            state.do_apply_snapshot(meta, seq)
        else:
            state.do_create_snapshot(meta)
    elif rtype == RecordType.COMPACT and isinstance(value, tuple):
        state.do_compact(*value)
    else:
        raise StorageCorrupt(path, offset, "a segment header in the middle of a segment")
