"""`DiskStorage`: the durable, encrypted Raft storage of a manager.

Layout of the directory::

    LOCK                                    held (flock) while a process has the storage open
    SYNCED                                  how far the log is known to be on disk (`synced`)
    wal/<seq>-<first index>.seg             the log: segments of records (see `records`),
                                            16 hex digits each; a new one after ~8 MiB
    snap/<term>-<index>.snap                snapshots (see `snapfiles`), written atomically

Every write method is durable when it returns. `save` is the one a driver calls per Ready: it
writes the Ready's snapshot, entries and hard state and fsyncs the log once (a snapshot file is
written, fsync'd and renamed into place before that). Memory changes only after the disk has.

Recovery on open replays the segments in order. A torn tail (the last records of the last
segment, cut or garbled by a crash mid-write) is cut off; damage anywhere else, a missing
segment, or a record that does not decrypt with its checksum intact raises `StorageCorrupt`.
The rule that tells the two apart (`records.read_frames`): a record that is incomplete or
fails its checksum is a torn write when no intact record follows it in the file, and damage
when one does. So a crash during a `save` keeps a prefix of its records, in order; were a disk
to persist a later page of an unsynced write and not an earlier one, opening refuses with
`StorageCorrupt` rather than guess. A log
that lacks records the sync mark says were fsync'd (a cut below it, a lost last segment)
raises `StorageLost`: those entries may have been acknowledged,
so the manager must not start on it (see `synced`). A log
that does not decrypt at all raises `StorageError` ("wrong data key?"). When the current
snapshot file is damaged, an older snapshot is used instead if the log still holds every
entry after it, and `StorageCorrupt` is raised otherwise.

Compaction (`compact`, `apply_snapshot`) deletes the oldest segments once every entry they
hold is covered; each segment starts with a header holding the state it starts from, so the
remaining segments replay on their own.

Reads take a short lock and never touch the disk: the driver may persist a Ready in a worker
thread while the core reads. An I/O failure while writing leaves the storage failed: every
later write raises `StorageError`, and the manager must restart (and recover from disk).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

from agent.manager.raft.errors import RaftError, StorageError
from agent.manager.raft.messages import Entry, HardState, Snapshot
from agent.manager.raft.storage import bootstrap_state

from .errors import StorageCorrupt, StorageLost
from .fileio import fsync_directory, remove_durably, write_all, write_durably
from .records import (
    RecordType,
    Sealer,
    encode_compact,
    encode_entry,
    encode_hard_state,
    encode_snapshot_marker,
    frame,
)
from .recovery import list_segments, replay
from .snapfiles import list_snapshots, read_snapshot, snapshot_path, write_snapshot
from .state import LogState
from .synced import MARK_NAME, SyncMark, lost

if TYPE_CHECKING:
    from agent.manager.raft.storage import Storage

    def _implements_the_protocol(storage: DiskStorage) -> Storage:
        return storage


__all__ = ["KEEP_SNAPSHOTS", "SEGMENT_BYTES", "DiskStorage"]

log = logging.getLogger("shoal.wal")

SEGMENT_BYTES = 8 * 1024 * 1024
KEEP_SNAPSHOTS = 3


class DiskStorage:
    """`Storage` in a directory, with `MemoryStorage`'s writes, each durable, plus `save`."""

    def __init__(
        self,
        directory: Path | str,
        data_key: bytes,
        *,
        segment_bytes: int = SEGMENT_BYTES,
        keep_snapshots: int = KEEP_SNAPSHOTS,
    ) -> None:
        self.directory = Path(directory)
        try:
            self._sealer = Sealer(data_key)
        except ValueError as exc:
            raise StorageError(str(exc)) from None
        self._segment_bytes = segment_bytes
        self._keep_snapshots = max(1, keep_snapshots)
        self._wal = self.directory / "wal"
        self._snapdir = self.directory / "snap"
        self._lock = threading.Lock()  # guards memory: reads vs. the end of a write
        self._write_lock = threading.Lock()  # one write at a time
        self._failed: str | None = None
        self._pending = bytearray()
        self._segments: dict[int, Path] = {}
        self._seq = 0
        self._offset = 0
        self._fd = -1
        self._lock_fd = -1
        self._mark_fd = -1
        self._marked: SyncMark | None = None
        self._state = LogState()
        self._snap = Snapshot(0, 0)
        try:
            self._open()
        except BaseException:
            self._close_fds()
            raise

    @classmethod
    def bootstrap(
        cls, directory: Path | str, data_key: bytes, voters: Iterable[str]
    ) -> DiskStorage:
        """A new storage for an initial member of a new group (see `bootstrap_state`)."""
        storage = cls(directory, data_key)
        if storage.initial_state() != (HardState(), ()) or storage.last_index() != 0:
            storage.close()
            raise RaftError(f"{directory} already holds raft state; a new group needs an empty one")
        snap, hs = bootstrap_state(voters)
        storage.save(hs, (), snap)
        return storage

    # ------------------------------------------------------------------ Storage protocol

    def initial_state(self) -> tuple[HardState, tuple[str, ...]]:
        with self._lock:
            return self._state.hard_state, self._snap.voters

    def entries(self, lo: int, hi: int) -> list[Entry]:
        with self._lock:
            return self._state.entries(lo, hi)

    def term(self, i: int) -> int:
        with self._lock:
            return self._state.term(i)

    def first_index(self) -> int:
        with self._lock:
            return self._state.first_index()

    def last_index(self) -> int:
        with self._lock:
            return self._state.last_index()

    def snapshot(self) -> Snapshot:
        with self._lock:
            return self._snap

    @property
    def hard_state(self) -> HardState:
        with self._lock:
            return self._state.hard_state

    # ------------------------------------------------------------------ writes

    def save(
        self,
        hard_state: HardState | None,
        entries: Iterable[Entry],
        snapshot: Snapshot | None = None,
    ) -> None:
        """Persist a Ready: its snapshot, then its entries, then its hard state; one fsync.

        Arguments that break the rules of `MemoryStorage`'s writes (an older snapshot, entries
        leaving a gap) are refused with its exceptions before anything is written.
        """
        ents = list(entries)
        with self._writing():
            st = self._state
            if snapshot is not None:
                st.check_apply_snapshot(snapshot)
                ents = st.check_append(ents, snapshot.index + 1, snapshot.index)
            else:
                ents = st.check_append(ents, st.first_index(), st.last_index())
            if hard_state == st.hard_state:
                hard_state = None
            with self._changing():
                if snapshot is not None:
                    write_snapshot(self._snapdir, self._sealer, snapshot)
                    self._record(RecordType.SNAPSHOT, encode_snapshot_marker(snapshot, True))
                for e in ents:
                    self._record(RecordType.ENTRY, encode_entry(e))
                if hard_state is not None:
                    self._record(RecordType.HARD_STATE, encode_hard_state(hard_state))
                self._flush()
                with self._lock:
                    if snapshot is not None:
                        st.do_apply_snapshot(_meta(snapshot), self._seq)
                        self._snap = snapshot
                    if ents:
                        st.do_append(ents, self._seq)
                    if hard_state is not None:
                        st.do_hard_state(hard_state)
            if snapshot is not None:
                self._collect()

    def set_hardstate(self, hs: HardState) -> None:
        self.save(hs, ())

    def append(self, entries: Iterable[Entry]) -> None:
        """Append entries, replacing any stored entries at their indices or later."""
        self.save(None, entries)

    def apply_snapshot(self, snap: Snapshot) -> None:
        """Replace the whole log with `snap` (a snapshot received from the leader)."""
        self.save(None, (), snap)

    def create_snapshot(self, index: int, voters: Iterable[str], data: bytes) -> Snapshot:
        """Record a snapshot of the state machine as of applied `index` (then `compact`)."""
        with self._writing():
            term = self._state.check_create_snapshot(index)
            snap = Snapshot(index, term, tuple(sorted(voters)), data)
            with self._changing():
                write_snapshot(self._snapdir, self._sealer, snap)
                self._record(RecordType.SNAPSHOT, encode_snapshot_marker(snap, False))
                self._flush()
                with self._lock:
                    self._state.do_create_snapshot(_meta(snap))
                    self._snap = snap
            self._collect()
        return snap

    def compact(self, index: int) -> None:
        """Discard the entries up to and including `index` (which a snapshot must cover)."""
        with self._writing():
            term = self._state.check_compact(index)
            with self._changing():
                self._record(RecordType.COMPACT, encode_compact(index, term))
                self._flush()
                with self._lock:
                    self._state.do_compact(index, term)
            self._collect()

    # ------------------------------------------------------------------ lifecycle

    def close(self) -> None:
        with self._write_lock:
            self._failed = self._failed or "it is closed"
            self._close_fds()

    def __enter__(self) -> DiskStorage:
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def segment_paths(self) -> list[Path]:
        """The log's segment files, oldest first."""
        with self._write_lock:
            return [self._segments[s] for s in sorted(self._segments)]

    # ------------------------------------------------------------------ writing

    @contextlib.contextmanager
    def _writing(self) -> Iterator[None]:
        with self._write_lock:
            if self._failed is not None:
                raise StorageError(
                    f"the raft log in {self.directory} cannot be written: {self._failed}"
                )
            if self._offset >= self._segment_bytes:
                with self._changing():
                    self._roll()
            yield
            self._mark()

    @contextlib.contextmanager
    def _changing(self) -> Iterator[None]:
        """A region that leaves the storage failed when it does not complete."""
        try:
            yield
        except BaseException as exc:
            self._pending.clear()
            self._failed = f"an earlier write failed ({exc}); restart the manager"
            if isinstance(exc, OSError):
                raise StorageError(
                    f"cannot write the raft log in {self.directory}: {exc.strerror or exc}; "
                    "check the disk (space, permissions, errors) and restart the manager"
                ) from exc
            raise

    def _record(self, rtype: RecordType, body: bytes) -> None:
        offset = self._offset + len(self._pending)
        self._pending += frame(rtype, self._sealer.seal(rtype, self._seq, offset, body))

    def _flush(self) -> None:
        if not self._pending:
            return
        write_all(self._fd, self._pending)
        os.fsync(self._fd)
        self._offset += len(self._pending)
        self._pending.clear()

    def _mark(self) -> None:
        """Record how far the log is on disk (after an fsync; see `synced`)."""
        mark = SyncMark(
            self._seq, self._offset, self._state.last_index(), self._state.hard_state.commit
        )
        if mark == self._marked or self._mark_fd < 0:
            return
        try:
            os.pwrite(self._mark_fd, mark.encode(), 0)
        except OSError as exc:  # the log is intact: only the check on a later start is weaker
            log.warning("cannot write %s: %s", self.directory / MARK_NAME, exc)
            return
        self._marked = mark

    def _roll(self) -> None:
        seq = self._seq + 1
        path = self._wal / f"{seq:016x}-{self._state.last_index() + 1:016x}.seg"
        header = self._state.header(seq)
        data = frame(
            RecordType.HEADER, self._sealer.seal(RecordType.HEADER, seq, 0, header.encode())
        )
        write_durably(path, data)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND)
        if self._fd >= 0:
            os.close(self._fd)
        self._fd, self._seq, self._offset = fd, seq, len(data)
        self._segments[seq] = path
        self._state.seg_max[seq] = 0

    def _collect(self) -> None:
        """Delete the segments and snapshot files nothing needs any more (oldest first)."""
        st = self._state
        try:
            for seq in st.deletable(self._seq):
                remove_durably([self._segments[seq]])
                del self._segments[seq], st.seg_max[seq]
            current = (st.snapshot.index, st.snapshot.term)
            older = [(i, p) for i, t, p in list_snapshots(self._snapdir) if (i, t) != current]
            # an older snapshot is kept as a fallback while the log holds every entry after it
            usable = [p for i, p in older if i >= st.base.index]
            fallbacks = usable[max(0, len(usable) - (self._keep_snapshots - 1)) :]
            remove_durably([p for _, p in older if p not in fallbacks])
        except OSError as exc:  # nothing is lost: the files are deleted on a later try
            log.warning("cannot delete old raft files in %s: %s", self.directory, exc)

    # ------------------------------------------------------------------ opening

    def _open(self) -> None:
        for d in (self.directory, self._wal, self._snapdir):
            if not d.is_dir():
                d.mkdir(mode=0o700, parents=True, exist_ok=True)
                fsync_directory(d.parent)
        self._lock_fd = os.open(self.directory / "LOCK", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise StorageError(
                f"{self.directory} is in use by another shoal process; stop it first"
            ) from None
        for d in (self._wal, self._snapdir):
            stale = [p for p in d.iterdir() if p.name.startswith(".") and p.name.endswith(".tmp")]
            remove_durably(stale)
        mark = self._open_mark()
        segments = list_segments(self._wal)
        if not segments:
            if list_snapshots(self._snapdir):
                raise StorageCorrupt(self._wal, None, "snapshot files exist but no log segment")
            if mark is not None:
                raise StorageLost(self._wal, None, "every log segment is missing")
            self._roll()
            self._mark()
            return
        self._state, torn_at = replay(segments, self._sealer)
        last_seq, last_path = segments[-1]
        end = last_path.stat().st_size if torn_at is None else torn_at
        reason = lost(mark, last_seq, end, self._state.last_index())
        if reason is not None:
            raise StorageLost(last_path, None, reason)
        self._fd = os.open(last_path, os.O_WRONLY | os.O_APPEND)
        if torn_at is not None:
            log.warning(
                "cutting a torn write off the raft log: %s from byte %d", last_path, torn_at
            )
            os.ftruncate(self._fd, torn_at)
        os.fsync(self._fd)  # what recovery read is on disk before the mark says so
        self._seq, self._offset = last_seq, os.fstat(self._fd).st_size
        self._segments = dict(segments)
        self._load_snapshot()
        self._collect()
        self._mark()

    def _open_mark(self) -> SyncMark | None:
        path = self.directory / MARK_NAME
        self._mark_fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        mark = SyncMark.decode(os.pread(self._mark_fd, 4096, 0))
        if mark is None and os.fstat(self._mark_fd).st_size:
            log.warning("ignoring %s: it is not a sync mark of this version", path)
        self._marked = mark
        return mark

    def _load_snapshot(self) -> None:
        st = self._state
        meta = st.snapshot
        # written just before a crash, never made current by the log
        orphans = [
            path
            for index, term, path in list_snapshots(self._snapdir)
            if index > meta.index or (index == meta.index and term != meta.term)
        ]
        remove_durably(orphans)
        path = snapshot_path(self._snapdir, meta.term, meta.index)
        if meta == Snapshot(0, 0) and not path.exists():
            return  # no snapshot was ever stored
        try:
            snap = read_snapshot(path, self._sealer, meta.term, meta.index)
            if snap.voters != meta.voters:
                raise StorageCorrupt(path, None, "its voters differ from the log's record of it")
        except StorageCorrupt as exc:
            snap = self._older_snapshot(exc)
        self._snap = snap

    def _older_snapshot(self, damage: StorageCorrupt) -> Snapshot:
        """The newest intact snapshot the log still holds every later entry of."""
        st = self._state
        for index, term, path in reversed(list_snapshots(self._snapdir)):
            if not st.base.index <= index < st.snapshot.index <= st.last_index():
                continue
            if st.term(index) != term:
                continue
            try:
                snap = read_snapshot(path, self._sealer, term, index)
            except StorageCorrupt:
                continue
            log.warning("%s; using the older snapshot %s and the log after it", damage, path.name)
            if damage.path.exists():
                damage.path.rename(damage.path.with_suffix(".snap.corrupt"))
            with self._changing():
                self._record(RecordType.SNAPSHOT, encode_snapshot_marker(snap, False))
                self._flush()
                st.do_create_snapshot(_meta(snap))
            return snap
        raise damage

    def _close_fds(self) -> None:
        if self._mark_fd >= 0:
            with contextlib.suppress(OSError):
                os.fsync(self._mark_fd)
        for fd in (self._fd, self._mark_fd, self._lock_fd):
            if fd >= 0:
                os.close(fd)
        self._fd = self._mark_fd = self._lock_fd = -1


def _meta(snap: Snapshot) -> Snapshot:
    return Snapshot(snap.index, snap.term, snap.voters)
