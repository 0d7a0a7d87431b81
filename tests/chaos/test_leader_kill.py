"""Leader kill -9 during writes: three managers, writers creating services through every
manager (so through followers, which forward, and through the leader), while the leader is
killed with -9 again and again and restarted.

The history checker: every acknowledged create is present exactly once on every manager (each
manager's own store, replayed from its log after the run, and `service ls` through each), no
name appears twice, and a create that failed or timed out is present at most once.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.chaos.leader_kill_support import (
    Writers,
    create_spec,
    forward_as,
    kill9,
    leader,
    listed,
    replayed_services,
    stop_all,
)
from tests.chaos.report import ChaosReport
from tests.harness import (
    Cluster,
    info_of,
    join_managers,
    shoal,
    start_daemon,
    wait_for,
)

pytestmark = [pytest.mark.integration]


def _kill_leaders_during_writes(
    cluster: Cluster, report: ChaosReport, *, kills: int, every: float
) -> None:
    dirs = join_managers(cluster, 3)
    alive = set(dirs)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        with Writers(dirs) as writers:
            wait_for(lambda: len(writers.history.acked) >= 3, 30, "the first writes")
            for _ in range(kills):
                time.sleep(every)  # the writers keep writing meanwhile: this is the fault's pace
                victim = leader(alive)
                kill9(victim)
                alive.discard(victim)
                leader(alive)  # a successor takes over
                procs.append(start_daemon(victim))
                alive.add(victim)
                wait_for(lambda d=victim: (info_of(d) or {}).get("connected"), 30, "restart")
            time.sleep(1.0)  # a last stretch of writes with every manager up
        history = writers.history
        acked = Counter(history.acked)
        assert acked and max(acked.values()) == 1  # each name was tried once

        # converge: every manager reaches the same applied index, lists every acked create
        began = time.monotonic()

        def converged() -> dict[Path, int] | None:
            applied = {d: (info_of(d) or {}).get("applied") for d in dirs}
            if None in applied.values() or len(set(applied.values())) != 1:
                return None
            views = [listed(d) for d in dirs]
            if any(v is None or not set(acked) <= set(v) for v in views):
                return None
            return applied  # type: ignore[return-value]

        applied = wait_for(converged, 60, "every manager to hold every acknowledged create")
        converge_s = time.monotonic() - began
        views = {d.name: listed(d) for d in dirs}
        stop_all(dirs, procs)
        stores = {d.name: replayed_services(d, applied[d]) for d in dirs}
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(10)

    found = min(sum(1 for n in acked if s[n] >= 1) for s in stores.values())
    duplicates = max(sum(c - 1 for c in s.values() if c > 1) for s in stores.values())
    report.record(
        "leader kill -9 during writes",
        injected=kills,
        acked=len(acked),
        found=found,
        duplicates=duplicates,
        converge_s=converge_s,
        note=f"{len(history.failed)} creates failed or timed out",
    )
    for where, names in {**stores, **{f"ls via {k}": v for k, v in views.items()}}.items():
        assert names is not None
        twice = sorted(n for n, c in names.items() if c > 1)
        assert not twice, f"{where}: names that appear twice: {twice}"
        missing = sorted(n for n in acked if names[n] != 1)
        assert not missing, f"{where}: acknowledged creates missing: {missing}"
    assert len({tuple(sorted(s.items())) for s in stores.values()}) == 1, "replicas differ"


def test_leader_kill_during_writes_loses_and_doubles_nothing(
    cluster: Cluster, chaos_report: ChaosReport
) -> None:
    _kill_leaders_during_writes(cluster, chaos_report, kills=3, every=2.0)


@pytest.mark.slow
def test_many_leader_kills_during_writes_lose_and_double_nothing(
    cluster: Cluster, chaos_report: ChaosReport
) -> None:
    _kill_leaders_during_writes(cluster, chaos_report, kills=12, every=2.0)


def test_a_create_resent_to_a_new_leader_gets_the_first_answer_and_applies_once(
    cluster: Cluster, chaos_report: ChaosReport
) -> None:
    """The resend path, deterministically: a manager forwards `service create` to the leader
    and gets its answer; the leader is killed; the same request (same request id) reaches the
    new leader, as a forwarding manager's resend does when the answer was lost. The new leader
    answers as the first did, and the service exists once."""
    dirs = join_managers(cluster, 3)
    forwarder = cluster.join("w1", driver="hollow")
    cluster_id = str((info_of(forwarder) or {})["cluster_id"])
    kill9(forwarder)  # its identity forwards from now on; promoted, but never a voter
    wait_for(
        lambda: {n["hostname"]: n["status"] for n in cluster.node_ls()}["w1"] == "down",
        15,
        "w1 to be seen down",
    )
    shoal("node", "promote", "w1", data=cluster.manager)
    body = {
        "cmd": "service-create",
        "args": {"spec": create_spec("resent")},
        "request": "resend-test-request",
    }
    first_leader = leader(set(dirs))
    to = str((info_of(first_leader) or {})["node_id"])
    first = asyncio.run(
        forward_as(forwarder, cluster.port, cluster_id=cluster_id, to=to, body=body)
    )
    assert first.get("ok") is True, first
    kill9(first_leader)
    alive = set(dirs) - {first_leader}
    second_leader = leader(alive)
    to = str((info_of(second_leader) or {})["node_id"])
    proc = start_daemon(first_leader)
    try:
        again = asyncio.run(
            forward_as(forwarder, cluster.port, cluster_id=cluster_id, to=to, body=body)
        )
        names = listed(second_leader)
        chaos_report.record(
            "leader kill -9, then a resend to the new leader",
            injected=1,
            acked=1,
            found=int(bool(names and names["resent"])),
            duplicates=max(0, (names or Counter())["resent"] - 1),
        )
        assert again == first, f"the resend got {again}, the first delivery {first}"
        assert names is not None and names["resent"] == 1, names
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(20)
