"""The process driver: tasks as local processes, supervised and re-adopted across restarts."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path
from typing import Any

from agent.model import TaskState
from agent.model.logs import parse_stamped
from agent.model.spec import SECOND, RestartPolicy
from agent.worker import Executor, ProcessDriver
from tests.worker.helpers import CLUSTER, NODE, Recorder, assignment, running, sh, until

S = TaskState


def _text(stamped: bytes) -> bytes:
    """The task's output without the timestamp the stamper puts on each line."""
    return b"".join(f"{x.text}\n".encode() for x in parse_stamped(stamped))


async def _output(ex: Any, task_id: str, timeout: float = 5.0) -> bytes:
    """The task's output once its stamper has written it all (it ends after the task)."""
    async with asyncio.timeout(timeout):
        last = None
        while True:
            got = _text(b"".join([chunk async for chunk in ex.logs(task_id)]))
            if got and got == last:
                return got
            last = got
            await asyncio.sleep(0.3)


def executor(state_dir: Path, rec: Recorder, **kwargs: Any) -> Executor:
    return Executor(
        ProcessDriver(state_dir),
        state_dir,
        rec,
        node_id=NODE,
        cluster_id=CLUSTER,
        default_grace=1.0,
        **kwargs,
    )


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def pid_of(container_id: str) -> int:
    return int(container_id.removeprefix("pid-"))


async def test_process_that_exits_zero_completes(tmp_path: Path) -> None:
    rec = Recorder()
    async with running(executor(tmp_path, rec)) as ex:
        await ex.set_assignments([sh("exit 0")])
        status = await rec.wait_state("task1", S.COMPLETE)
    assert status.exit_code == 0 and status.container_id.startswith("pid-")


async def test_process_that_exits_nonzero_fails_with_its_exit_code(tmp_path: Path) -> None:
    rec = Recorder()
    async with running(executor(tmp_path, rec)) as ex:
        await ex.set_assignments([sh("echo broken >&2; exit 3")])
        status = await rec.wait_state("task1", S.FAILED)
        output = await _output(ex, "task1")
    assert status.exit_code == 3 and status.err == "task: non-zero exit (3)"
    assert output == b"broken\n"


async def test_crashing_process_restarts_by_its_policy(tmp_path: Path) -> None:
    policy = RestartPolicy(condition="on-failure", delay_ns=SECOND // 10, max_attempts=2)
    rec = Recorder()
    async with running(executor(tmp_path, rec)) as ex:
        await ex.set_assignments([sh("echo run; exit 1", restart=policy)])
        final = await rec.wait_state("task1", S.FAILED, count=3)
        output = await _output(ex, "task1")
    assert final.restarts == 2
    assert output == b"run\nrun\nrun\n"


async def test_env_and_working_directory_reach_the_process(tmp_path: Path) -> None:
    rec = Recorder()
    task = sh('echo "$GREETING $(pwd)"', env=("GREETING=hello",), dir=str(tmp_path))
    async with running(executor(tmp_path / "state", rec)) as ex:
        await ex.set_assignments([task])
        await rec.wait_state("task1", S.COMPLETE)
        output = await _output(ex, "task1")
    assert output == f"hello {tmp_path}\n".encode()


async def test_missing_executable_is_rejected(tmp_path: Path) -> None:
    rec = Recorder()
    async with running(executor(tmp_path, rec)) as ex:
        await ex.set_assignments([assignment(image="/no/such/program")])
        status = await rec.wait_state("task1", S.REJECTED)
    assert status.err == "executable /no/such/program is not found on this node"


async def test_restarted_agent_adopts_a_running_process(tmp_path: Path) -> None:
    task = assignment(command=("sleep", "3600"))
    rec = Recorder()
    async with running(executor(tmp_path, rec)) as ex:
        await ex.set_assignments([task])
        first = await rec.wait_state("task1", S.RUNNING)
    pid = pid_of(first.container_id)
    assert alive(pid)  # dropping the executor left the process running

    rec2 = Recorder()
    async with running(executor(tmp_path, rec2)) as ex2:  # offline: no set_assignments
        adopted = await rec2.wait_state("task1", S.RUNNING)
        assert adopted.container_id == first.container_id
        assert rec2.states("task1") == [S.RUNNING]
        await ex2.set_assignments([])
        await rec2.wait_state("task1", S.SHUTDOWN)
    await until(lambda: not alive(pid), what=f"process {pid} gone")
    assert not (tmp_path / "processes" / "task1").exists()


async def test_adopted_process_that_exits_is_reported_and_restarted(tmp_path: Path) -> None:
    policy = RestartPolicy(condition="any", delay_ns=0)
    task = assignment(command=("sleep", "3600"), restart=policy)
    rec = Recorder()
    async with running(executor(tmp_path, rec)) as ex:
        await ex.set_assignments([task])
        first = await rec.wait_state("task1", S.RUNNING)
    rec2 = Recorder()
    async with running(executor(tmp_path, rec2)) as ex2:
        await rec2.wait_state("task1", S.RUNNING)
        os.kill(pid_of(first.container_id), signal.SIGKILL)
        failed = await rec2.wait_state("task1", S.FAILED)
        again = await rec2.wait_state("task1", S.RUNNING, count=2)
        await ex2.set_assignments([])
        await rec2.wait_state("task1", S.SHUTDOWN)
    assert "exit code is unknown" in failed.err
    assert again.container_id != first.container_id and again.restarts == 1
    await until(lambda: not alive(pid_of(again.container_id)), what="restarted process gone")


async def test_process_gone_while_offline_is_started_again(tmp_path: Path) -> None:
    task = assignment(command=("sleep", "3600"), restart=RestartPolicy(condition="any"))
    rec = Recorder()
    async with running(executor(tmp_path, rec)) as ex:
        await ex.set_assignments([task])
        first = await rec.wait_state("task1", S.RUNNING)
    pid = pid_of(first.container_id)
    os.kill(pid, signal.SIGKILL)
    await until(lambda: not alive(pid), what="the killed process gone")
    rec2 = Recorder()
    # delay 0 for the restart; the spec's 5 s default delay is injected away.
    async with running(executor(tmp_path, rec2, sleep=_no_wait)) as ex2:
        again = await rec2.wait_state("task1", S.RUNNING)
        await ex2.set_assignments([])
        await rec2.wait_state("task1", S.SHUTDOWN)
    assert rec2.states("task1")[0] is S.FAILED
    assert again.container_id != first.container_id


async def _no_wait(delay: float) -> None:
    return None


async def test_following_logs_ends_when_the_process_exits(tmp_path: Path) -> None:
    rec = Recorder()
    async with running(executor(tmp_path, rec)) as ex:
        await ex.set_assignments([sh("echo first; sleep 0.3; echo second")])
        await rec.wait_state("task1", S.RUNNING)
        output = _text(b"".join([chunk async for chunk in ex.logs("task1", follow=True)]))
    assert output == b"first\nsecond\n"


async def test_process_runs_as_the_requested_user(tmp_path: Path) -> None:
    task = assignment(command=("id", "-u"), user="nobody")
    rec = Recorder()
    async with running(executor(tmp_path, rec)) as ex:
        await ex.set_assignments([task])
        status = await rec.wait_for(lambda: (s := rec.last("task1")) and s.state.is_terminal and s)
        output = await _output(ex, "task1")
    if os.geteuid() == 0:
        assert status.state is S.COMPLETE and output == b"65534\n"
    else:
        assert status.state is S.REJECTED and "not run as root" in status.err
