"""Where a manager's Raft log lives: opening and bootstrapping it (see `agent.manager.wal`),
and rewriting it into a group of one (`force_new_group`, for `swarm init --force-new-cluster`).
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass, replace
from pathlib import Path

from agent.manager.raft import (
    ConfChange,
    ConfChangeType,
    EntryType,
    HardState,
    RaftError,
    Snapshot,
    StorageError,
)
from agent.manager.store import Cluster, Node, NodeRole, NodeStatus, Store, Tx
from agent.manager.wal import SEGMENT_BYTES, DiskStorage, StorageLost
from agent.manager.wal.synced import commit_beyond_log
from agent.model.stamps import now_text

__all__ = ["SEGMENT_BYTES_ENV", "ForcedGroup", "bootstrap_log", "force_new_group", "open_log"]

# the size at which the log starts a new segment (default 8 MiB); small ones for tests
SEGMENT_BYTES_ENV = "SHOAL_WAL_SEGMENT_BYTES"


def _segment_bytes() -> int:
    value = os.environ.get(SEGMENT_BYTES_ENV, "")
    if not value:
        return SEGMENT_BYTES
    if not value.isdigit() or int(value) < 1024:
        raise StorageError(f"{SEGMENT_BYTES_ENV}={value!r}: give a size in bytes of at least 1024")
    return int(value)


def bootstrap_log(directory: Path, data_key: bytes, snapshot: Snapshot) -> None:
    """Write the log of a brand-new group whose first state is `snapshot`."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    storage = DiskStorage(directory, data_key)
    try:
        hs = HardState(term=snapshot.term, vote=None, commit=snapshot.index)
        storage.save(hs, (), snapshot)
    finally:
        storage.close()


def open_log(directory: Path, data_key: bytes) -> DiskStorage:
    """The manager's log; StorageCorrupt (StorageLost) when it is damaged or lost entries.

    Beyond what the storage checks, a manager refuses a log that ends before the commit index
    it recorded: a voter must never forget what it acknowledged.
    """
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    storage = DiskStorage(directory, data_key, segment_bytes=_segment_bytes())
    reason = commit_beyond_log(storage.last_index(), storage.hard_state.commit)
    if reason is not None:
        storage.close()
        raise StorageLost(directory / "wal", None, reason)
    return storage


@dataclass(frozen=True, slots=True)
class ForcedGroup:
    """What `force_new_group` did: the new snapshot's index and term, the voters the group
    had, and the managers it removed from the store (their certificates revoked)."""

    index: int
    term: int
    old_voters: tuple[str, ...]
    removed: tuple[str, ...]


def replay(storage: DiskStorage) -> tuple[Store, tuple[str, ...]]:
    """The store and the voters after every entry the log knows committed. Entries past the
    commit index are dropped, as etcd's `--force-new-cluster` drops them: no client was told
    they were written (a write that failed for want of a quorum stays undone)."""
    snap = storage.snapshot()
    store = Store()
    store.restore(snap.data, snap.index)
    voters = list(snap.voters)
    commit = min(storage.hard_state.commit, storage.last_index())
    for e in storage.entries(snap.index + 1, commit + 1) if commit > snap.index else []:
        if e.type is EntryType.ConfChange:
            cc = ConfChange.decode(e.data)
            if cc.kind is ConfChangeType.AddNode and cc.node_id not in voters:
                voters.append(cc.node_id)
            elif cc.kind is ConfChangeType.RemoveNode and cc.node_id in voters:
                voters.remove(cc.node_id)
            store.applied = e.index
        elif e.data:
            store.apply(e.index, e.data)
        else:
            store.applied = e.index
    return store, tuple(sorted(voters))


async def force_new_group(directory: Path, data_key: bytes, node_id: str) -> ForcedGroup:
    """Rewrite this manager's log into a group of one, `node_id` alone, keeping the whole
    state: every committed entry is applied (see `replay`), the other managers are removed
    from the store (and their certificates revoked, so they cannot come back with their old
    state), and the result is written as a snapshot at a new term whose only voter is
    `node_id`. The manager then starts as the leader of its own group (`RaftDriver.run`).
    Its daemon must not have the log open (the storage's lock refuses a second opener)."""
    storage = await asyncio.to_thread(open_log, directory, data_key)
    try:
        store, voters = replay(storage)
        if node_id not in voters:
            raise RaftError(
                f"this manager ({node_id}) is not a voter of the Raft group its log describes"
                f" ({', '.join(voters) or 'none'}): it cannot recover the swarm from it"
            )
        index = store.applied

        async def apply_here(data: bytes) -> int:
            nonlocal index
            index += 1
            store.apply(index, data)
            return index

        store.proposer = apply_here
        removed = await store.update(lambda tx: _remove_others(tx, node_id, now_text()))
        last = storage.last_index()
        term = max(storage.hard_state.term, storage.term(last)) + 1
        snap = Snapshot(index=index, term=term, voters=(node_id,), data=store.snapshot())
        hs = HardState(term=term, vote=None, commit=index)
        await asyncio.to_thread(storage.save, hs, (), snap)
        return ForcedGroup(index, term, voters, removed)
    finally:
        storage.close()


def _remove_others(tx: Tx, node_id: str, stamp: str) -> tuple[str, ...]:
    cluster = tx.get(Cluster, "cluster")
    if cluster is None:
        raise RaftError("the log holds no cluster record: it is not a swarm manager's log")
    removed: list[str] = []
    revoked = dict(cluster.revoked)
    for n in tx.list(Node):
        if n.role == NodeRole.MANAGER and n.id != node_id:
            tx.delete(Node, n.id)
            revoked.update({s: stamp for s in n.serials})
            removed.append(n.id)
    if removed:
        tx.put(replace(cluster, revoked=revoked))
    me = tx.get(Node, node_id)
    if me is not None and (me.role != NodeRole.MANAGER or me.status != NodeStatus.READY):
        tx.put(replace(me, role=NodeRole.MANAGER, status=NodeStatus.READY, updated=stamp))
    return tuple(removed)
