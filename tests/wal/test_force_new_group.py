"""`force_new_group`: a manager's log of a three-manager group, rewritten into a group of one
(`swarm init --force-new-cluster`), keeps the whole state and elects its only voter."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from agent.manager.logstore import bootstrap_log, force_new_group, open_log, replay
from agent.manager.raft import (
    ConfChange,
    ConfChangeType,
    Config,
    Entry,
    EntryType,
    HardState,
    RaftError,
    RaftNode,
    Snapshot,
    StateType,
)
from agent.manager.store import Cluster, Node, Secret, Store, Tx, initial_snapshot

from .helpers import KEY


async def _transactions(store: Store, *changes: object) -> list[bytes]:
    """The encoded entries of `changes` (functions of a Tx), applied to `store` as they go."""
    out: list[bytes] = []

    async def capture(data: bytes) -> int:
        out.append(data)
        store.apply(store.applied + 1, data)
        return store.applied

    store.proposer = capture
    for change in changes:
        await store.update(change)  # type: ignore[arg-type]
    return out


def _put(*objs: object) -> object:
    def change(tx: Tx) -> None:
        for o in objs:
            tx.put(o)  # type: ignore[arg-type]

    return change


async def _three_manager_log(directory: Path) -> HardState:
    """m1's log: m1 created the swarm, m2 and m3 joined as voters, a worker joined and a
    secret was created; the last entry (a second secret) is not known committed."""
    cluster = Cluster(id="cluster", cluster_id="c1", worker_token="w", manager_token="m")
    m1 = Node(id="m1", role="manager", hostname="h1", serials=("11",), status="ready")
    bootstrap_log(
        directory,
        KEY,
        Snapshot(index=1, term=1, voters=("m1",), data=initial_snapshot([cluster, m1])),
    )
    store = Store()
    store.restore(initial_snapshot([cluster, m1]), 1)
    m2 = Node(id="m2", role="manager", hostname="h2", serials=("21", "22"), status="ready")
    m3 = Node(id="m3", role="manager", hostname="h3", serials=("31",), status="ready")
    w1 = Node(id="w1", role="worker", hostname="h4", serials=("41",), status="ready")
    datas = await _transactions(
        store,
        _put(m2),
        _put(m3),
        _put(w1),
        _put(Secret(id="s1", name="db", data=b"pw")),
        _put(Secret(id="s2", name="late", data=b"x")),
    )
    add = [ConfChange(ConfChangeType.AddNode, n).encode() for n in ("m2", "m3")]
    ents = [
        Entry(2, 2, data=datas[0]),
        Entry(2, 3, EntryType.ConfChange, add[0]),
        Entry(2, 4, data=datas[1]),
        Entry(2, 5, EntryType.ConfChange, add[1]),
        Entry(3, 6, data=datas[2]),
        Entry(3, 7, data=datas[3]),
        Entry(4, 8, data=datas[4]),
    ]
    hs = HardState(term=4, vote="m2", commit=7)
    storage = open_log(directory, KEY)
    storage.save(hs, ents)
    storage.close()
    return hs


async def test_a_three_manager_log_forced_into_a_group_of_one_keeps_the_committed_state(
    tmp_path: Path,
) -> None:
    old = await _three_manager_log(tmp_path)
    before = open_log(tmp_path, KEY)
    assert replay(before)[1] == ("m1", "m2", "m3")
    before.close()

    forced = await force_new_group(tmp_path, KEY, "m1")

    assert forced.old_voters == ("m1", "m2", "m3")
    assert forced.removed == ("m2", "m3")
    assert forced.term > old.term
    storage = open_log(tmp_path, KEY)
    snap = storage.snapshot()
    assert snap.voters == ("m1",)
    assert (snap.index, snap.term) == (forced.index, forced.term)
    assert storage.hard_state.commit == forced.index
    store = Store()
    store.restore(snap.data, snap.index)
    view = store.view()
    assert sorted(n.id for n in view.list(Node)) == ["m1", "w1"]
    assert view.get(Secret, "s1") is not None
    assert view.get(Secret, "s2") is None  # not committed: dropped, as no client was told

    cluster = view.get(Cluster, "cluster")
    assert cluster is not None and cluster.worker_token == "w"
    assert set(cluster.revoked) == {"21", "22", "31"}
    storage.close()


async def test_the_forced_group_elects_its_only_voter_at_once_at_a_newer_term(
    tmp_path: Path,
) -> None:
    old = await _three_manager_log(tmp_path)
    forced = await force_new_group(tmp_path, KEY, "m1")
    storage = open_log(tmp_path, KEY)
    node = RaftNode(
        Config(id="m1", storage=storage, rng=random.Random(1), applied=storage.snapshot().index)
    )
    assert node.voters == ("m1",)
    node.campaign()
    while node.has_ready():
        rd = node.ready()
        storage.save(rd.hard_state, rd.entries, rd.snapshot)
        node.advance(rd)
    assert node.state is StateType.Leader
    assert node.term > forced.term > old.term
    entry = node.propose(b"after recovery")
    while node.has_ready():
        rd = node.ready()
        storage.save(rd.hard_state, rd.entries, rd.snapshot)
        node.advance(rd)
    assert node.commit == entry.index
    storage.close()


async def test_a_log_whose_group_does_not_hold_the_manager_is_refused_and_kept(
    tmp_path: Path,
) -> None:
    await _three_manager_log(tmp_path)
    with pytest.raises(RaftError, match="not a voter"):
        await force_new_group(tmp_path, KEY, "m9")
    storage = open_log(tmp_path, KEY)
    assert storage.snapshot().voters == ("m1",)
    assert storage.last_index() == 8  # nothing was written
    storage.close()
