"""The executor against an in-memory driver: reconciling, restarting, persisting, rejecting."""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path
from typing import Any

from agent.model import TaskState, TaskStatus
from agent.model.spec import SECOND, RestartPolicy
from agent.worker import Driver, Executor, HollowDriver
from agent.worker.saved import ASSIGNMENTS_FILE, load_assignments
from tests.worker.fakes import FakeDriver
from tests.worker.helpers import CLUSTER, NODE, Recorder, running, sh, until

S = TaskState


def executor(driver: Driver, tmp_path: Path, recorder: Recorder, **kwargs: Any) -> Executor:
    return Executor(
        driver, tmp_path, recorder, node_id=NODE, cluster_id=CLUSTER, default_grace=0.1, **kwargs
    )


def on_failure(max_attempts: int = 2) -> RestartPolicy:
    return RestartPolicy(
        condition="on-failure", delay_ns=int(0.05 * SECOND), max_attempts=max_attempts
    )


async def test_task_goes_preparing_starting_running(tmp_path: Path) -> None:
    rec = Recorder()
    async with running(executor(FakeDriver(), tmp_path, rec)) as ex:
        await ex.set_assignments([sh("sleep 1")])
        await rec.wait_state("task1", S.RUNNING)
    assert rec.states("task1") == [S.PREPARING, S.STARTING, S.RUNNING]
    assert ex.status()["task1"].container_id == "fake-1"


async def test_crashing_task_restarts_exactly_max_attempts_then_stays_failed(
    tmp_path: Path,
) -> None:
    driver, rec = FakeDriver(), Recorder()
    driver.exits["task1"] = [1, 1, 1, 1]
    async with running(executor(driver, tmp_path, rec)) as ex:
        await ex.set_assignments([sh("exit 1", restart=on_failure(2))])
        final = await rec.wait_for(
            lambda: (s := rec.last("task1")) and s.state is S.FAILED and s.restarts == 2 and s,
            what="the third failure",
        )
    assert driver.starts["task1"] == 3
    assert final.exit_code == 1 and final.err == "task: non-zero exit (1)"
    assert rec.states("task1").count(S.FAILED) == 3
    assert "restarting" not in final.message


async def test_on_failure_does_not_restart_a_task_that_completes(tmp_path: Path) -> None:
    driver, rec = FakeDriver(), Recorder()
    driver.exits["task1"] = [0]
    async with running(executor(driver, tmp_path, rec)) as ex:
        await ex.set_assignments([sh("exit 0", restart=on_failure())])
        await rec.wait_state("task1", S.COMPLETE)
    assert driver.starts["task1"] == 1


async def test_condition_any_restarts_a_task_that_exits_zero(tmp_path: Path) -> None:
    driver, rec = FakeDriver(), Recorder()
    driver.exits["task1"] = [0, 0]
    policy = RestartPolicy(condition="any", delay_ns=int(0.05 * SECOND))
    async with running(executor(driver, tmp_path, rec)) as ex:
        await ex.set_assignments([sh("exit 0", restart=policy)])
        status = await rec.wait_state("task1", S.RUNNING)  # the third run lasts
    assert driver.starts["task1"] == 3 and status.restarts == 2
    assert rec.states("task1").count(S.COMPLETE) == 2


async def test_restart_window_counts_only_recent_restarts(tmp_path: Path) -> None:
    now = [1000.0]
    driver, rec = FakeDriver(), Recorder()
    policy = RestartPolicy(
        condition="on-failure", delay_ns=0, max_attempts=1, window_ns=10 * SECOND
    )
    async with running(executor(driver, tmp_path, rec, clock=lambda: now[0])) as ex:
        await ex.set_assignments([sh("sleep 9", restart=policy)])
        for run in (1, 2):
            await rec.wait_state("task1", S.RUNNING, count=run)
            now[0] += 60.0  # the task ran longer than the window before failing
            driver.exit("task1", 1)
        await rec.wait_state("task1", S.RUNNING, count=3)
        driver.exit("task1", 1)  # fails again at once: the last restart is inside the window
        await rec.wait_state("task1", S.FAILED, count=3)
    assert driver.starts["task1"] == 3
    assert rec.states("task1")[-1] is S.FAILED


async def test_local_restarts_can_be_left_to_the_managers(tmp_path: Path) -> None:
    driver, rec = FakeDriver(), Recorder()
    driver.exits["task1"] = [1, 1]
    async with running(executor(driver, tmp_path, rec, local_restarts=False)) as ex:
        await ex.set_assignments([sh("exit 1", restart=on_failure())])
        await rec.wait_state("task1", S.FAILED)
        await ex.set_assignments([sh("exit 1", restart=on_failure(), version=2)])
    assert driver.starts["task1"] == 1


async def test_a_failed_task_restarts_locally_once_the_managers_fall_silent(
    tmp_path: Path,
) -> None:
    driver, rec = FakeDriver(), Recorder()
    driver.exits["task1"] = [1]
    autonomous = {"now": False}
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        if seconds >= 1.0:  # the wait for the managers: they fall silent meanwhile
            autonomous["now"] = True
        await asyncio.sleep(0)

    ex = executor(driver, tmp_path, rec, local_restarts=lambda: autonomous["now"], sleep=sleep)
    async with running(ex):
        await ex.set_assignments([sh("exit 1", restart=on_failure())])
        await rec.wait_state("task1", S.FAILED)
        await rec.wait_state("task1", S.RUNNING)  # started again, here
    assert driver.starts["task1"] == 2
    assert 1.0 in slept  # it waited for the managers before acting alone


async def test_rejected_task_reports_reason_and_is_not_retried(tmp_path: Path) -> None:
    driver, rec = FakeDriver(), Recorder()
    driver.reject["task1"] = "image nope:1 is not present on this node"
    async with running(executor(driver, tmp_path, rec)) as ex:
        await ex.set_assignments([sh("true", restart=RestartPolicy(condition="any"))])
        status = await rec.wait_state("task1", S.REJECTED)
    assert status.err == "image nope:1 is not present on this node"
    assert "task1" not in driver.starts


async def test_every_state_change_is_reported_once(tmp_path: Path) -> None:
    driver, rec = FakeDriver(), Recorder()
    async with running(executor(driver, tmp_path, rec)) as ex:
        tasks = [sh("sleep 1", task_id=f"t{i}", slot=i) for i in range(5)]
        await ex.set_assignments(tasks)
        await rec.wait_for(
            lambda: (
                all(s.state is S.RUNNING for s in ex.status().values()) and len(ex.status()) == 5
            )
        )
        await ex.set_assignments(tasks)  # the same set again changes nothing
        driver.exit("t0", 2)
        await rec.wait_state("t0", S.FAILED)
        await ex.set_assignments(tasks[1:])
        await until(lambda: "t0" not in ex.status(), what="t0 forgotten")
    for i in range(5):
        states = rec.states(f"t{i}")
        assert all(a != b for a, b in itertools.pairwise(states)), states
    assert rec.states("t0") == [S.PREPARING, S.STARTING, S.RUNNING, S.FAILED]
    assert "t0" in driver.removes


async def test_starts_run_at_most_eight_at_a_time(tmp_path: Path) -> None:
    driver, rec = FakeDriver(), Recorder()
    driver.gate = asyncio.Event()
    async with running(executor(driver, tmp_path, rec)) as ex:
        await ex.set_assignments([sh("true", task_id=f"t{i}", slot=i) for i in range(20)])
        await rec.wait_for(lambda: sum(s.state is S.STARTING for s in rec.statuses) == 8)
        assert driver.starting == 8
        driver.gate.set()
        await rec.wait_for(lambda: sum(s.state is S.RUNNING for s in rec.statuses) == 20)
    assert driver.max_starting == 8


async def test_desired_shutdown_stops_and_remove_removes(tmp_path: Path) -> None:
    driver, rec = FakeDriver(), Recorder()
    async with running(executor(driver, tmp_path, rec)) as ex:
        await ex.set_assignments([sh("sleep 9")])
        await rec.wait_state("task1", S.RUNNING)
        await ex.set_assignments([sh("sleep 9", desired_state="shutdown", version=2)])
        await rec.wait_state("task1", S.SHUTDOWN)
        assert driver.stops == ["task1"] and driver.removes == []
        await ex.set_assignments([sh("sleep 9", desired_state="remove", version=3)])
        await until(lambda: "task1" in driver.removes, what="task1 removed")
    assert ex.status()["task1"].state is S.SHUTDOWN
    assert rec.states("task1").count(S.SHUTDOWN) == 1


async def test_a_task_is_drained_before_it_is_stopped(tmp_path: Path) -> None:
    driver, rec = FakeDriver(), Recorder()
    drained = asyncio.Event()
    seen: list[tuple[str, list[str]]] = []

    async def drain(task_id: str) -> None:
        seen.append((task_id, list(driver.stops)))  # what had been stopped when asked
        await drained.wait()

    async with running(executor(driver, tmp_path, rec, before_stop=drain)) as ex:
        await ex.set_assignments([sh("sleep 9")])
        await rec.wait_state("task1", S.RUNNING)
        await ex.set_assignments([sh("sleep 9", desired_state="shutdown", version=2)])
        await until(lambda: seen, what="the drain asked for")
        assert driver.stops == []  # held until drained
        drained.set()
        await rec.wait_state("task1", S.SHUTDOWN)
    assert seen == [("task1", [])] and driver.stops == ["task1"]


async def test_assignments_for_another_node_or_cluster_are_rejected_and_counted(
    tmp_path: Path,
) -> None:
    driver, rec = FakeDriver(), Recorder()
    mine = sh("sleep 9")
    async with running(executor(driver, tmp_path, rec)) as ex:
        await ex.set_assignments([mine])
        await rec.wait_state("task1", S.RUNNING)
        await ex.set_assignments(
            [
                mine,
                sh("sleep 9", task_id="other-node", node_id="node2"),
                sh("sleep 9", task_id="other-cluster", cluster_id="cluster2"),
            ]
        )
        await ex.set_assignments([mine])  # a later wake-up proves the earlier one was handled
    assert ex.rejected_assignments == 2
    assert set(driver.starts) == {"task1"} and driver.starts["task1"] == 1
    assert driver.stops == [] and set(ex.status()) == {"task1"}
    assert [a.task_id for a in load_assignments(tmp_path)] == ["task1"]


async def test_assignments_are_saved_before_anything_acts_on_them(tmp_path: Path) -> None:
    ex = executor(FakeDriver(), tmp_path, Recorder())
    await ex.set_assignments([sh("sleep 9")])  # run() has not started
    assert (tmp_path / ASSIGNMENTS_FILE).exists()
    assert load_assignments(tmp_path) == [sh("sleep 9")]


async def test_an_older_copy_of_an_assignment_does_not_win(tmp_path: Path) -> None:
    driver, rec = FakeDriver(), Recorder()
    async with running(executor(driver, tmp_path, rec)) as ex:
        await ex.set_assignments([sh("sleep 9", desired_state="shutdown", version=5)])
        await rec.wait_state("task1", S.SHUTDOWN)
        await ex.set_assignments([sh("sleep 9", version=4)])
    assert "task1" not in driver.starts
    assert load_assignments(tmp_path)[0].version == 5


async def test_offline_restart_brings_saved_tasks_back(tmp_path: Path) -> None:
    hollow, rec = HollowDriver(), Recorder()
    async with running(executor(hollow, tmp_path, rec)) as ex:
        await ex.set_assignments([sh("sleep 9")])
        first = await rec.wait_state("task1", S.RUNNING)
    # The agent restarts while the broker is unreachable: nobody calls set_assignments.
    rec2 = Recorder()
    async with running(executor(hollow, tmp_path, rec2)):
        adopted = await rec2.wait_state("task1", S.RUNNING)
    assert adopted.container_id == first.container_id
    assert rec2.states("task1") == [S.RUNNING]  # re-attached, not restarted
    # After a reboot nothing runs: the task is started again.
    rec3 = Recorder()
    async with running(executor(HollowDriver(), tmp_path, rec3)):
        await rec3.wait_state("task1", S.RUNNING)
    assert rec3.states("task1") == [S.PREPARING, S.STARTING, S.RUNNING]


async def test_adopted_tasks_nobody_wants_are_stopped_and_removed(tmp_path: Path) -> None:
    driver, rec = FakeDriver(), Recorder()
    async with running(executor(driver, tmp_path, rec)) as ex:
        await ex.set_assignments([sh("sleep 9"), sh("sleep 9", task_id="t2", slot=2)])
        await rec.wait_for(lambda: len(rec.states("t2")) == 3 and len(rec.states("task1")) == 3)
    (tmp_path / ASSIGNMENTS_FILE).unlink()
    foreign = sh("sleep 9", task_id="theirs", cluster_id="cluster2")
    await driver.start(foreign)
    rec2 = Recorder()
    async with running(executor(driver, tmp_path, rec2)) as ex2:
        await rec2.wait_for(lambda: len(rec2.statuses) == 2, what="two shutdowns")
        await until(lambda: len(driver.removes) == 2, what="both removed")
        assert ex2.status() == {} or all(s.state is S.SHUTDOWN for s in ex2.status().values())
    assert sorted(driver.removes) == ["t2", "task1"]
    assert "theirs" in driver.runs and "theirs" not in driver.stops


async def test_a_damaged_assignments_file_is_not_fatal(tmp_path: Path) -> None:
    (tmp_path / ASSIGNMENTS_FILE).write_bytes(b"\xc1 not msgpack")
    rec = Recorder()
    async with running(executor(FakeDriver(), tmp_path, rec)) as ex:
        await ex.set_assignments([sh("sleep 9")])
        await rec.wait_state("task1", S.RUNNING)


async def test_a_plain_function_can_receive_reports(tmp_path: Path) -> None:
    seen: list[TaskStatus] = []
    rec = Recorder()

    def report(status: TaskStatus) -> None:
        seen.append(status)
        rec.statuses.append(status)
        rec._changed.set()

    ex = Executor(FakeDriver(), tmp_path, report, node_id=NODE, cluster_id=CLUSTER)
    async with running(ex):
        await ex.set_assignments([sh("sleep 9")])
        await rec.wait_state("task1", S.RUNNING)
    assert [s.state for s in seen] == [S.PREPARING, S.STARTING, S.RUNNING]


async def test_logs_come_from_the_driver(tmp_path: Path) -> None:
    rec = Recorder()
    async with running(executor(FakeDriver(), tmp_path, rec)) as ex:
        await ex.set_assignments([sh("sleep 9")])
        await rec.wait_state("task1", S.RUNNING)
        chunks = [c async for c in ex.logs("task1")]
    assert chunks == [b"log of task1\n"]


async def test_assignments_set_while_starting_win_over_the_saved_ones(tmp_path: Path) -> None:
    await executor(FakeDriver(), tmp_path, Recorder()).set_assignments([sh("sleep 9")])
    driver, rec = FakeDriver(), Recorder()
    ex = executor(driver, tmp_path, rec)
    async with running(ex):
        await asyncio.sleep(0)  # run() is now loading the saved set
        await ex.set_assignments([sh("sleep 9", task_id="fresh")])
        await rec.wait_state("fresh", S.RUNNING)
        # The saved task may have started before the new set arrived; it must not stay.
        await until(lambda: set(ex.status()) == {"fresh"}, what="only the fresh task")
    assert "task1" not in driver.runs


async def test_an_empty_set_waits_until_adopted_tasks_are_gone_too(tmp_path: Path) -> None:
    driver, rec = FakeDriver(), Recorder()
    async with running(executor(driver, tmp_path, rec)) as ex:
        await ex.set_assignments([sh("sleep 9"), sh("sleep 9", task_id="t2", slot=2)])
        await rec.wait_for(lambda: len(rec.states("t2")) == 3 and len(rec.states("task1")) == 3)
    # a new executor (a restarted node told to run nothing): what it adopts must go as well,
    # though it never reported a status for those tasks
    ex2 = executor(driver, tmp_path, Recorder())
    await ex2.set_assignments([])
    assert not await ex2.wait_empty(0.05)  # not running: nothing adopted yet
    async with running(ex2):
        assert await ex2.wait_empty(5)
        assert ex2.known() == set() and ex2.status() == {}
    assert sorted(driver.removes) == ["t2", "task1"]
