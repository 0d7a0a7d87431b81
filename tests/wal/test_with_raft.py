"""A Raft node runs on DiskStorage as on MemoryStorage, and restarts from what it persisted."""

from __future__ import annotations

import random
from pathlib import Path

from agent.manager.raft import Config, EntryType, RaftNode, StateType
from agent.manager.wal import DiskStorage

from .helpers import KEY


def drive(node: RaftNode, storage: DiskStorage, applied: list[bytes]) -> None:
    """The driver's loop for a single-node group: persist, (send,) apply, advance."""
    while node.has_ready():
        rd = node.ready()
        storage.save(rd.hard_state, rd.entries, rd.snapshot)
        for e in rd.committed_entries:
            if e.type is EntryType.Normal and e.data:
                applied.append(e.data)
        node.advance(rd)


def test_a_single_node_group_persists_commits_and_restarts_from_disk(tmp_path: Path) -> None:
    storage = DiskStorage.bootstrap(tmp_path, KEY, ["m1"])
    node = RaftNode(Config(id="m1", storage=storage, rng=random.Random(1), applied=1))
    node.campaign()
    applied: list[bytes] = []
    drive(node, storage, applied)
    assert node.state is StateType.Leader
    for i in range(50):
        node.propose(f"op{i}".encode())
        drive(node, storage, applied)
    assert applied == [f"op{i}".encode() for i in range(50)]
    snap_index = storage.last_index() - 10
    storage.create_snapshot(snap_index, node.voters, b"image")
    storage.compact(snap_index - 5)
    term, commit = node.term, node.commit
    storage.close()

    storage = DiskStorage(tmp_path, KEY)
    assert storage.initial_state()[0].term == term
    assert storage.initial_state()[0].commit == commit
    node = RaftNode(
        Config(id="m1", storage=storage, rng=random.Random(2), applied=storage.snapshot().index)
    )
    again: list[bytes] = []
    drive(node, storage, again)
    assert again == applied[-10:]  # the committed entries after the snapshot, handed out again
    node.campaign()
    drive(node, storage, again)
    node.propose(b"after restart")
    drive(node, storage, again)
    assert again[-1] == b"after restart"
    storage.close()
