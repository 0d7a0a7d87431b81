"""Secrets and configs given to containers of the real Docker Engine on this machine."""

from __future__ import annotations

import asyncio
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.model import ConfigBlob, SecretBlob, TaskState
from agent.model.spec import ConfigRef, SecretRef
from agent.worker.docker_files import TaskDirs, memory_root
from agent.worker.taskfiles import secret_context
from certs import new_private_key, seal
from tests.worker.conftest import DockerCluster
from tests.worker.helpers import NODE, Recorder, running, until

pytestmark = pytest.mark.integration
S = TaskState
DB_PASS = b"correct horse battery staple"
APP_CONF = b"listen = 8080\n"
CONFIG = ConfigBlob(id="cfg1", name="app-conf", data=APP_CONF)


@pytest.fixture
def files_root(dk: DockerCluster) -> Iterator[Path]:
    """A root of this test's own on the node's memory filesystem (as the agent's would be)."""
    default = memory_root()
    if default is None:
        pytest.skip("needs a tmpfs at /run or /dev/shm")
    root = default.parent / f"shoal-test-{secrets.token_hex(4)}"
    dk.files_root = root
    yield root
    shutil.rmtree(root, ignore_errors=True)


def sealed(key: Any, secret_id: str = "sec1", data: bytes = DB_PASS) -> SecretBlob:
    blob = seal(key.public_key(), data, context=secret_context(NODE, secret_id))
    return SecretBlob(id=secret_id, name="db-pass", sealed=blob)


def secret_ref(**kwargs: Any) -> SecretRef:
    kwargs.setdefault("mode", 0o400)
    return SecretRef(source="db-pass", target="db", secret_id="sec1", **kwargs)


CONFIG_REF = ConfigRef(source="app-conf", target="/etc/app.conf", config_id="cfg1", mode=0o440)


async def docker_exec(container_id: str, *argv: str) -> tuple[int, bytes]:
    proc = await asyncio.create_subprocess_exec(
        "docker",
        "exec",
        container_id,
        *argv,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out


async def test_a_task_reads_its_secret_and_config_from_read_only_files(
    dk: DockerCluster, engine: Any, files_root: Path
) -> None:
    key, rec = new_private_key(), Recorder()
    a = dk.sleeper(secrets=(secret_ref(),), configs=(CONFIG_REF,))
    host_dir = files_root / NODE / a.task_id
    async with running(dk.executor(rec, key_loader=lambda: key)) as ex:
        await ex.set_assignments([a], secrets=[sealed(key)], configs=[CONFIG])
        cid = (await rec.wait_state(a.task_id, S.RUNNING)).container_id

        assert await docker_exec(cid, "cat", "/run/secrets/db") == (0, DB_PASS)
        assert await docker_exec(cid, "stat", "-c", "%a %u", "/run/secrets/db") == (0, b"400 0\n")
        assert await docker_exec(cid, "cat", "/etc/app.conf") == (0, APP_CONF)
        assert await docker_exec(cid, "stat", "-c", "%a", "/etc/app.conf") == (0, b"440\n")
        code, out = await docker_exec(cid, "sh", "-c", "echo leaked > /run/secrets/db")
        assert code != 0 and b"Read-only file system" in out
        code, out = await docker_exec(cid, "sh", "-c", "echo changed > /etc/app.conf")
        assert code != 0 and b"Read-only file system" in out

        info = await engine.containers.get(cid)
        mounts = {m["Destination"]: m for m in info["Mounts"]}
        assert mounts["/run/secrets/db"]["RW"] is False
        assert mounts["/run/secrets/db"]["Source"] == str(host_dir / "secrets" / "0")
        assert mounts["/etc/app.conf"]["RW"] is False
        assert (host_dir / "secrets" / "0").read_bytes() == DB_PASS

        await ex.set_assignments([])

        async def removed() -> bool:
            return not host_dir.exists() and await dk.containers(a) == []

        await until(removed, what="the container and its files to go")
    assert not (files_root / NODE).exists()


async def test_a_secret_given_to_the_container_user_is_readable_by_it_alone(
    dk: DockerCluster, files_root: Path
) -> None:
    key, rec = new_private_key(), Recorder()
    a = dk.sleeper(user="1000:1000", secrets=(secret_ref(uid="1000", gid="1000"),))
    other = dk.sleeper(user="1001:1001", secrets=(secret_ref(uid="1000", gid="1000"),), slot=2)
    async with running(dk.executor(rec, key_loader=lambda: key)) as ex:
        await ex.set_assignments([a, other], secrets=[sealed(key)])
        cid = (await rec.wait_state(a.task_id, S.RUNNING)).container_id
        other_cid = (await rec.wait_state(other.task_id, S.RUNNING)).container_id
        assert await docker_exec(cid, "cat", "/run/secrets/db") == (0, DB_PASS)
        code, out = await docker_exec(other_cid, "cat", "/run/secrets/db")
        assert code != 0 and b"Permission denied" in out


async def test_a_tampered_secret_rejects_the_task_and_creates_nothing(
    dk: DockerCluster, files_root: Path
) -> None:
    key, rec = new_private_key(), Recorder()
    blob = sealed(key)
    broken = SecretBlob(id=blob.id, name=blob.name, sealed=blob.sealed[:-1] + b"\x00")
    a = dk.sleeper(secrets=(secret_ref(),), configs=(CONFIG_REF,))
    async with running(dk.executor(rec, key_loader=lambda: key)) as ex:
        await ex.set_assignments([a], secrets=[broken], configs=[CONFIG])
        status = await rec.wait_state(a.task_id, S.REJECTED)
    assert status.err.startswith("secret db-pass could not be opened on this node: ")
    assert "altered in transit" in status.err
    assert await dk.containers(a) == []
    assert not (files_root / NODE / a.task_id).exists()


async def test_a_restarted_agent_removes_the_files_of_tasks_it_no_longer_has(
    dk: DockerCluster, files_root: Path
) -> None:
    key, rec = new_private_key(), Recorder()
    a = dk.sleeper(secrets=(secret_ref(),))
    async with running(dk.executor(rec, key_loader=lambda: key)) as ex:
        await ex.set_assignments([a], secrets=[sealed(key)])
        await rec.wait_state(a.task_id, S.RUNNING)
    leftover = dk.sleeper(secrets=(secret_ref(),))  # prepared, then the agent went down
    TaskDirs(files_root).write(leftover, [(leftover.spec.container.secrets[0], DB_PASS)], [])

    rec2 = Recorder()
    async with running(dk.executor(rec2, key_loader=lambda: key)):
        await until(lambda: not (files_root / NODE / leftover.task_id).exists(), what="sweep")
        assert (files_root / NODE / a.task_id / "secrets" / "0").read_bytes() == DB_PASS
    assert len(await dk.containers(a)) == 1  # adopted, never recreated
