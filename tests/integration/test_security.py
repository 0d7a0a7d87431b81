"""Every door that must stay closed is closed: identity at connect, ACLs per node, and the
enrollment listener. Against the real embedded mosquitto started by `shoal swarm init`."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiomqtt
import pytest

from broker.tls import client_context, diagnose
from broker.topics import Topics, enroll_req, enroll_resp
from certs import ClusterCA, Role, make_csr, new_node_id, new_private_key
from tests.harness import Cluster, info_of, shoal, wait_for
from tests.integration.mqtt import (
    Ident,
    as_client,
    collect,
    enroll_identity,
    first,
    mqtt,
    write_ident,
)

pytestmark = pytest.mark.integration


def _topics(cluster: Cluster) -> Topics:
    return Topics(cluster.info(cluster.manager)["cluster_id"])


async def _refused(cluster: Cluster, **kw: object) -> str:
    with pytest.raises(aiomqtt.MqttError):
        async with mqtt(cluster.port, ca=cluster.ca_file, timeout=3, **kw):  # type: ignore[arg-type]
            pass
    ctx = client_context(cluster.ca_file, kw.get("cert"), kw.get("key"))  # type: ignore[arg-type]
    return await diagnose("127.0.0.1", cluster.port, ctx)


# identity at connect -----------------------------------------------------------------------
async def test_client_without_certificate_cannot_connect(cluster: Cluster) -> None:
    why = await _refused(cluster, client_id="anon")
    assert "requires a client certificate" in why


async def test_certificate_from_another_ca_cannot_connect(cluster: Cluster, tmp_path: Path) -> None:
    other = ClusterCA.create("othercluster")
    key = new_private_key()
    node = new_node_id()
    cert = other.issue(make_csr(key), node_id=node, role=Role.MANAGER)
    ident = write_ident(tmp_path / "stranger", node, cert, key, cluster.ca_file)
    why = await _refused(cluster, cert=ident.cert, key=ident.key, client_id=node)
    assert "does not accept this certificate" in why


async def test_expired_certificate_cannot_connect(cluster: Cluster, tmp_path: Path) -> None:
    ca = ClusterCA.load(cluster.ca_dir)
    key = new_private_key()
    node = new_node_id()
    past = datetime.now(UTC) - timedelta(days=3)
    cert = ca.issue(
        make_csr(key),
        node_id=node,
        role=Role.WORKER,
        not_before=past,
        not_after=past + timedelta(days=1),
    )
    ident = write_ident(tmp_path / "old", node, cert, key, cluster.ca_file)
    why = await _refused(cluster, cert=ident.cert, key=ident.key, client_id=node)
    assert "expired" in why


async def test_removed_node_is_refused_and_its_live_session_is_cut(cluster: Cluster) -> None:
    worker = await asyncio.to_thread(cluster.join, "w1")
    info = cluster.info(worker)
    assert info["connected"] is True
    started = time.monotonic()
    await asyncio.to_thread(shoal, "node", "rm", "--force", "w1", data=cluster.manager)
    await asyncio.to_thread(
        wait_for, lambda: not cluster.info(worker)["connected"], 5.0, "the session to be cut"
    )
    cut_after = time.monotonic() - started
    assert cut_after < 5.0
    # and it stays out: its reconnects are refused, and the reason is named
    ident = Ident(
        info["node_id"], worker / "tls/node.pem", worker / "tls/node-key.pem", cluster.ca_file
    )
    why = await _refused(cluster, cert=ident.cert, key=ident.key, client_id=ident.node_id)
    assert "revoked" in why
    last = await asyncio.to_thread(
        wait_for, lambda: cluster.info(worker)["last_error"], 10.0, "the daemon to see why"
    )
    assert "revoked" in last
    assert [n["hostname"] for n in cluster.node_ls()] == ["mgr"]


@pytest.mark.parametrize("record", ["kept", "lost"])
def test_a_removed_node_restarted_names_the_revocation_at_once_and_keeps_it(
    cluster: Cluster, record: str
) -> None:
    worker = cluster.join("w1")
    shoal("node", "rm", "--force", "w1", data=cluster.manager)
    wait_for(lambda: cluster.info(worker)["removed"], 10.0, "the daemon to record its removal")
    # the daemon restarts (a reboot, systemd)
    pid = int((worker / "shoal.pid").read_text())
    os.kill(pid, signal.SIGTERM)
    wait_for(lambda: not Path(f"/proc/{pid}").exists(), 20, "the daemon to exit")
    if record == "lost":  # e.g. stopped before it was written: the broker's refusal is named
        (worker / "removed.json").unlink()  # by the probe of the pending connect attempt
    daemon = subprocess.Popen(
        [sys.executable, "-m", "agent.cli", "--data-dir", str(worker), "daemon"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(lambda: info_of(worker), 20, "the daemon to answer")
        started = time.monotonic()
        wait_for(
            lambda: "revoked" in (cluster.info(worker)["last_error"] or ""),
            15,
            "the revocation to be named",
        )
        # named well before the client library's own connect timeout (10 s) runs out
        assert time.monotonic() - started < 6.0
        # and kept, without connecting again: the node records its removal (again)
        wait_for(lambda: cluster.info(worker)["removed"], 15, "the removal to be recorded")
        seen = []
        until = time.monotonic() + 14
        while time.monotonic() < until:
            info = cluster.info(worker)
            seen.append((info["connected"], info["last_error"]))
        assert set(seen) == {(False, seen[0][1])} and "revoked" in seen[0][1], seen
    finally:
        daemon.terminate()
        daemon.wait(20)


# ACLs --------------------------------------------------------------------------------------
@pytest.fixture
async def idents(cluster: Cluster, tmp_path: Path) -> dict[str, Ident]:
    worker_token, manager_token = cluster.token("worker"), cluster.token("manager")
    return {
        "a": await enroll_identity(tmp_path / "a", cluster.enroll_port, worker_token),
        "b": await enroll_identity(tmp_path / "b", cluster.enroll_port, worker_token),
        "m": await enroll_identity(tmp_path / "m", cluster.enroll_port, manager_token),
    }


async def test_worker_reads_only_its_own_assignments(
    cluster: Cluster, idents: dict[str, Ident]
) -> None:
    t = _topics(cluster)
    a, b, m = idents["a"], idents["b"], idents["m"]
    async with as_client(a, cluster.port) as ca, as_client(b, cluster.port) as cb:
        await ca.subscribe(t.node_assign(b.node_id), qos=1)
        await ca.subscribe(t.base + "/#", qos=1)
        await ca.subscribe(t.node_assign(a.node_id), qos=1)
        await cb.subscribe(t.node_assign(b.node_id), qos=1)
        async with as_client(m, cluster.port) as cm:
            await cm.publish(t.node_assign(b.node_id), b"for-b", qos=1, retain=True)
            await cm.publish(t.node_assign(a.node_id), b"for-a", qos=1)
        got_b = await collect(cb, 1.5)  # also the managers' own (retained) assignment set
        got = await collect(ca, 0.5)
    assert (t.node_assign(b.node_id), b"for-b") in got_b
    assert (t.node_assign(a.node_id), b"for-a") in got
    assert all(topic != t.node_assign(b.node_id) for topic, _ in got)
    assert all("/node/" + a.node_id + "/" in topic for topic, _ in got), got


async def test_worker_reads_only_its_own_routing_table(
    cluster: Cluster, idents: dict[str, Ident]
) -> None:
    t = _topics(cluster)
    a, b, m = idents["a"], idents["b"], idents["m"]
    async with as_client(a, cluster.port) as ca:
        await ca.subscribe(t.node_net(b.node_id), qos=1)
        await ca.subscribe(t.node_net(a.node_id), qos=1)
        async with as_client(m, cluster.port) as cm:
            await cm.publish(t.node_net(b.node_id), b"table-b", qos=1, retain=True)
            await cm.publish(t.node_net(a.node_id), b"table-a", qos=1)
        got = await collect(ca, 1.0)
    assert got == [(t.node_net(a.node_id), b"table-a")]


async def test_worker_cannot_write_for_other_nodes_or_managers(
    cluster: Cluster, idents: dict[str, Ident]
) -> None:
    t = _topics(cluster)
    a, b, m = idents["a"], idents["b"], idents["m"]
    forbidden = [
        t.node_status(b.node_id),
        t.node_state(b.node_id),
        t.node_req(b.node_id),
        t.node_resp(a.node_id),
        t.node_assign(a.node_id),
        t.node_net(a.node_id),
        t.node_net(b.node_id),
        t.mgr_raft(m.node_id),
        t.mgr_req(m.node_id),
        t.ctl("adm-x", "req"),
        t.mon("service", "x"),
        t.base + "/mon/node/" + b.node_id + "/x",
        t.mon("node", b.node_id, "usage"),
        t.mon("cluster"),
        "homeassistant/sensor/shoal_x/config",
        enroll_resp("jabc"),
        enroll_req("jabc"),
    ]
    async with as_client(m, cluster.port) as watcher:
        await watcher.subscribe(t.base + "/#", qos=1)
        await watcher.subscribe("shoal/enroll/#", qos=1)
        async with as_client(a, cluster.port) as ca:
            for topic in forbidden:
                await ca.publish(topic, b"forged", qos=1)
            await ca.publish(t.node_status(a.node_id), b"mine", qos=1)
        got = await collect(watcher, 1.5)
    # the leader's own documents (mon/cluster, say) may arrive too: only ours are checked
    got = [(topic, body) for topic, body in got if body in (b"forged", b"mine")]
    assert got == [(t.node_status(a.node_id), b"mine")]


async def test_anonymous_enrollment_client_sees_nothing_but_its_own_reply(
    cluster: Cluster, tmp_path: Path
) -> None:
    t = _topics(cluster)
    async with mqtt(cluster.enroll_port, ca=cluster.ca_file, client_id="jsnoop") as snoop:
        for f in ("#", "shoal/enroll/+/req", "shoal/enroll/+/resp", t.base + "/#"):
            await snoop.subscribe(f, qos=1)
        await snoop.publish(t.node_state("x1"), b"forged", qos=1)
        await snoop.publish(enroll_resp("jother"), b"forged", qos=1)
        # a real join happens meanwhile; the snooper must see none of it
        await enroll_identity(tmp_path / "j", cluster.enroll_port, cluster.token())
        got = await collect(snoop, 1.0)
    assert got == []
    async with mqtt(
        cluster.port, ca=cluster.ca_file, cert=tmp_path / "j/cert.pem", key=tmp_path / "j/key.pem"
    ) as ok:
        assert ok is not None  # the identity enrolled alongside works on the cluster listener


async def test_anonymous_client_cannot_use_the_cluster_listener_topics(cluster: Cluster) -> None:
    # the enrollment listener shares the broker: prove its clients cannot reach cluster topics
    t = _topics(cluster)
    mgr = cluster.info(cluster.manager)["node_id"]
    async with mqtt(cluster.enroll_port, ca=cluster.ca_file, client_id="jpoke") as poke:
        await poke.subscribe(t.node_assign(mgr), qos=1)
        await poke.publish(t.mgr_raft(mgr), b"forged", qos=1)
        await poke.publish(t.node_state(mgr), b"forged", qos=1)
        got = await collect(poke, 1.0)
    assert got == []
    assert cluster.info(cluster.manager)["connected"] is True
    assert [n["status"] for n in cluster.node_ls()] == ["ready"]


# people and tools ------------------------------------------------------------------------------
def _issue(cluster: Cluster, role: str, out: Path) -> Ident:
    ident_id = shoal("cert", "issue", role, "--out", str(out), data=cluster.manager).stdout
    return Ident(ident_id.splitlines()[0], out / "cert.pem", out / "key.pem", out / "ca.pem")


async def test_monitor_reads_monitoring_topics_only_and_can_be_revoked(
    cluster: Cluster, tmp_path: Path
) -> None:
    t = _topics(cluster)
    mon = await asyncio.to_thread(_issue, cluster, "monitor", tmp_path / "mon")
    assert mon.node_id.startswith("mon-")
    mgr = cluster.info(cluster.manager)["node_id"]
    async with as_client(mon, cluster.port) as c:
        await c.subscribe(t.base + "/#", qos=1)
        got = await collect(c, 1.0, retained=True)
        await c.publish(t.mon("node", mgr), b"forged", qos=1)
        await c.publish(t.ctl(mon.node_id, "req"), b"forged", qos=1)
    topics = {topic for topic, _ in got}
    assert t.mon("node", mgr) in topics  # the manager's retained JSON status
    assert all("/mon/" in topic for topic in topics), topics
    doc = dict(got)[t.mon("node", mgr)]
    assert b'"status": "ready"' in doc  # the forged publish did not replace it
    async with as_client(mon, cluster.port) as c:
        await c.subscribe(t.mon("node", mgr), qos=1)
        assert b"ready" in await first(c, t.mon("node", mgr))
    await asyncio.to_thread(shoal, "cert", "rm", mon.node_id, data=cluster.manager)
    why = await _refused(cluster, cert=mon.cert, key=mon.key, client_id=mon.node_id)
    assert "revoked" in why


async def test_admin_writes_only_its_own_control_topics(cluster: Cluster, tmp_path: Path) -> None:
    t = _topics(cluster)
    adm = await asyncio.to_thread(_issue, cluster, "admin", tmp_path / "adm")
    m = await enroll_identity(tmp_path / "m", cluster.enroll_port, cluster.token("manager"))
    async with as_client(m, cluster.port) as watcher:
        await watcher.subscribe(t.base + "/#", qos=1)
        async with as_client(adm, cluster.port) as c:
            await c.publish(t.ctl("adm-other", "req"), b"forged", qos=1)
            await c.publish(t.mgr_raft(m.node_id), b"forged", qos=1)
            await c.publish(t.node_assign(m.node_id), b"forged", qos=1)
            await c.publish(t.ctl(adm.node_id, "req"), b"mine", qos=1)
        got = await collect(watcher, 1.5)
    got = [(topic, body) for topic, body in got if body in (b"forged", b"mine")]
    assert got == [(t.ctl(adm.node_id, "req"), b"mine")]


async def test_neither_a_worker_nor_a_monitor_can_publish_a_home_assistant_discovery_entry(
    cluster: Cluster, tmp_path: Path
) -> None:
    t = _topics(cluster)
    await asyncio.to_thread(
        shoal, "swarm", "update", "--home-assistant", "on", data=cluster.manager
    )
    mon = await asyncio.to_thread(_issue, cluster, "monitor", tmp_path / "mon")
    worker = await enroll_identity(tmp_path / "w", cluster.enroll_port, cluster.token())
    mgr = cluster.info(cluster.manager)["node_id"]
    real = t.discovery_config("homeassistant", "sensor", f"node_{mgr}_status")
    forged = t.discovery_config("homeassistant", "sensor", "forged")
    async with as_client(mon, cluster.port) as cm, as_client(worker, cluster.port) as cw:
        await cm.subscribe(t.discovery_configs("homeassistant"), qos=1)
        # a positive control: the monitor reads the leader's entries
        assert b'"state_topic"' in await first(cm, real, timeout=15)
        for client in (cw, cm):
            await client.publish(forged, b'{"name": "forged"}', qos=1, retain=True)
            await client.publish(real, b"", qos=1, retain=True)  # nor clear a real one
        got = await collect(cm, 1.5)
    assert all(topic != forged and body for topic, body in got), got
    async with as_client(mon, cluster.port) as again:  # and nothing forged was retained
        await again.subscribe(forged, qos=1)  # its retained copy would come first
        await again.subscribe(real, qos=1)
        async with asyncio.timeout(5):
            async for m in again.messages:
                assert m.topic.value == real and b'"state_topic"' in bytes(m.payload)  # type: ignore[arg-type]
                break
