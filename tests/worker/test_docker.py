"""The docker driver and the executor against the real Docker Engine on this machine."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path
from typing import Any

import pytest

from agent.model import TaskState
from agent.model.spec import (
    SECOND,
    DeviceMapping,
    Healthcheck,
    Mount,
    PortConfig,
    Resources,
    ResourceSpec,
    RestartPolicy,
    TmpfsOptions,
)
from tests.worker.conftest import DockerCluster
from tests.worker.helpers import Recorder, running, until

pytestmark = pytest.mark.integration
S = TaskState


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def host_port(port: int) -> tuple[PortConfig, ...]:
    return (PortConfig(target=80, published=port, publish_mode="host"),)


async def test_task_that_exits_zero_completes(dk: DockerCluster) -> None:
    a, rec = dk.sh("exit 0"), Recorder()
    async with running(dk.executor(rec)) as ex:
        await ex.set_assignments([a])
        status = await rec.wait_state(a.task_id, S.COMPLETE)
    assert status.exit_code == 0 and status.err == ""
    assert status.container_id
    assert rec.states(a.task_id)[:2] == [S.PREPARING, S.STARTING]


async def test_task_that_exits_nonzero_fails_with_its_exit_code(dk: DockerCluster) -> None:
    a, rec = dk.sh("exit 3"), Recorder()
    async with running(dk.executor(rec)) as ex:
        await ex.set_assignments([a])
        status = await rec.wait_state(a.task_id, S.FAILED)
    assert status.exit_code == 3
    assert status.err == "task: non-zero exit (3)"
    assert status.message == "exited with code 3"


async def test_unknown_image_is_rejected_with_a_clear_message(dk: DockerCluster) -> None:
    a, rec = dk.sh("true", image="shoal/nope:1"), Recorder()
    async with running(dk.executor(rec)) as ex:
        await ex.set_assignments([a])
        status = await rec.wait_state(a.task_id, S.REJECTED)
    assert status.err.startswith(
        "image shoal/nope:1 is not present on this node and cannot be pulled: "
    )
    assert await dk.containers(a) == []


async def test_missing_bind_mount_source_is_rejected(dk: DockerCluster, tmp_path: Path) -> None:
    absent = tmp_path / "absent"
    mount = Mount(type="bind", source=str(absent), target="/data")
    a, rec = dk.sh("true", mounts=(mount,)), Recorder()
    async with running(dk.executor(rec)) as ex:
        await ex.set_assignments([a])
        status = await rec.wait_state(a.task_id, S.REJECTED)
    assert f"bind mount source {absent} (for /data) does not exist on this node" in status.err


async def test_host_port_held_by_another_program_fails_naming_the_port(
    dk: DockerCluster,
) -> None:
    with socket.socket() as holder:
        holder.bind(("0.0.0.0", 0))
        holder.listen()
        port = holder.getsockname()[1]
        a, rec = dk.sleeper(ports=host_port(port)), Recorder()
        async with running(dk.executor(rec)) as ex:
            await ex.set_assignments([a])
            status = await rec.wait_state(a.task_id, S.FAILED)
    assert f"host port {port}/tcp is already in use on this node" in status.err
    assert await dk.containers(a) == []


async def test_second_task_on_the_same_host_port_fails_naming_the_port(
    dk: DockerCluster,
) -> None:
    port = free_port()
    first = dk.sleeper(ports=host_port(port), slot=1)
    second = dk.sleeper(ports=host_port(port), slot=2)
    rec = Recorder()
    async with running(dk.executor(rec)) as ex:
        await ex.set_assignments([first])
        await rec.wait_state(first.task_id, S.RUNNING)
        await ex.set_assignments([first, second])
        status = await rec.wait_state(second.task_id, S.FAILED)
    assert f"host port {port}/tcp is already in use on this node" in status.err
    assert rec.last(first.task_id).state is S.RUNNING  # type: ignore[union-attr]


async def test_container_is_created_as_the_spec_says(
    dk: DockerCluster, engine: Any, tmp_path: Path
) -> None:
    source = tmp_path / "data"
    source.mkdir()
    port = free_port()
    a = dk.sleeper(
        env=("GREETING=hello", "EMPTY="),
        labels={"team": "edge"},
        dir="/tmp",
        user="nobody",
        hostname="probe",
        mounts=(
            Mount(type="bind", source=str(source), target="/data", read_only=True),
            Mount(type="tmpfs", target="/scratch", tmpfs_options=TmpfsOptions(size_bytes=1 << 20)),
            Mount(type="volume", target="/cache"),
        ),
        devices=(DeviceMapping(path_on_host="/dev/null", path_in_container="/dev/nothing"),),
        stop_signal="SIGINT",
        ports=host_port(port),
    )
    a = type(a)(
        **{
            **{f: getattr(a, f) for f in a.__dataclass_fields__},
            "spec": type(a.spec)(
                container=a.spec.container,
                resources=Resources(
                    limits=ResourceSpec(nano_cpus=SECOND // 2, memory_bytes=64 << 20)
                ),
            ),
        }
    )
    driver = dk.driver()
    await driver.prepare(a)
    container_id = await driver.start(a)
    info = await (await engine.containers.get(container_id)).show()
    config, host = info["Config"], info["HostConfig"]
    assert info["Name"] == f"/web.1.{a.task_id}"
    assert {"GREETING=hello", "EMPTY="} <= set(config["Env"])
    assert config["Labels"]["team"] == "edge"
    assert config["Labels"]["com.shoal.cluster"] == dk.cluster_id
    assert config["Labels"]["com.shoal.task.id"] == a.task_id
    assert {k for k in config["Labels"] if k.startswith("com.shoal.")} == {
        "com.shoal.cluster",
        "com.shoal.node",
        "com.shoal.service.id",
        "com.shoal.service.name",
        "com.shoal.task.id",
        "com.shoal.task.slot",
        "com.shoal.task.version",
    }
    assert (config["WorkingDir"], config["User"], config["Hostname"]) == ("/tmp", "nobody", "probe")
    assert config["StopSignal"] == "SIGINT"
    assert config["Entrypoint"] == ["sleep", "3600"]
    mounts = {m["Target"]: m for m in host["Mounts"]}
    assert mounts["/data"]["Source"] == str(source) and mounts["/data"]["ReadOnly"]
    assert mounts["/scratch"]["Type"] == "tmpfs"
    assert mounts["/cache"]["Type"] == "volume"
    assert host["NanoCpus"] == SECOND // 2 and host["Memory"] == 64 << 20
    assert host["Init"] is True and host["Privileged"] is False
    assert host["Devices"][0]["PathInContainer"] == "/dev/nothing"
    assert host["PortBindings"] == {"80/tcp": [{"HostIp": "", "HostPort": str(port)}]}
    assert host["RestartPolicy"]["Name"] == "no"
    observed = await driver.inspect(a)
    assert observed.state == "running" and observed.runtime_id == container_id
    assert [o.task_id for o in await driver.adopt() if o.cluster_id == dk.cluster_id] == [a.task_id]
    await driver.stop(a, 1.0)
    assert (await driver.inspect(a)).state == "exited"
    await driver.remove(a)
    assert (await driver.inspect(a)).state == "missing"


async def test_healthcheck_holds_the_task_starting_until_healthy(dk: DockerCluster) -> None:
    check = Healthcheck(
        test=("CMD-SHELL", "test -e /tmp/ready"), interval_ns=SECOND // 5, retries=50
    )
    a = dk.sh("sleep 0.6; touch /tmp/ready; exec sleep 3600", healthcheck=check)
    rec = Recorder()
    async with running(dk.executor(rec)) as ex:
        await ex.set_assignments([a])
        status = await rec.wait_state(a.task_id, S.RUNNING)
    assert status.health == "healthy"
    starting = [s for s in rec.of(a.task_id) if s.state is S.STARTING]
    assert starting[-1].health == "starting"


async def test_unhealthy_container_fails(dk: DockerCluster) -> None:
    check = Healthcheck(test=("CMD-SHELL", "exit 1"), interval_ns=SECOND // 5, retries=1)
    a, rec = dk.sleeper(healthcheck=check), Recorder()
    async with running(dk.executor(rec)) as ex:
        await ex.set_assignments([a])
        status = await rec.wait_state(a.task_id, S.FAILED)
    assert status.err == "task: container is unhealthy"
    assert status.health == "unhealthy"


async def test_logs_return_the_container_output(dk: DockerCluster) -> None:
    a, rec = dk.sh("echo to-stdout; echo to-stderr >&2"), Recorder()
    async with running(dk.executor(rec)) as ex:
        await ex.set_assignments([a])
        await rec.wait_state(a.task_id, S.COMPLETE)
        output = b"".join([chunk async for chunk in ex.logs(a.task_id)])
        last = b"".join([chunk async for chunk in ex.logs(a.task_id, tail=1)])
    assert b"to-stdout\n" in output and b"to-stderr\n" in output
    assert last.count(b"\n") == 1


async def test_crashing_task_restarts_exactly_twice_then_stays_failed(dk: DockerCluster) -> None:
    policy = RestartPolicy(condition="on-failure", delay_ns=SECOND // 5, max_attempts=2)
    a, rec = dk.sh("exit 1", restart=policy), Recorder()
    async with running(dk.executor(rec)) as ex:
        await ex.set_assignments([a])
        final = await rec.wait_state(a.task_id, S.FAILED, count=3)
        await until(lambda: ex.status()[a.task_id].restarts == 2)
    assert final.restarts == 2 and final.exit_code == 1
    assert rec.states(a.task_id).count(S.PREPARING) == 3
    assert rec.states(a.task_id)[-1] is S.FAILED
    assert len(await dk.containers(a)) == 1  # each restart replaced the exited container


async def test_condition_any_restarts_a_task_that_exits_zero(dk: DockerCluster) -> None:
    policy = RestartPolicy(condition="any", delay_ns=SECOND // 5, max_attempts=1)
    a, rec = dk.sh("exit 0", restart=policy), Recorder()
    async with running(dk.executor(rec)) as ex:
        await ex.set_assignments([a])
        final = await rec.wait_state(a.task_id, S.COMPLETE, count=2)
    assert final.restarts == 1


async def test_restarted_agent_adopts_running_containers_without_restarting_them(
    dk: DockerCluster, engine: Any
) -> None:
    a, rec = dk.sleeper(), Recorder()
    async with running(dk.executor(rec)) as ex:
        await ex.set_assignments([a])
        first = await rec.wait_state(a.task_id, S.RUNNING)
    started_at = (await (await engine.containers.get(first.container_id)).show())["State"]
    theirs = dk.sleeper(cluster_id=dk.foreign_cluster(), service="theirs")
    outsider = dk.driver()
    await outsider.prepare(theirs)
    their_id = await outsider.start(theirs)

    rec2 = Recorder()
    async with running(dk.executor(rec2)) as ex2:  # offline: no set_assignments call
        adopted = await rec2.wait_state(a.task_id, S.RUNNING)
        assert adopted.container_id == first.container_id
        assert rec2.states(a.task_id) == [S.RUNNING]
        info = await (await engine.containers.get(first.container_id)).show()
        assert info["State"]["StartedAt"] == started_at["StartedAt"]

        await ex2.set_assignments([])
        await rec2.wait_state(a.task_id, S.SHUTDOWN)
        await until(lambda: _gone(dk, a), what="the unwanted container removed")
    their_info = await (await engine.containers.get(their_id)).show()
    assert their_info["State"]["Running"] is True


async def _gone(dk: DockerCluster, a: Any) -> bool:
    return await dk.containers(a) == []


async def test_offline_agent_starts_a_task_whose_container_is_gone(
    dk: DockerCluster, engine: Any
) -> None:
    a, rec = dk.sleeper(), Recorder()
    async with running(dk.executor(rec)) as ex:
        await ex.set_assignments([a])
        first = await rec.wait_state(a.task_id, S.RUNNING)
    await (await engine.containers.get(first.container_id)).delete(force=True)

    rec2 = Recorder()
    async with running(dk.executor(rec2)):
        again = await rec2.wait_state(a.task_id, S.RUNNING)
    assert again.container_id != first.container_id
    assert rec2.states(a.task_id) == [S.PREPARING, S.STARTING, S.RUNNING]


class _Counting:
    """Counts the calls to one method of a real aiodocker object, passing them through."""

    def __init__(self, target: Any, name: str) -> None:
        self.calls = 0
        real = getattr(target, name)

        async def counted(*args: Any, **kwargs: Any) -> Any:
            self.calls += 1
            return await real(*args, **kwargs)

        setattr(target, name, counted)


async def test_following_a_task_started_here_lists_no_containers(dk: DockerCluster) -> None:
    driver = dk.driver()
    a = dk.sleeper()
    await driver.prepare(a)
    started = await driver.start(a)
    listing = _Counting(driver._client().containers, "list")
    obs = await driver.inspect(a)
    assert (obs.state, obs.runtime_id) == ("running", started)
    assert listing.calls == 0
    await driver.stop(a, 1.0)
    assert (await driver.wait(a)).state == "exited"


async def test_container_removed_under_a_started_task_is_missing_then_found_again(
    dk: DockerCluster, engine: Any
) -> None:
    driver = dk.driver()
    a = dk.sleeper()
    await driver.prepare(a)
    first = await driver.start(a)
    await (await engine.containers.get(first)).delete(force=True)
    assert (await driver.inspect(a)).state == "missing"
    second = await driver.start(a)
    assert second != first
    assert (await driver.inspect(a)).runtime_id == second


async def test_tasks_preparing_at_once_look_at_their_image_once(dk: DockerCluster) -> None:
    driver = dk.driver()
    looks = _Counting(driver._client().images, "inspect")
    await asyncio.gather(*(driver.prepare(dk.sleeper()) for _ in range(5)))
    assert looks.calls == 1
    await driver.prepare(dk.sleeper())  # later: the image is looked at again (it may be gone)
    assert looks.calls == 2
