"""Stacks end to end on the real Docker Engine: deploy from Compose files, secrets and configs
inside the containers, update, prune, remove; deploy and remove by MQTT topic with an admin
certificate, and nobody else."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from broker.topics import Topics
from tests.harness import Cluster, new_cluster, shoal, wait_for
from tests.integration.mqtt import collect, enroll_identity, first, mqtt

pytestmark = pytest.mark.integration

APP = """
services:
  app:
    image: shoal/busybox:latest
    command: ["sh", "-c", "sleep 3600"]
    init: true
    stop_grace_period: 500ms
    environment:
      LEVEL: "${LEVEL:-one}"
    secrets:
      - db_password
      - source: api_key
        target: keys/api
        mode: 0400
    configs:
      - source: app_conf
        target: /etc/app.conf
    deploy:
      replicas: 2
"""
WORKER = """
  worker:
    image: shoal/busybox:latest
    command: ["sleep", "3600"]
    init: true
    stop_grace_period: 500ms
"""
FILES = """
secrets:
  db_password:
    file: ./db_password.txt
  api_key:
    file: ./api_key.txt
configs:
  app_conf:
    file: ./app.conf
"""
STACK = APP + WORKER + FILES


def _docker(*args: str) -> str:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=False).stdout


@pytest.fixture
def stack_cluster(tmp_path: Path) -> Iterator[tuple[Cluster, str]]:
    with new_cluster(tmp_path) as (c, _):
        cid = c.info(c.manager)["cluster_id"]
        try:
            yield c, cid
        finally:
            left = _docker("ps", "-aq", "--filter", f"label=com.shoal.cluster={cid}").split()
            if left:
                _docker("rm", "-f", *left)


def _write_stack(d: Path, text: str = STACK) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    (d / "db_password.txt").write_text("s3cret\n")
    (d / "api_key.txt").write_text("key-123")
    (d / "app.conf").write_text("level=debug\n")
    f = d / "stack.yml"
    f.write_text(text)
    return f


def _rows(c: Cluster, *args: str) -> list[dict[str, Any]]:
    out = shoal(*args, "--format", "json", data=c.manager).stdout
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def _containers(cid: str, service: str) -> list[str]:
    return _docker(
        "ps",
        "-q",
        "--filter",
        f"label=com.shoal.cluster={cid}",
        "--filter",
        f"label=com.shoal.service.name={service}",
    ).split()


def test_a_stack_deploys_with_secrets_and_configs_updates_prunes_and_goes(
    stack_cluster: tuple[Cluster, str], tmp_path: Path
) -> None:
    c, cid = stack_cluster
    f = _write_stack(tmp_path / "files")
    out = shoal("stack", "deploy", "-c", str(f), "--detach=false", "app", data=c.manager).stdout
    assert "Creating secret app_db_password" in out and "Creating config app_app_conf" in out
    assert "Creating service app_app" in out and "Creating service app_worker" in out
    assert out.count("verify: Service converged") == 2
    assert [r["name"] for r in _rows(c, "stack", "ls")] == ["app"]
    services = {r["name"]: r for r in _rows(c, "stack", "services", "app")}
    assert services["app_app"]["replicas"] == "2/2" and services["app_worker"]["replicas"] == "1/1"

    # the secret and the config are inside the containers, read-only, with their modes
    (container, *_) = _containers(cid, "app_app")
    # tools that filter on Docker Swarm's labels find the stack's containers
    found = _docker(
        "ps",
        "-q",
        "--filter",
        "label=com.docker.stack.namespace=app",
        "--filter",
        "label=com.docker.swarm.service.name=app_app",
    ).split()
    assert sorted(found) == sorted(_containers(cid, "app_app")) and len(found) == 2
    assert _docker("exec", container, "cat", "/run/secrets/db_password") == "s3cret\n"
    assert _docker("exec", container, "cat", "/run/secrets/keys/api") == "key-123"
    assert _docker("exec", container, "stat", "-c", "%a", "/run/secrets/keys/api").strip() == "400"
    assert _docker("exec", container, "cat", "/etc/app.conf") == "level=debug\n"
    denied = subprocess.run(
        ["docker", "exec", container, "sh", "-c", "echo x > /run/secrets/db_password"],
        capture_output=True,
        check=False,
    )
    assert denied.returncode != 0
    # a secret in use cannot be removed
    proc = shoal("secret", "rm", "app_db_password", data=c.manager, check=False)
    assert proc.returncode == 1 and "in use by the following service(s): app_app" in proc.stderr

    # update: a changed environment rolls the service; the other one is left alone
    worker_tasks = {t["id"] for t in _rows(c, "service", "ps", "app_worker")}
    env = {"LEVEL": "two"}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "agent.cli",
            "--data-dir",
            str(c.manager),
            "stack",
            "deploy",
            "-c",
            str(f),
            "app",
        ],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, **env},
    )
    assert "Updating service app_app" in proc.stdout and "app_worker" not in proc.stdout
    wait_for(
        lambda: (
            all(
                t["state"] == "running"
                for t in _rows(c, "service", "ps", "app_app")
                if t["desired_state"] == "running"
            )
            and len(_containers(cid, "app_app")) == 2
            and all(
                "LEVEL=two" in _docker("inspect", "--format", "{{.Config.Env}}", x)
                for x in _containers(cid, "app_app")
            )
        ),
        60,
        "app_app rolled to LEVEL=two",
    )
    assert {t["id"] for t in _rows(c, "service", "ps", "app_worker")} == worker_tasks

    # prune: a service gone from the file goes from the swarm
    f2 = _write_stack(tmp_path / "files2", APP + FILES)
    out = shoal("stack", "deploy", "--prune", "-c", str(f2), "app", data=c.manager).stdout
    assert "Removing service app_worker" in out
    wait_for(lambda: not _containers(cid, "app_worker"), 30, "app_worker's container gone")

    # rm: nothing left behind
    out = shoal("stack", "rm", "app", data=c.manager).stdout
    assert "Removing service app_app" in out and "Removing secret app_db_password" in out
    wait_for(lambda: not _containers(cid, "app_app"), 30, "every container gone")
    assert _rows(c, "secret", "ls") == [] and _rows(c, "config", "ls") == []
    assert _rows(c, "stack", "ls") == []


def test_an_invalid_stack_file_says_where_and_changes_nothing(
    stack_cluster: tuple[Cluster, str], tmp_path: Path
) -> None:
    c, _ = stack_cluster
    f = _write_stack(tmp_path / "bad", STACK.replace("replicas: 2", "replicas: two"))
    proc = shoal("stack", "deploy", "-c", str(f), "app", data=c.manager, check=False)
    assert proc.returncode == 1
    assert "stack.yml:" in proc.stderr and "deploy.replicas" in proc.stderr, proc.stderr
    assert "expected an integer" in proc.stderr
    assert _rows(c, "service", "ls") == [] and _rows(c, "secret", "ls") == []


async def test_stacks_deploy_by_topic_for_admins_only(
    stack_cluster: tuple[Cluster, str], tmp_path: Path
) -> None:
    c, cid = stack_cluster
    topics = Topics(cid)
    adm, mon = tmp_path / "adm", tmp_path / "mon"
    shoal("cert", "issue", "admin", "--out", str(adm), data=c.manager)
    shoal("cert", "issue", "monitor", "--out", str(mon), data=c.manager)
    admin_id = _cn(adm / "cert.pem")
    worker = await enroll_identity(tmp_path / "w", c.enroll_port, c.token("worker"))
    text = "services:\n  hello:\n    image: shoal/busybox:latest\n    command: sleep 3600\n"

    async def publish(ident_dir: Path | None, topic: str, payload: bytes, cn: str = "") -> None:
        kw: dict[str, Any] = {"ca": adm / "ca.pem"}
        if ident_dir is not None:
            kw.update(cert=ident_dir / "cert.pem", key=ident_dir / "key.pem", client_id=cn)
        async with mqtt(c.port, **kw) as client:
            await client.publish(topic, payload, qos=1)

    async def result() -> dict[str, Any]:
        async with mqtt(
            c.port,
            ca=adm / "ca.pem",
            cert=adm / "cert.pem",
            key=adm / "key.pem",
            client_id=admin_id,
        ) as client:
            await client.subscribe(topics.stack_result(admin_id, "web"), qos=1)
            got = dict(await collect(client, 1.0, retained=True))
        raw = got.get(topics.stack_result(admin_id, "web"), b"")
        return dict(json.loads(raw)) if raw else {}

    # a monitor and a worker cannot deploy, even on the admin's topic
    await publish(
        mon, topics.stack_ctl(admin_id, "evil", "deploy"), text.encode(), _cn(mon / "cert.pem")
    )
    await publish(
        worker.cert.parent,
        topics.stack_ctl(admin_id, "evil", "deploy"),
        text.encode(),
        worker.node_id,
    )
    await publish(
        worker.cert.parent,
        topics.stack_ctl(worker.node_id, "evil", "deploy"),
        text.encode(),
        worker.node_id,
    )

    # the admin deploys: the result is published where it can read it
    await publish(adm, topics.stack_ctl(admin_id, "web", "deploy"), text.encode(), admin_id)
    deadline = asyncio.get_running_loop().time() + 15
    while not (r := await result()).get("ok"):
        assert asyncio.get_running_loop().time() < deadline, r
    assert r["actions"] == ["Creating network web_default", "Creating service web_hello"]
    # the refused attempts were published (and acknowledged) before: none of them deployed
    assert [row["name"] for row in _rows(c, "service", "ls")] == ["web_hello"]
    assert [row["name"] for row in _rows(c, "stack", "ls")] == ["web"]
    await asyncio.to_thread(
        wait_for, lambda: _rows(c, "service", "ls")[0]["replicas"] == "1/1", 30, "running"
    )
    # an invalid file: the errors, with line and column
    await publish(
        adm,
        topics.stack_ctl(admin_id, "web", "deploy"),
        b"services:\n  hello:\n    imag: x\n",
        admin_id,
    )
    deadline = asyncio.get_running_loop().time() + 15
    while (r := await result()).get("ok") is not False:
        assert asyncio.get_running_loop().time() < deadline, r
    assert any("web.yml:3:5" in e and "did you mean 'image'" in e for e in r["errors"]), r
    # rm by topic
    await publish(adm, topics.stack_ctl(admin_id, "web", "rm"), b"", admin_id)
    await asyncio.to_thread(wait_for, lambda: _rows(c, "service", "ls") == [], 15, "removed")


async def test_a_stack_file_over_the_limit_published_by_topic_is_refused(
    stack_cluster: tuple[Cluster, str], tmp_path: Path
) -> None:
    c, cid = stack_cluster
    topics = Topics(cid)
    adm = tmp_path / "adm"
    shoal("cert", "issue", "admin", "--out", str(adm), data=c.manager)
    admin_id = _cn(adm / "cert.pem")
    tls: dict[str, Any] = {"ca": adm / "ca.pem", "cert": adm / "cert.pem", "key": adm / "key.pem"}
    big = b"services:\n  hello:\n    image: x\n" + b"# padding\n" * (110 * 1024)
    async with mqtt(c.port, client_id=admin_id, **tls) as client:
        await client.subscribe(topics.stack_result(admin_id, "web"), qos=1)
        await client.publish(topics.stack_ctl(admin_id, "web", "deploy"), big, qos=1)
        doc = json.loads(await first(client, topics.stack_result(admin_id, "web"), 15))
    assert doc["ok"] is False
    (error,) = doc["errors"]
    assert error.startswith(f"web.yml: the stack file is 1.1 MiB ({len(big)} bytes)"), error
    assert "larger than shoal's limit of 1 MiB" in error
    assert _rows(c, "service", "ls") == []


def _cn(cert: Path) -> str:
    from certs.certinfo import read_cert_info

    return str(read_cert_info(cert).node_id)


def test_secrets_from_the_cli_reach_services_and_follow_their_updates(
    stack_cluster: tuple[Cluster, str], tmp_path: Path
) -> None:
    c, cid = stack_cluster
    created = subprocess.run(
        [
            sys.executable,
            "-m",
            "agent.cli",
            "--data-dir",
            str(c.manager),
            "secret",
            "create",
            "token",
            "-",
        ],
        input=b"from-stdin",
        capture_output=True,
        check=True,
    )
    assert created.stdout.strip()
    big = tmp_path / "big"
    big.write_bytes(b"x" * (500 * 1024 + 1))
    proc = shoal("secret", "create", "huge", str(big), data=c.manager, check=False)
    assert proc.returncode == 1 and "larger than 500 KB" in proc.stderr
    (cfg := tmp_path / "motd").write_text("hello\n")
    shoal("config", "create", "motd", str(cfg), data=c.manager)
    shoal(
        "service",
        "create",
        "--name",
        "svc",
        "--secret",
        "token",
        "--config",
        "source=motd,target=/etc/motd",
        "--init",
        "--stop-grace-period",
        "500ms",
        "shoal/busybox:latest",
        "sleep",
        "3600",
        data=c.manager,
    )
    (container,) = _containers(cid, "svc")
    assert _docker("exec", container, "cat", "/run/secrets/token") == "from-stdin"
    assert _docker("exec", container, "cat", "/etc/motd") == "hello\n"
    assert [r["name"] for r in _rows(c, "secret", "ls")] == ["token"]
    inspect = json.loads(shoal("secret", "inspect", "token", data=c.manager).stdout)[0]
    assert "Data" not in inspect["Spec"] and inspect["Shoal"]["Services"] == ["svc"]  # never back
    # the service drops the secret: its new task has no such file, and the secret can go
    shoal("service", "update", "--secret-rm", "token", "svc", data=c.manager)
    wait_for(
        lambda: len(_containers(cid, "svc")) == 1 and _containers(cid, "svc")[0] != container,
        30,
        "the updated task",
    )
    (updated,) = _containers(cid, "svc")
    assert (
        "No such file"
        in subprocess.run(
            ["docker", "exec", updated, "cat", "/run/secrets/token"],
            capture_output=True,
            text=True,
            check=False,
        ).stderr
    )
    shoal("secret", "rm", "token", data=c.manager)
    assert _rows(c, "secret", "ls") == []
    proc = shoal("config", "rm", "motd", data=c.manager, check=False)
    assert proc.returncode == 1 and "in use by the following service(s): svc" in proc.stderr
