"""Damaged raft state on disk: a manager never serves as if it had entries it lost.

A follower of three managers (real processes over a real mosquitto) is stopped, its raft
files are damaged, and it is started again. Each fault ends in a clear refusal (one line naming
the file and what to do, in the log and in `shoal info`'s last_error; the node no longer votes
or answers as a manager) or a safe recovery (it catches up and lists every acknowledged
write); never a silent loss, never a loop of tracebacks, and SIGTERM always ends the daemon.
After each refusal the follower gets its own intact state back (a copy taken when it was
stopped: it acknowledged nothing since) and catches up, for the next fault.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from agent.manager.logstore import SEGMENT_BYTES_ENV
from agent.manager.wal.synced import MARK_NAME
from tests.chaos.report import ChaosReport
from tests.chaos.wal_support import (
    Managers,
    Outcome,
    backup,
    flip,
    record_offsets,
    restart_damaged,
    restore,
    segments,
    sigterm,
    snapshots,
)
from tests.harness import info_of, new_cluster, shoal, wait_for

pytestmark = [pytest.mark.integration]

REJOIN = "shoal swarm leave --force"


@pytest.fixture(scope="module")
def managers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Managers]:
    old = os.environ.get(SEGMENT_BYTES_ENV)
    os.environ[SEGMENT_BYTES_ENV] = "4096"  # small segments: several of them within seconds
    try:
        with new_cluster(tmp_path_factory.mktemp("wal")) as (cluster, _):
            dirs = [cluster.manager] + [cluster.join(f"m{i}", role="manager") for i in (2, 3)]
            m = Managers(cluster, dirs)
            wait_for(lambda: len(m.up()) == 3, 30, "three managers")
            for _ in range(40):
                if all(len(segments(d)) >= 3 for d in dirs):
                    break
                m.write()
            yield m
            for p in m.procs:
                if p.poll() is None:
                    p.kill()
                    p.wait(5)
    finally:
        if old is None:
            os.environ.pop(SEGMENT_BYTES_ENV, None)
        else:
            os.environ[SEGMENT_BYTES_ENV] = old


def _assert_refusal(m: Managers, d: Path, out: Outcome, names: Path) -> None:
    assert "\n" not in out.error
    assert str(names) in out.error, out.error
    assert REJOIN in out.error and "docs/operations.md" in out.error
    assert out.log.count("the manager role is stopped") == 1, out.log
    got = info_of(d)
    assert got is not None and got["last_error"] == out.error
    assert not got["manager"] and not got["is_leader"]
    ls = shoal("cert", "ls", data=d, check=False)
    assert ls.returncode != 0 and "the manager role is stopped" in ls.stderr
    m.write()  # the two others still make a quorum


def _fault(
    m: Managers,
    report: ChaosReport,
    tmp_path: Path,
    fault: str,
    inject: Callable[[Path], Path],
    expect_refusal: bool | None = True,
    restore_after: bool = True,
) -> tuple[Path, Outcome]:
    """Stop a follower, write on, damage it (`inject` returns the file it damaged), start it."""
    m.write(2)
    d = m.follower()
    sigterm(d)
    saved = tmp_path / "raft-backup"
    backup(d, saved)
    m.write(3)  # acknowledged while it is down: the leader knows it had the earlier ones
    damaged = inject(d)
    log_from = len((d / "shoal.log").read_text())
    proc, out = restart_damaged(m, d, log_from)
    assert "Traceback" not in out.log, out.log
    if expect_refusal is not None:
        assert out.refused == expect_refusal, out
    if out.refused:
        _assert_refusal(m, d, out, damaged)
        found = m.listed(m.leader())
    else:
        found = m.listed(d)
    assert found == len(m.acked)
    stop_s = sigterm(d, proc)
    how = "refused" if out.refused else "recovered"
    report.record(
        fault,
        injected=1,
        acked=len(m.acked),
        found=found,
        converge_s=out.seconds,
        note=f"{how}; SIGTERM {stop_s:.1f} s",
    )
    if restore_after:
        if out.refused:  # it acknowledged nothing since the copy: the copy is its state
            restore(d, saved)
        m.restart(d)
        m.caught_up(d)
    return d, out


def _truncate_middle(d: Path) -> Path:
    seg = segments(d)[-1]
    os.truncate(seg, seg.stat().st_size // 2)
    return seg


def test_a_wal_cut_in_the_middle_is_refused_and_the_manager_rejoins_as_documented(
    managers: Managers, chaos_report: ChaosReport, tmp_path: Path
) -> None:
    d, _ = _fault(
        managers,
        chaos_report,
        tmp_path,
        "wal segment truncated to its middle",
        _truncate_middle,
        restore_after=False,
    )
    managers.restart(d)  # refused again, and up: the operator finds it so
    node_id = (info_of(d) or {})["node_id"]
    # the recovery docs/operations.md gives: leave here, rm there, join as a new member
    shoal("swarm", "leave", "--force", data=d)
    shoal("node", "rm", "--force", node_id, data=managers.leader())
    managers.cluster.nodes.remove(d)
    new = managers.cluster.join(f"{d.name}-again", role="manager")
    managers.dirs[managers.dirs.index(d)] = new
    wait_for(lambda: len(managers.up()) == 3, 30, "the rejoined manager in the group")
    managers.caught_up(new)


def test_a_torn_write_at_the_tail_is_cut_off_and_the_manager_catches_up(
    managers: Managers, chaos_report: ChaosReport, tmp_path: Path
) -> None:
    def tear(d: Path) -> Path:
        seg = segments(d)[-1]
        data = seg.read_bytes()
        last = record_offsets(seg)[-1]
        with seg.open("ab") as f:  # half a record more: a write a crash interrupted
            f.write(data[last : last + (len(data) - last) // 2])
        return seg

    _, out = _fault(
        managers, chaos_report, tmp_path, "torn write at the wal tail", tear, expect_refusal=False
    )
    assert "cutting a torn write" in out.log


def test_a_wal_one_synced_record_short_is_refused(
    managers: Managers, chaos_report: ChaosReport, tmp_path: Path
) -> None:
    def cut_last_record(d: Path) -> Path:
        seg = segments(d)[-1]
        os.truncate(seg, record_offsets(seg)[-1])  # a clean record boundary
        return seg

    _fault(managers, chaos_report, tmp_path, "wal one record short", cut_last_record)


def test_a_flipped_byte_in_the_middle_of_a_segment_is_refused(
    managers: Managers, chaos_report: ChaosReport, tmp_path: Path
) -> None:
    def flip_middle(d: Path) -> Path:
        segs = segments(d)
        seg = segs[len(segs) // 2]
        offsets = record_offsets(seg)
        assert len(offsets) >= 3, seg
        flip(seg, offsets[len(offsets) // 2] + 20)
        return seg

    _fault(managers, chaos_report, tmp_path, "wal byte flipped mid-segment", flip_middle)


def test_a_segment_deleted_in_the_middle_is_refused(
    managers: Managers, chaos_report: ChaosReport, tmp_path: Path
) -> None:
    def delete_middle(d: Path) -> Path:
        segs = segments(d)
        assert len(segs) >= 3, segs
        segs[1].unlink()
        return segs[0]  # the error names the segment before the gap

    _fault(managers, chaos_report, tmp_path, "wal segment deleted mid-log", delete_middle)


def test_a_truncated_snapshot_file_is_refused_or_recovered_without_loss(
    managers: Managers, chaos_report: ChaosReport, tmp_path: Path
) -> None:
    def truncate_snapshot(d: Path) -> Path:
        snap = snapshots(d)[-1]
        os.truncate(snap, snap.stat().st_size // 2)
        return snap

    _fault(
        managers,
        chaos_report,
        tmp_path,
        "snapshot file truncated",
        truncate_snapshot,
        expect_refusal=None,
    )


def test_a_corrupted_snapshot_file_is_refused_or_recovered_without_loss(
    managers: Managers, chaos_report: ChaosReport, tmp_path: Path
) -> None:
    def corrupt_snapshot(d: Path) -> Path:
        snap = snapshots(d)[-1]
        flip(snap, snap.stat().st_size // 2)
        return snap

    _fault(
        managers,
        chaos_report,
        tmp_path,
        "snapshot file byte flipped",
        corrupt_snapshot,
        expect_refusal=None,
    )


def test_a_cut_wal_without_a_sync_mark_stops_the_manager_once_the_leader_tells(
    managers: Managers, chaos_report: ChaosReport, tmp_path: Path
) -> None:
    """A log written before sync marks opens as a torn write; the leader's commit index then
    shows the loss, and the driver stops the manager role instead of looping."""

    def cut_unmarked(d: Path) -> Path:
        (d / "manager" / "raft" / MARK_NAME).unlink()
        seg = segments(d)[-1]
        os.truncate(seg, record_offsets(seg)[1])  # only the first record after the header
        return d / "manager" / "raft"

    _, out = _fault(
        managers,
        chaos_report,
        tmp_path,
        "wal cut, no sync mark (older log)",
        cut_unmarked,
        expect_refusal=None,
    )
    if out.refused:
        assert "beyond the last index" in out.error


def test_a_single_manager_with_a_cut_wal_refuses_and_keeps_its_data(
    tmp_path: Path, chaos_report: ChaosReport
) -> None:
    with new_cluster(tmp_path) as (cluster, _):
        mgr = cluster.manager
        m = Managers(cluster, [mgr])
        m.write(3)
        sigterm(mgr)
        seg = _truncate_middle(mgr)
        kept = {
            p.name: p.read_bytes() for p in (mgr / "manager" / "raft").rglob("*") if p.is_file()
        }
        proc, out = restart_damaged(m, mgr, len((mgr / "shoal.log").read_text()))
        assert out.refused
        assert "Traceback" not in out.log
        assert "\n" not in out.error and str(seg) in out.error and REJOIN in out.error
        got = info_of(mgr)
        assert got is not None and got["broker_pid"] is not None  # the fleet's broker stays up
        ls = shoal("cert", "ls", data=mgr, check=False)
        assert ls.returncode != 0 and "the manager role is stopped" in ls.stderr
        stop_s = sigterm(mgr, proc)
        now = {p.name: p.read_bytes() for p in (mgr / "manager" / "raft").rglob("*") if p.is_file()}
        assert now == kept  # nothing cut, rewritten or deleted: the operator has it all
        chaos_report.record(
            "single manager, wal truncated",
            injected=1,
            acked=len(m.acked),
            converge_s=out.seconds,
            note=f"refused, data kept; SIGTERM {stop_s:.1f} s",
        )
