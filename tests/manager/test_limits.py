"""The bounds on user-controlled quantities, as the managers enforce them on requests (a request
need not come from the CLI), and the orchestrator's bounded work per pass."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
from typing import Any

import msgpack
import pytest

from agent.manager.control.networks import NetworksAPI
from agent.manager.control.secrets import SecretsAPI
from agent.manager.control.services import ControlAPI
from agent.manager.reconcile.orchestrator import BATCH, live, plan_service
from agent.manager.reconcile.orchestrator_loop import OrchestratorLoop
from agent.manager.store import Node, Service, Store, Task
from agent.model.errors import ShoalError
from agent.model.limits import (
    MAX_ARGS_BYTES,
    MAX_CLUSTER_TASKS,
    MAX_CONSTRAINTS,
    MAX_ENV,
    MAX_ENV_BYTES,
    MAX_LABEL_KEY,
    MAX_LABEL_VALUE,
    MAX_LABELS,
    MAX_MOUNTS,
    MAX_OBJECT_BYTES,
    MAX_PORTS,
    MAX_REPLICAS,
    MAX_SPEC_BYTES,
    LimitError,
)
from agent.model.spec import ContainerSpec, Mount, PortConfig, ServiceMode, ServiceSpec, TaskSpec

T0 = 1_700_000_000.0


class Log:
    """An in-memory Raft log: every proposal is committed at once; counts what each wrote."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.index = 1
        self.task_puts: list[int] = []
        self.services: list[set[str]] = []  # the services whose tasks each proposal wrote

    async def __call__(self, data: bytes) -> int:
        self.index += 1
        ops = msgpack.unpackb(data, raw=False)["ops"]
        tasks = [raw for op, kind, _, raw in ops if op == "put" and kind == "task"]
        self.task_puts.append(len(tasks))
        self.services.append({t["service_id"] for t in tasks})
        self.store.apply(self.index, data)
        return self.index


def _store() -> tuple[Store, Log]:
    s = Store()
    log = Log(s)
    s.proposer = log
    return s, log


def _spec(name: str = "web", replicas: int = 1, **container: Any) -> dict[str, Any]:
    return ServiceSpec(
        name=name,
        task_template=TaskSpec(container=ContainerSpec(image="busybox", **container)),
        mode=ServiceMode(replicas=replicas),
    ).to_dict()


async def _refused(call: Any, *fragments: str) -> str:
    with pytest.raises(LimitError) as info:
        await call
    text = str(info.value)
    for f in fragments:
        assert f in text, text
    return text


# replicas and tasks --------------------------------------------------------------------------
async def test_create_refuses_more_replicas_than_the_limit_and_stores_nothing() -> None:
    s, _ = _store()
    api = ControlAPI(s)
    await _refused(
        api.service_create({"spec": _spec(replicas=1_000_000_000)}),
        "replicas is 1,000,000,000",
        f"at most {MAX_REPLICAS:,}",
        "split the work",
    )
    assert s.view().list(Service) == []


async def test_the_limit_itself_is_accepted() -> None:
    s, _ = _store()
    await ControlAPI(s).service_create({"spec": _spec(replicas=MAX_REPLICAS)})
    assert len(s.view().list(Service)) == 1


async def test_scale_refuses_more_replicas_than_the_limit_and_keeps_the_spec() -> None:
    s, _ = _store()
    api = ControlAPI(s)
    await api.service_create({"spec": _spec(replicas=2)})
    await _refused(
        api.service_scale({"service": "web", "replicas": 1_000_000_000}), "1,000,000,000"
    )
    (svc,) = s.view().list(Service)
    assert svc.spec.mode.replicas == 2 and svc.spec_version == 1


async def test_update_refuses_more_replicas_than_the_limit() -> None:
    s, _ = _store()
    api = ControlAPI(s)
    await api.service_create({"spec": _spec()})
    await _refused(api.service_update({"service": "web", "spec": _spec(replicas=MAX_REPLICAS + 1)}))


async def test_max_concurrent_of_a_job_is_bounded() -> None:
    spec = _spec()
    spec["mode"] = {"kind": "replicated-job", "replicas": 1, "max_concurrent": MAX_REPLICAS + 1}
    await _refused(ControlAPI(_store()[0]).service_create({"spec": spec}), "max-concurrent")


async def test_the_cluster_total_of_tasks_is_bounded_but_scaling_down_is_always_allowed() -> None:
    s, _ = _store()
    api = ControlAPI(s)
    per = MAX_REPLICAS
    for i in range(MAX_CLUSTER_TASKS // per):
        await api.service_create({"spec": _spec(f"s{i}", replicas=per)})
    await _refused(
        api.service_create({"spec": _spec("one-more", replicas=1)}),
        f"{MAX_CLUSTER_TASKS + 1:,} tasks",
        "scale other services down",
    )
    await _refused(api.service_scale({"service": "s0", "replicas": per + 1}))
    await api.service_scale({"service": "s0", "replicas": per - 1})
    await api.service_create({"spec": _spec("one-more", replicas=1)})


async def test_global_services_count_one_task_per_node() -> None:
    s, _ = _store()
    await s.update(lambda tx: [tx.put(Node(id=f"n{i}", hostname=f"n{i}")) for i in range(3)])
    api = ControlAPI(s)
    for i in range(MAX_CLUSTER_TASKS // MAX_REPLICAS):
        await api.service_create({"spec": _spec(f"s{i}", replicas=MAX_REPLICAS - 1)})
    spec = _spec("everywhere")
    spec["mode"] = {"kind": "global", "replicas": 0}
    await api.service_create({"spec": spec})  # 5 x 9,999 + 3 fits
    spec2 = dict(spec, name="everywhere-2")
    await _refused(api.service_create({"spec": spec2}), "50,001 tasks")


# the spec's other quantities -----------------------------------------------------------------
@pytest.mark.parametrize(
    ("container", "fragment"),
    [
        ({"env": tuple(f"K{i}=v" for i in range(MAX_ENV + 1))}, "environment variables"),
        ({"env": ("BIG=" + "x" * MAX_ENV_BYTES,)}, "environment's size"),
        ({"args": ("x" * (MAX_ARGS_BYTES + 1),)}, "command line's size"),
        ({"labels": {f"k{i}": "v" for i in range(MAX_LABELS + 1)}}, "container labels"),
        ({"labels": {"k" * (MAX_LABEL_KEY + 1): "v"}}, "characters"),
        ({"labels": {"k": "v" * (MAX_LABEL_VALUE + 1)}}, "config or secret"),
        (
            {
                "mounts": tuple(
                    Mount(type="bind", target=f"/m{i}", source=f"/s{i}")
                    for i in range(MAX_MOUNTS + 1)
                )
            },
            "mounts",
        ),
    ],
)
async def test_container_quantities_are_bounded(container: dict[str, Any], fragment: str) -> None:
    s, _ = _store()
    await _refused(ControlAPI(s).service_create({"spec": _spec(**container)}), fragment)
    assert s.view().list(Service) == []


async def test_published_ports_and_constraints_are_bounded() -> None:
    api = ControlAPI(_store()[0])
    spec = _spec()
    spec["endpoint_spec"]["ports"] = [
        PortConfig(target=80, published=10_000 + i).to_dict() for i in range(MAX_PORTS + 1)
    ]
    await _refused(api.service_create({"spec": spec}), "published ports")
    spec = _spec()
    spec["task_template"]["placement"]["constraints"] = [
        f"node.labels.k{i}==v" for i in range(MAX_CONSTRAINTS + 1)
    ]
    await _refused(api.service_create({"spec": spec}), "constraints")


async def test_the_whole_spec_is_bounded() -> None:
    env = tuple(f"K{i}=" + "x" * 60 for i in range(MAX_ENV))  # under both env bounds
    labels = {f"k{i}": "v" * MAX_LABEL_VALUE for i in range(MAX_LABELS)}
    spec = _spec(env=env, labels=labels)
    spec["labels"] = labels
    spec["task_template"]["container"]["args"] = ["a" * 60_000]
    assert len(str(spec)) < MAX_SPEC_BYTES  # each part passes; together they do not
    spec["task_template"]["container"]["dir"] = "/" + "d" * MAX_SPEC_BYTES
    await _refused(ControlAPI(_store()[0]).service_create({"spec": spec}), "spec's size")


# nodes, networks, secrets, configs ------------------------------------------------------------
async def test_node_labels_are_bounded() -> None:
    s, _ = _store()
    await s.update(lambda tx: tx.put(Node(id="n1", hostname="n1")))
    api = ControlAPI(s)
    many = {f"k{i}": "v" for i in range(MAX_LABELS + 1)}
    await _refused(api.node_update({"node": "n1", "label_add": many}), "labels of node n1")
    assert s.view().get(Node, "n1") == Node(id="n1", hostname="n1")


async def test_network_labels_are_bounded() -> None:
    s, _ = _store()
    many = {f"k{i}": "v" for i in range(MAX_LABELS + 1)}
    await _refused(
        NetworksAPI(s).commands["network-create"]({"name": "back", "labels": many}),
        "labels of network back",
    )


@pytest.mark.parametrize("kind", ["secret", "config"])
async def test_secret_and_config_size_and_labels_are_bounded(kind: str) -> None:
    s, _ = _store()
    create = SecretsAPI(s).commands[f"{kind}-create"]
    big = base64.b64encode(b"x" * (MAX_OBJECT_BYTES + 1)).decode()
    with pytest.raises(ShoalError, match="500 KB"):
        await create({"name": "big", "data": big})
    many = {f"k{i}": "v" for i in range(MAX_LABELS + 1)}
    data = base64.b64encode(b"x").decode()
    await _refused(create({"name": "small", "data": data, "labels": many}), f"{kind} small")


# the orchestrator's passes --------------------------------------------------------------------
def _service(replicas: int) -> Service:
    return Service(
        id="svc", name="web", spec=ServiceSpec.from_dict(_spec(replicas=replicas)), spec_version=1
    )


def test_a_plan_creates_at_most_the_batch_and_says_there_is_more() -> None:
    plan = plan_service(_service(1200), [], {}, T0, batch=500)
    assert len(plan.put) == 500 and plan.more
    assert [t.slot for t in plan.put] == list(range(1, 501))


def test_repeated_plans_converge_on_every_slot() -> None:
    svc = _service(1200)
    tasks: list[Task] = []
    passes = 0
    while True:
        plan = plan_service(svc, tasks, {}, T0, batch=500)
        if not plan.put:
            break
        passes += 1
        assert len(plan.put) <= 500
        tasks += plan.put
    assert passes == 3 and not plan.more
    assert sorted(t.slot for t in tasks if live(t)) == list(range(1, 1201))


async def test_the_orchestrator_scales_up_in_bounded_transactions_without_starving_others() -> None:
    s, log = _store()
    total = BATCH * 3 + 7
    big = dataclasses.replace(_service(total), id="big")
    small = dataclasses.replace(_service(3), id="small", name="small")
    await s.update(lambda tx: [tx.put(big), tx.put(small)])
    orch = OrchestratorLoop(s, clock=lambda: T0)
    runner = asyncio.ensure_future(orch.run())
    try:
        async with s.watch("task") as q, asyncio.timeout(20):
            while sum(t.service_id == "big" for t in s.view().list(Task)) < total:
                await q.get()
    finally:
        runner.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await runner
    first_small = next(i for i, ids in enumerate(log.services) if "small" in ids)
    last_big = max(i for i, ids in enumerate(log.services) if "big" in ids)
    assert first_small < last_big  # the small service did not wait for the big one to finish
    assert max(log.task_puts) <= BATCH
    assert log.task_puts.count(BATCH) == 3
    slots = sorted(t.slot for t in s.view().list(Task) if t.service_id == "big")
    assert slots == list(range(1, total + 1))
