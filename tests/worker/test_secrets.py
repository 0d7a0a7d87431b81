"""Secrets and configs on the node side, without an engine: the wire format, the persisted set,
opening sealed secrets, the executor, the process driver and the files on the host."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgpack
import pytest

from agent.model import (
    AssignmentError,
    ConfigBlob,
    SecretBlob,
    TaskState,
    parse_configs,
    parse_secrets,
)
from agent.model.errors import WorkerError
from agent.model.spec import ConfigRef, SecretRef
from agent.worker import HollowDriver, ProcessDriver, TaskRejected
from agent.worker.docker_files import TaskDirs, file_mounts, memory_root
from agent.worker.node import NodeAgent
from agent.worker.saved import ASSIGNMENTS_FILE, load_saved
from agent.worker.taskfiles import TaskFiles, load_node_key, secret_context
from broker.envelope import Envelope, Rejections, decode, encode
from certs import ClusterCA, Role, key_to_pem, load_cert, make_csr, new_private_key, seal
from tests.worker.fakes import FakeDriver
from tests.worker.helpers import CLUSTER, NODE, Recorder, assignment, running

S = TaskState
DB_PASS = b"correct horse battery staple"
NGINX_CONF = b"server { listen 80; }\n"


def node_key_and_cert() -> tuple[Any, Any]:
    """A node key and the certificate a cluster CA issues for it (what managers seal to)."""
    ca = ClusterCA.create("cluster-test1")
    key = new_private_key()
    cert = load_cert(ca.issue(make_csr(key), node_id=NODE, role=Role.WORKER))
    return key, cert


def sealed(recipient: Any, secret_id: str = "sec1", data: bytes = DB_PASS) -> SecretBlob:
    blob = seal(recipient, data, context=secret_context(NODE, secret_id))
    return SecretBlob(id=secret_id, name="db-pass", sealed=blob)


def tampered(blob: SecretBlob) -> SecretBlob:
    raw = bytearray(blob.sealed)
    raw[-1] ^= 0x01
    return SecretBlob(id=blob.id, name=blob.name, sealed=bytes(raw))


NGINX = ConfigBlob(id="cfg1", name="nginx-conf", data=NGINX_CONF)


def with_files(task_id: str = "task1", **kwargs: Any) -> Any:
    """A long-running task using secret ``sec1`` (as db) and config ``cfg1``."""
    return assignment(
        task_id,
        command=("sleep", "3600"),
        secrets=(SecretRef(source="db-pass", target="db", secret_id="sec1", mode=0o400),),
        configs=(ConfigRef(source="nginx-conf", target="/etc/nginx.conf", config_id="cfg1"),),
        **kwargs,
    )


# -- the wire format ----------------------------------------------------------------------


class FakeSession:
    """What NodeAgent needs of a broker session, delivering messages by hand."""

    def __init__(self) -> None:
        self.handlers: dict[str, Callable[..., Any]] = {}
        self.rejections = Rejections()
        self.connected = False

    def on(self, topic: str, handler: Callable[..., Any], **_: Any) -> None:
        self.handlers[topic] = handler

    def on_connect(self, callback: Any) -> None:
        pass

    async def deliver(self, body: dict[str, Any]) -> None:
        (topic,) = [t for t in self.handlers if t.endswith("/assign")]
        env = decode(encode(Envelope(type="assign", sender="manager1", seq=1, body=body)))
        await self.handlers[topic](topic, env)


def node_agent(tmp_path: Path, **kwargs: Any) -> tuple[NodeAgent, FakeSession]:
    session = FakeSession()
    agent = NodeAgent(
        node_id=NODE,
        cluster_id=CLUSTER,
        hostname="edge1",
        role="worker",
        session=session,  # type: ignore[arg-type]
        state_dir=tmp_path,
        driver=FakeDriver(),
        **kwargs,
    )
    return agent, session


async def test_an_assignment_set_with_secrets_and_configs_is_applied_and_kept_sealed(
    tmp_path: Path,
) -> None:
    key = new_private_key()
    secret = sealed(key.public_key())
    agent, session = node_agent(tmp_path)
    await session.deliver(
        {
            "version": 3,
            "tasks": [with_files().to_dict()],
            "secrets": [secret.to_dict()],
            "configs": [NGINX.to_dict()],
        }
    )
    assert session.rejections.total == 0
    assert agent.assign_version == 3
    saved = load_saved(tmp_path)
    assert saved.secrets == [secret] and saved.configs == [NGINX]
    assert DB_PASS not in (tmp_path / ASSIGNMENTS_FILE).read_bytes()


async def test_a_set_without_secrets_or_configs_keys_means_none(tmp_path: Path) -> None:
    agent, session = node_agent(tmp_path)
    await session.deliver({"version": 1, "tasks": [assignment().to_dict()]})
    assert session.rejections.total == 0 and agent.assign_version == 1
    assert load_saved(tmp_path).secrets == []


@pytest.mark.parametrize(
    ("secrets", "configs", "reason"),
    [
        ([], [NGINX.to_dict()], "secret db-pass ('sec1') is not among the set's secrets"),
        (["SECRET"], [NGINX.to_dict()], "assignment secrets[0]: expected a mapping, found str"),
        (
            [{"id": "sec1", "name": "db-pass", "sealed": "not bytes"}],
            [NGINX.to_dict()],
            "assignment secrets[0].sealed: expected bytes, found str",
        ),
        (
            [{"id": "sec1", "name": "db-pass", "sealed": b"x", "data": b"x"}],
            [],
            "assignment secrets[0].data: unknown key",
        ),
        ({"sec1": "x"}, [], "assignment secrets: expected a list, found dict"),
        (
            [
                {"id": "sec1", "name": "a", "sealed": b"x"},
                {"id": "sec1", "name": "b", "sealed": b""},
            ],
            [NGINX.to_dict()],
            "assignment secrets[1].id: id sec1 appears twice",
        ),
        (
            [{"id": "sec1", "name": "db-pass", "sealed": b"x"}],
            [{"id": "../cfg", "name": "nginx-conf", "data": b""}],
            "assignment configs[0].id: expected an id",
        ),
        (
            [{"id": "sec1", "name": "db-pass", "sealed": b"x"}],
            [],
            "config nginx-conf ('cfg1') is not among the set's configs",
        ),
    ],
)
async def test_a_set_referring_to_a_missing_or_malformed_file_is_rejected_and_what_runs_stays(
    tmp_path: Path, secrets: Any, configs: Any, reason: str
) -> None:
    agent, session = node_agent(tmp_path)
    await session.deliver({"version": 1, "tasks": [assignment("keeper").to_dict()]})
    await session.deliver(
        {"version": 2, "tasks": [with_files().to_dict()], "secrets": secrets, "configs": configs}
    )
    assert session.rejections.total == 1
    (message,) = session.rejections.counts
    assert message.startswith("bad assignment set: ") and reason in message
    assert agent.assign_version == 1
    assert [a.task_id for a in load_saved(tmp_path).assignments] == ["keeper"]


async def test_a_task_no_longer_running_needs_no_secret_in_the_set(tmp_path: Path) -> None:
    agent, session = node_agent(tmp_path)
    stopping = with_files(desired_state="shutdown")
    await session.deliver({"version": 4, "tasks": [stopping.to_dict()]})
    assert session.rejections.total == 0 and agent.assign_version == 4


def test_parse_secrets_and_configs_accept_none_and_lists() -> None:
    assert parse_secrets(None) == [] and parse_configs(None) == []
    blob = SecretBlob(id="s1", name="n", sealed=b"\x01")
    assert parse_secrets([blob.to_dict()]) == [blob]
    assert "x01" not in repr(blob)
    with pytest.raises(AssignmentError, match=r"configs\[0\]\.name: required key is missing"):
        parse_configs([{"id": "c1", "data": b""}])


# -- opening secrets ----------------------------------------------------------------------


def test_a_secret_sealed_to_the_node_certificate_opens_with_its_key() -> None:
    key, cert = node_key_and_cert()
    files = TaskFiles(secrets={"sec1": sealed(cert)}, key_loader=lambda: key)
    [(ref, data)] = files.open_secrets(with_files())
    assert (ref.target, data) == ("db", DB_PASS)


@pytest.mark.parametrize(
    ("make", "why"),
    [
        (lambda key: tampered(sealed(key.public_key())), "altered in transit"),
        (lambda key: sealed(new_private_key().public_key()), "sealed to another key"),
        (
            lambda key: SecretBlob(
                id="sec1", name="db-pass", sealed=sealed(key.public_key(), "sec2").sealed
            ),
            "for another context",
        ),
        (lambda key: SecretBlob(id="sec1", name="db-pass", sealed=b"\x01short"), "truncated"),
    ],
)
def test_a_secret_that_does_not_open_rejects_the_task_with_the_reason(
    make: Callable[[Any], SecretBlob], why: str
) -> None:
    key = new_private_key()
    files = TaskFiles(secrets={"sec1": make(key)}, key_loader=lambda: key)
    with pytest.raises(TaskRejected) as caught:
        files.open_secrets(with_files())
    assert caught.value.reason.startswith("secret db-pass could not be opened on this node: ")
    assert why in caught.value.reason


def test_a_key_that_cannot_be_loaded_rejects_the_task() -> None:
    def broken() -> Any:
        raise WorkerError("cannot read the node's key /x/node-key.pem: No such file")

    files = TaskFiles(secrets={"sec1": sealed(new_private_key().public_key())}, key_loader=broken)
    with pytest.raises(TaskRejected, match="could not be opened on this node: cannot read"):
        files.open_secrets(with_files())
    with pytest.raises(TaskRejected, match="the node has no private key"):
        TaskFiles(secrets=files.secrets).open_secrets(with_files())


def test_load_node_key_reads_a_plain_or_an_encrypted_key(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization

    key = new_private_key()
    plain, locked = tmp_path / "plain.pem", tmp_path / "locked.pem"
    plain.write_bytes(key_to_pem(key))
    locked.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"SHLKEY-1-test"),
        )
    )
    numbers = key.private_numbers().private_value
    assert load_node_key(plain).private_numbers().private_value == numbers
    assert load_node_key(plain, "SHLKEY-1-test").private_numbers().private_value == numbers
    assert load_node_key(locked, "SHLKEY-1-test").private_numbers().private_value == numbers
    with pytest.raises(WorkerError, match="is encrypted and this node is locked"):
        load_node_key(locked)
    with pytest.raises(WorkerError, match="the unlock key does not open it"):
        load_node_key(locked, "SHLKEY-1-wrong")
    with pytest.raises(WorkerError, match="cannot read the node's key"):
        load_node_key(tmp_path / "absent.pem")


# -- the executor -------------------------------------------------------------------------


def executor(driver: Any, tmp_path: Path, rec: Recorder, key: Any) -> Any:
    from agent.worker import Executor

    return Executor(
        driver,
        tmp_path,
        rec,
        node_id=NODE,
        cluster_id=CLUSTER,
        default_grace=0.1,
        key_loader=lambda: key,
    )


async def test_the_driver_gets_the_opened_secret_and_the_config_when_the_task_starts(
    tmp_path: Path,
) -> None:
    key, driver, rec = new_private_key(), FakeDriver(), Recorder()
    async with running(executor(driver, tmp_path, rec, key)) as ex:
        await ex.set_assignments(
            [with_files()], secrets=[sealed(key.public_key())], configs=[NGINX]
        )
        await rec.wait_state("task1", S.RUNNING)
    assert driver.files["task1"] == ([("db", DB_PASS)], [("/etc/nginx.conf", NGINX_CONF)])


async def test_a_tampered_secret_rejects_only_the_task_that_uses_it(tmp_path: Path) -> None:
    key, driver, rec = new_private_key(), FakeDriver(), Recorder()
    async with running(executor(driver, tmp_path, rec, key)) as ex:
        await ex.set_assignments(
            [with_files(), assignment("plain", command=("sleep", "1"))],
            secrets=[tampered(sealed(key.public_key()))],
            configs=[NGINX],
        )
        status = await rec.wait_state("task1", S.REJECTED)
        await rec.wait_state("plain", S.RUNNING)
    assert status.err.startswith("secret db-pass could not be opened on this node: ")
    assert "task1" not in driver.starts


async def test_a_node_restarted_offline_opens_its_saved_secrets(tmp_path: Path) -> None:
    key, rec = new_private_key(), Recorder()
    async with running(executor(FakeDriver(), tmp_path, rec, key)) as ex:
        await ex.set_assignments(
            [with_files()], secrets=[sealed(key.public_key())], configs=[NGINX]
        )
        await rec.wait_state("task1", S.RUNNING)
    assert DB_PASS not in (tmp_path / ASSIGNMENTS_FILE).read_bytes()
    fresh, rec2 = FakeDriver(), Recorder()  # the containers are gone too
    async with running(executor(fresh, tmp_path, rec2, key)):
        await rec2.wait_state("task1", S.RUNNING)
    assert fresh.files["task1"][0] == [("db", DB_PASS)]
    assert fresh.sweeps == [(NODE, {"task1"})]


async def test_only_the_files_of_running_tasks_are_kept(tmp_path: Path) -> None:
    key = new_private_key()
    ex = executor(FakeDriver(), tmp_path, Recorder(), key)
    other = SecretBlob(id="unused", name="unused", sealed=b"x")
    await ex.set_assignments(
        [with_files()], secrets=[sealed(key.public_key()), other], configs=[NGINX]
    )
    assert [s.id for s in load_saved(tmp_path).secrets] == ["sec1"]
    await ex.set_assignments([with_files(desired_state="shutdown", version=2)])
    saved = load_saved(tmp_path)
    assert saved.secrets == [] and saved.configs == []


def test_a_damaged_saved_secret_is_skipped(tmp_path: Path) -> None:
    body = {
        "format": 1,
        "assignments": [with_files().to_dict()],
        "secrets": [{"id": "sec1", "name": "db-pass"}],
        "configs": [NGINX.to_dict()],
    }
    (tmp_path / ASSIGNMENTS_FILE).write_bytes(msgpack.packb(body, use_bin_type=True))
    saved = load_saved(tmp_path)
    assert saved.secrets == [] and saved.configs == [NGINX] and len(saved.assignments) == 1


# -- other drivers ------------------------------------------------------------------------


async def test_the_process_driver_rejects_secrets_and_configs_with_a_reason(
    tmp_path: Path,
) -> None:
    with pytest.raises(TaskRejected, match="uses secrets or configs, which the process driver"):
        await ProcessDriver(tmp_path).prepare(with_files())


async def test_the_hollow_driver_ignores_secrets_and_configs() -> None:
    await HollowDriver().prepare(with_files())


def test_an_idle_node_agent_does_not_import_cryptography() -> None:
    code = (
        "import sys, agent.worker.node, agent.worker.taskfiles, agent.worker.docker_files; "
        "print(sorted(m for m in sys.modules if m.startswith('cryptography')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# -- files on the host (the docker driver's) ----------------------------------------------


def test_secrets_and_configs_are_bind_mounted_read_only_at_their_targets() -> None:
    a = assignment(
        secrets=(
            SecretRef(source="a", target="a", secret_id="s1"),
            SecretRef(source="b", target="/etc/b.key", secret_id="s2"),
        ),
        configs=(ConfigRef(source="c", target="/etc/c.conf", config_id="c1"),),
    )
    assert file_mounts(a, "/run/shoal/node1/task1") == [
        {
            "Type": "bind",
            "Source": source,
            "Target": target,
            "ReadOnly": True,
            "BindOptions": {"Propagation": "rprivate"},
        }
        for source, target in [
            ("/run/shoal/node1/task1/secrets/0", "/run/secrets/a"),
            ("/run/shoal/node1/task1/secrets/1", "/etc/b.key"),
            ("/run/shoal/node1/task1/configs/0", "/etc/c.conf"),
        ]
    ]


def test_the_files_root_is_run_when_it_is_a_tmpfs_else_dev_shm(tmp_path: Path) -> None:
    mounts = tmp_path / "mounts"
    mounts.write_text("tmpfs /run tmpfs rw 0 0\ntmpfs /dev/shm tmpfs rw 0 0\n")
    assert memory_root(str(mounts)) == Path("/run/shoal")
    mounts.write_text("/dev/sda1 / ext4 rw 0 0\ntmpfs /dev/shm tmpfs rw 0 0\n")
    assert memory_root(str(mounts)) == Path("/dev/shm/shoal")
    mounts.write_text("/dev/sda1 / ext4 rw 0 0\n")
    assert memory_root(str(mounts)) is None


def test_task_files_are_written_with_their_mode_and_owner_then_wiped(tmp_path: Path) -> None:
    dirs = TaskDirs(tmp_path / "shoal")
    a = with_files()
    (secret_ref,), (config_ref,) = a.spec.container.secrets, a.spec.container.configs
    task_dir = dirs.write(a, [(secret_ref, DB_PASS)], [(config_ref, NGINX_CONF)])
    assert task_dir == tmp_path / "shoal" / NODE / "task1"
    secret_file, config_file = task_dir / "secrets" / "0", task_dir / "configs" / "0"
    assert secret_file.read_bytes() == DB_PASS and config_file.read_bytes() == NGINX_CONF
    assert stat.S_IMODE(secret_file.stat().st_mode) == 0o400
    assert stat.S_IMODE(config_file.stat().st_mode) == 0o444
    for d in (tmp_path / "shoal", task_dir.parent, task_dir, task_dir / "secrets"):
        assert stat.S_IMODE(d.stat().st_mode) == 0o700
    if os.geteuid() == 0:
        assert (secret_file.stat().st_uid, secret_file.stat().st_gid) == (0, 0)
    dirs.write(a, [(secret_ref, b"rotated")], [(config_ref, NGINX_CONF)])  # a relaunch
    assert secret_file.read_bytes() == b"rotated"
    assert sorted(p.name for p in (task_dir / "secrets").iterdir()) == ["0"]
    dirs.remove(NODE, "task1")
    assert not task_dir.exists() and not task_dir.parent.exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="giving files to another uid needs root")
def test_a_secret_is_given_to_the_uid_and_gid_of_its_reference(tmp_path: Path) -> None:
    ref = SecretRef(source="db-pass", target="db", secret_id="sec1", uid="1000", gid="1001")
    task_dir = TaskDirs(tmp_path).write(assignment(secrets=(ref,)), [(ref, DB_PASS)], [])
    st = (task_dir / "secrets" / "0").stat()
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (1000, 1001, 0o444)


def test_a_non_numeric_uid_rejects_the_task(tmp_path: Path) -> None:
    ref = SecretRef(source="db-pass", target="db", secret_id="sec1", uid="nobody")
    with pytest.raises(TaskRejected, match="secret db-pass: uid 'nobody' is not a number"):
        TaskDirs(tmp_path).write(assignment(secrets=(ref,)), [(ref, DB_PASS)], [])
    assert list(tmp_path.iterdir()) == []


def test_a_restarted_agent_sweeps_the_files_of_tasks_it_no_longer_has(tmp_path: Path) -> None:
    dirs = TaskDirs(tmp_path)
    for task_id in ("kept", "gone"):
        a = with_files(task_id)
        dirs.write(a, [(a.spec.container.secrets[0], DB_PASS)], [])
    other_node = tmp_path / "node2" / "theirs"
    other_node.mkdir(parents=True)
    dirs.sweep(NODE, {"kept"})
    assert sorted(p.name for p in (tmp_path / NODE).iterdir()) == ["kept"]
    assert other_node.is_dir()
    dirs.remove(NODE, "../node2")  # ids from labels are never trusted as paths
    assert other_node.is_dir()


def test_a_files_root_owned_by_someone_else_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "shoal"
    root.symlink_to(tmp_path)
    a = with_files()
    with pytest.raises(TaskRejected, match="is not a directory owned by shoal's agent"):
        TaskDirs(root).write(a, [(a.spec.container.secrets[0], DB_PASS)], [])
