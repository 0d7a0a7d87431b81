"""Malformed, truncated, oversized and type-confused messages on every topic a worker, an
admin and an anonymous enrollment client may publish, against a real cluster (a manager and
a worker): every daemon keeps running, the rejections are counted, the store keeps what it
had, and the cluster still converges a service quickly afterwards."""

from __future__ import annotations

import asyncio
import json
import random
from pathlib import Path

import aiomqtt
import pytest

from broker.envelope import MAX_MESSAGE_BYTES, Envelope, encode
from broker.topics import Topics, enroll_req
from certs import make_csr, new_private_key
from tests.chaos.enroll_flood_support import Latency
from tests.chaos.malformed_support import (
    confused_envelopes,
    converge,
    daemon_alive,
    garbage,
    is_envelope,
    nodes_view,
    services_view,
)
from tests.chaos.report import ChaosReport
from tests.harness import Cluster, shoal
from tests.integration.mqtt import Ident, as_client, enroll_identity, first, mqtt

pytestmark = [pytest.mark.integration]


def _issue_admin(c: Cluster, out: Path) -> Ident:
    ident_id = shoal("cert", "issue", "admin", "--out", str(out), data=c.manager).stdout
    return Ident(ident_id.splitlines()[0], out / "cert.pem", out / "key.pem", out / "ca.pem")


async def _flood(client: aiomqtt.Client, topic: str, payloads: list[bytes]) -> int:
    for p in payloads:
        await client.publish(topic, p, qos=1, timeout=30)
    return len(payloads)


async def _too_big(port: int, ca: Path, topic: str, **kw: object) -> bool:
    """A packet over the broker's limit ends the sender's connection (True when it did)."""
    try:
        async with mqtt(port, ca=ca, timeout=10, **kw) as c:  # type: ignore[arg-type]
            await c.publish(topic, b"\x00" * (MAX_MESSAGE_BYTES + 256 * 1024), qos=1, timeout=5)
            await c.publish(topic, b"after", qos=1, timeout=5)
    except aiomqtt.MqttError:
        return True
    return False


def heavy_stack_file() -> bytes:
    """Just under 1 MiB that takes seconds to parse and is refused only at its last line."""
    head = "version: '3.8'\nservices:\n  web:\n    image: x\n    labels:\n"
    lines, size = [head], len(head)
    i = 0
    while size < 1024 * 1024 - 64:
        line = f"      l{i}: v{i}\n"
        lines.append(line)
        size += len(line)
        i += 1
    return ("".join(lines) + "    imagee: y\n").encode()


async def _heavy_stack(c: Cluster, a: aiomqtt.Client, t: Topics, admin: str) -> float:
    """The longest the manager took to answer `node-ls` while it parsed a heavy stack file."""
    await a.subscribe(t.stack_result(admin, "heavy"), qos=1)
    probe = Latency(c.manager, writes=False)
    probe.start()
    await a.publish(t.stack_ctl(admin, "heavy", "deploy"), heavy_stack_file(), qos=1, timeout=30)
    result = json.loads(await first(a, t.stack_result(admin, "heavy"), timeout=60))
    samples = probe.stop()
    assert result["ok"] is False and "imagee" in " ".join(result["errors"]), result
    return max(samples)


async def test_garbage_on_every_writable_topic_is_rejected_and_changes_nothing(
    cluster: Cluster, tmp_path: Path, chaos_report: ChaosReport
) -> None:
    c = cluster
    worker = await asyncio.to_thread(c.join, "w1", "worker", "hollow")
    t = Topics(c.info(c.manager)["cluster_id"])
    bad = await enroll_identity(tmp_path / "bad", c.enroll_port, c.token())
    adm = await asyncio.to_thread(_issue_admin, c, tmp_path / "adm")
    nodes_before = await asyncio.to_thread(nodes_view, c)
    services_before = await asyncio.to_thread(services_view, c)
    rejected_before = c.info(c.manager)["rejected"]
    rng = random.Random(20261203)

    sent = expected = 0
    worker_topics = [t.node_state(bad.node_id), t.node_status(bad.node_id), t.node_req(bad.node_id)]
    async with as_client(bad, c.port) as w:
        for topic in worker_topics:
            payloads = garbage(bad.node_id, rng) + confused_envelopes(bad.node_id)
            sent += await _flood(w, topic, payloads)
            expected += sum(
                1 for p in payloads if len(p) <= MAX_MESSAGE_BYTES and not is_envelope(p)
            )
        renewals = [
            encode(Envelope("renew", bad.node_id, 10_000 + i, {"csr": make_csr(new_private_key())}))
            for i in range(20)
        ]  # valid ones: each would be signed and committed, so they are rate limited
        sent += await _flood(w, t.node_req(bad.node_id), renewals)
        for leaf in ("description", "tasks", "x"):
            sent += await _flood(w, f"{t.base}/mon/node/{bad.node_id}/{leaf}", garbage("w", rng))
    async with as_client(adm, c.port) as a:
        stack_files = [
            b"services: [",
            b"\xff\xfe\x00",
            b"version: '3.8'\nservices:\n  web:\n    image: [1, 2]\n",
            b"x: &a [*a]\n",
            b"a: " + b"x" * 2_000_000,
        ]
        sent += await _flood(a, t.stack_ctl(adm.node_id, "junk", "deploy"), stack_files)
        sent += await _flood(a, t.stack_ctl(adm.node_id, "junk", "rm"), garbage("a", rng)[:5])
        sent += await _flood(a, t.ctl(adm.node_id, "stack/junk/other"), [b"x"])
        sent += await _flood(a, t.ctl(adm.node_id, "x"), garbage("a", rng)[:10])
        stall = await _heavy_stack(c, a, t, adm.node_id)
        sent += 1
    async with mqtt(c.enroll_port, ca=c.ca_file, client_id="jfuzz") as anon:
        payloads = garbage("jfuzz", rng) + confused_envelopes("jfuzz")
        sent += await _flood(anon, enroll_req("jfuzz"), payloads)
        expected += sum(1 for p in payloads if len(p) <= MAX_MESSAGE_BYTES and not is_envelope(p))

    # packets over the broker's limit end the sender's session, whoever it is
    cut = [
        await _too_big(
            c.port,
            c.ca_file,
            t.node_status(bad.node_id),
            cert=bad.cert,
            key=bad.key,
            client_id=bad.node_id,
        ),
        await _too_big(c.enroll_port, c.ca_file, enroll_req("jbig"), client_id="jbig"),
    ]
    sent += len(cut)
    assert cut == [True, True]

    assert stall < 1.5, f"the manager stalled {stall:.2f} s while parsing a stack file"

    # every daemon is alive, answers, and counted what it refused
    assert daemon_alive(c.manager) and daemon_alive(worker)
    info = c.info(c.manager)
    rejected = info["rejected"] - rejected_before
    assert rejected >= expected, info["rejected_reasons"]
    assert info["rejected_reasons"].get("renewal rate limited", 0) >= 10, info["rejected_reasons"]
    assert c.info(worker)["connected"] is True
    for data in (c.manager, worker):  # no handler failed: every refusal was a clean one
        assert "Traceback" not in (data / "shoal.log").read_text()

    # nothing changed that should not have; the cluster still works, quickly
    assert await asyncio.to_thread(nodes_view, c) == nodes_before
    assert await asyncio.to_thread(services_view, c) == services_before
    shoal(
        "service",
        "create",
        "--detach",
        "--name",
        "after",
        "--replicas",
        "2",
        "--constraint",
        "node.role==worker",
        "shoal/busybox:latest",
        data=c.manager,
    )
    created = converge(c, "after", 2, 20)
    shoal("service", "scale", "after=6", data=c.manager)
    scaled = converge(c, "after", 6, 20)
    chaos_report.record(
        "malformed messages from a worker, an admin and anonymous clients",
        injected=sent,
        converge_s=created + scaled,
        note=f"rejected {rejected} (>= {expected} undecodable); longest answer while parsing"
        f" a 1 MiB stack {stall:.2f} s; create {created:.2f} s,"
        f" scale {scaled:.2f} s",
    )
