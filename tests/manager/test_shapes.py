"""What `inspect` returns: the typed store objects in Docker's JSON shapes, and how `shoal
inspect` finds an object of any kind."""

from __future__ import annotations

import json
from typing import Any

import msgpack
import pytest

from agent.cli.output import format_inspect
from agent.manager.control.inspect import InspectAPI
from agent.manager.control.shapes import (
    ManagerInfo,
    ServiceCounts,
    config_shape,
    docker_time,
    node_shape,
    secret_shape,
    service_shape,
    task_shape,
)
from agent.manager.store import (
    Config,
    Network,
    Node,
    NodeRole,
    NodeStatus,
    Secret,
    Service,
    Store,
    Task,
    TaskEndpoint,
    UpdateState,
    UpdateStatus,
)
from agent.model import DesiredState, TaskState, TaskStatus
from agent.model.errors import ShoalError
from agent.model.spec import (
    SECOND,
    ContainerSpec,
    EndpointSpec,
    Mount,
    NetworkAttachment,
    Placement,
    PortConfig,
    Resources,
    ResourceSpec,
    RestartPolicy,
    SecretRef,
    ServiceMode,
    ServiceSpec,
    TaskSpec,
    UpdateConfig,
)

CREATED = "2026-12-03T12:00:00.120+00:00"
UPDATED = "2026-12-03T12:05:30.000+00:00"

TEMPLATE = TaskSpec(
    container=ContainerSpec(
        image="shoal/busybox:latest",
        args=("sleep", "1000"),
        env=("LEVEL=two",),
        init=False,
        mounts=(Mount(type="tmpfs", target="/scratch"),),
        secrets=(SecretRef(source="token", target="token", secret_id="sec1"),),
    ),
    resources=Resources(limits=ResourceSpec(nano_cpus=500_000_000, memory_bytes=64 * 2**20)),
    restart_policy=RestartPolicy(condition="on-failure", max_attempts=3),
    placement=Placement(
        constraints=("node.role==worker",), preferences=("spread=node.labels.zone",)
    ),
    networks=(NetworkAttachment(target="net1", aliases=("db",)),),
)
SPEC = ServiceSpec(
    name="web",
    labels={"tier": "front"},
    task_template=TEMPLATE,
    mode=ServiceMode(replicas=3),
    update_config=UpdateConfig(parallelism=2, delay_ns=10 * SECOND),
    rollback_config=UpdateConfig(failure_action="continue"),
    endpoint_spec=EndpointSpec(ports=(PortConfig(target=80, published=8080),)),
)


def _service(**changes: Any) -> Service:
    fields: dict[str, Any] = {
        "id": "svc1",
        "name": "web",
        "spec": SPEC,
        "spec_version": 2,
        "created": CREATED,
        "updated": UPDATED,
    }
    fields.update(changes)
    return Service(**fields)


def test_stamps_are_printed_as_go_prints_rfc3339_with_nanoseconds() -> None:
    assert docker_time("2026-12-03T12:00:00.120+00:00") == "2026-12-03T12:00:00.12Z"
    assert docker_time("2026-12-03T14:00:00.000+02:00") == "2026-12-03T12:00:00Z"
    assert docker_time(1_700_000_000.5) == "2023-11-14T22:13:20.5Z"
    assert docker_time("") == "0001-01-01T00:00:00Z"
    assert docker_time(0.0) == "0001-01-01T00:00:00Z"


def test_a_service_has_docker_s_top_level_fields_and_spec_names() -> None:
    out = service_shape(_service(), version=17)
    assert out["ID"] == "svc1"
    assert out["Version"] == {"Index": 17}
    assert (out["CreatedAt"], out["UpdatedAt"]) == (
        "2026-12-03T12:00:00.12Z",
        "2026-12-03T12:05:30Z",
    )
    spec = out["Spec"]
    assert spec["Name"] == "web" and spec["Labels"] == {"tier": "front"}
    assert spec["Mode"] == {"Replicated": {"Replicas": 3}}
    tt = spec["TaskTemplate"]
    c = tt["ContainerSpec"]
    assert c["Image"] == "shoal/busybox:latest"
    assert c["Args"] == ["sleep", "1000"] and c["Env"] == ["LEVEL=two"] and c["Init"] is False
    assert c["Mounts"] == [{"Type": "tmpfs", "Target": "/scratch"}]
    assert c["Secrets"] == [
        {
            "File": {"Name": "token", "UID": "0", "GID": "0", "Mode": 0o444},
            "SecretID": "sec1",
            "SecretName": "token",
        }
    ]
    assert "Command" not in c and "Hostname" not in c  # omitempty, as in Docker
    assert tt["Resources"] == {
        "Limits": {"NanoCPUs": 500_000_000, "MemoryBytes": 64 * 2**20},
        "Reservations": {},
    }
    assert tt["RestartPolicy"] == {"Condition": "on-failure", "Delay": 5 * SECOND, "MaxAttempts": 3}
    assert tt["Placement"] == {
        "Constraints": ["node.role==worker"],
        "Preferences": [{"Spread": {"SpreadDescriptor": "node.labels.zone"}}],
    }
    assert tt["Networks"] == [{"Target": "net1", "Aliases": ["db"]}]
    assert spec["UpdateConfig"] == {
        "Parallelism": 2,
        "Delay": 10 * SECOND,
        "FailureAction": "pause",
        "Monitor": 5 * SECOND,
        "MaxFailureRatio": 0.0,
        "Order": "stop-first",
    }
    assert spec["RollbackConfig"]["FailureAction"] == "continue"
    assert spec["EndpointSpec"] == {
        "Mode": "vip",
        "Ports": [
            {"Protocol": "tcp", "TargetPort": 80, "PublishedPort": 8080, "PublishMode": "ingress"}
        ],
    }
    assert "UpdateStatus" not in out and "PreviousSpec" not in out
    assert out["Shoal"]["SpecVersion"] == 2


def test_a_service_s_endpoint_shows_the_allocated_ports_and_virtual_ips() -> None:
    dynamic = PortConfig(target=80, published=30001)
    out = service_shape(_service(), version=1, ports=(dynamic,), vips=(("net1", "10.0.1.2/24"),))
    endpoint = out["Endpoint"]
    assert endpoint["Ports"][0]["PublishedPort"] == 30001
    assert endpoint["VirtualIPs"] == [{"NetworkID": "net1", "Addr": "10.0.1.2/24"}]
    assert endpoint["Spec"] == out["Spec"]["EndpointSpec"]


def test_an_updated_service_shows_its_update_status_and_previous_spec() -> None:
    status = UpdateStatus(
        state=UpdateState.ROLLBACK_COMPLETED,
        started_at=CREATED,
        message="rollback completed",
        reason="update rolled back due to failure of task t1",
        completed_at=UPDATED,
    )
    old = ServiceSpec(name="web", task_template=TaskSpec(container=ContainerSpec(image="old")))
    out = service_shape(
        _service(update_status=status, previous_spec=old),
        version=1,
        counts=ServiceCounts(running=2, desired=3),
    )
    assert out["UpdateStatus"] == {
        "State": "rollback_completed",
        "StartedAt": "2026-12-03T12:00:00.12Z",
        "CompletedAt": "2026-12-03T12:05:30Z",
        "Message": "rollback completed",
    }
    assert out["PreviousSpec"]["TaskTemplate"]["ContainerSpec"]["Image"] == "old"
    assert out["Shoal"]["UpdateReason"] == "update rolled back due to failure of task t1"
    assert out["ServiceStatus"] == {"RunningTasks": 2, "DesiredTasks": 3, "CompletedTasks": 0}


@pytest.mark.parametrize(
    ("mode", "shape"),
    [
        (ServiceMode(kind="global", replicas=0), {"Global": {}}),
        (ServiceMode(kind="global-job", replicas=0), {"GlobalJob": {}}),
        (
            ServiceMode(kind="replicated-job", replicas=5, max_concurrent=2),
            {"ReplicatedJob": {"MaxConcurrent": 2, "TotalCompletions": 5}},
        ),
    ],
)
def test_each_service_mode_has_docker_s_key(mode: ServiceMode, shape: dict[str, Any]) -> None:
    spec = ServiceSpec(name="m", task_template=TEMPLATE, mode=mode)
    assert service_shape(_service(spec=spec), version=1)["Spec"]["Mode"] == shape


def test_a_node_has_its_spec_description_status_and_manager_status() -> None:
    node = Node(
        id="n1",
        role=NodeRole.MANAGER,
        hostname="edge-1",
        status=NodeStatus.READY,
        labels={"zone": "a"},
        description={
            "platform": {"os": "linux", "arch": "aarch64"},
            "resources": {"nano_cpus": 4 * 10**9, "memory_bytes": 2**30},
            "engine": {"driver": "docker", "name": "docker", "version": "27.1.0"},
            "addresses": ["192.168.1.10"],
        },
        created=CREATED,
        updated=UPDATED,
    )
    out = node_shape(node, version=4, manager=ManagerInfo(leader=True, reachability="reachable"))
    assert out["ID"] == "n1" and out["Version"] == {"Index": 4}
    assert out["Spec"] == {"Labels": {"zone": "a"}, "Role": "manager", "Availability": "active"}
    assert out["Description"] == {
        "Hostname": "edge-1",
        "Platform": {"Architecture": "aarch64", "OS": "linux"},
        "Resources": {"NanoCPUs": 4 * 10**9, "MemoryBytes": 2**30},
        "Engine": {"EngineVersion": "27.1.0"},
    }
    assert out["Status"] == {"State": "ready", "Addr": "192.168.1.10"}
    assert out["ManagerStatus"] == {"Leader": True, "Reachability": "reachable"}
    worker = node_shape(Node(id="n2"), version=1)
    assert "ManagerStatus" not in worker and worker["Spec"]["Labels"] == {}


def test_a_task_has_its_service_slot_node_status_and_desired_state() -> None:
    task = Task(
        id="t1",
        service_id="svc1",
        slot=2,
        node_id="n1",
        desired_state=DesiredState.SHUTDOWN,
        spec=TEMPLATE,
        status=TaskStatus(
            task_id="t1",
            state=TaskState.FAILED,
            message="started",
            err="task: non-zero exit (3)",
            exit_code=3,
            container_id="c0ffee",
            timestamp=1_700_000_000.0,
        ),
        endpoint=TaskEndpoint(ports=(PortConfig(target=80, published=81, publish_mode="host"),)),
        created=CREATED,
        updated=UPDATED,
    )
    out = task_shape(task, version=9)
    assert (out["ID"], out["ServiceID"], out["Slot"], out["NodeID"]) == ("t1", "svc1", 2, "n1")
    assert out["DesiredState"] == "shutdown"
    assert out["Spec"]["ContainerSpec"]["Image"] == "shoal/busybox:latest"
    assert out["Status"] == {
        "Timestamp": "2023-11-14T22:13:20Z",
        "State": "failed",
        "Message": "started",
        "Err": "task: non-zero exit (3)",
        "ContainerStatus": {"ContainerID": "c0ffee", "ExitCode": 3},
        "PortStatus": {
            "Ports": [
                {"Protocol": "tcp", "TargetPort": 80, "PublishedPort": 81, "PublishMode": "host"}
            ]
        },
    }


def test_a_secret_never_shows_its_data_and_a_config_does_in_base64() -> None:
    secret = secret_shape(Secret(id="s1", name="pw", data=b"hunter2"), version=3)
    assert secret["Spec"] == {"Name": "pw", "Labels": {}}
    assert "hunter2" not in json.dumps(secret) and "aHVudGVyMg" not in json.dumps(secret)
    config = config_shape(Config(id="c1", name="conf", data=b"hi"), version=3)
    assert config["Spec"] == {"Name": "conf", "Labels": {}, "Data": "aGk="}


def test_docker_s_simple_template_paths_work_on_the_shapes() -> None:
    service = service_shape(_service(), version=1)
    node = node_shape(Node(id="n1", labels={"zone": "a"}), version=1)
    assert format_inspect([service], "{{.Spec.Mode.Replicated.Replicas}}") == "3"
    assert format_inspect([service], "{{.Spec.TaskTemplate.ContainerSpec.Image}}") == (
        "shoal/busybox:latest"
    )
    assert format_inspect([node], "{{.Spec.Labels}}") == "map[zone:a]"


# the control API on an in-memory store -------------------------------------------------------
class _Log:
    def __init__(self, store: Store) -> None:
        self.store, self.index = store, 1

    async def __call__(self, data: bytes) -> int:
        self.index += 1
        msgpack.unpackb(data, raw=False)
        self.store.apply(self.index, data)
        return self.index


async def _api(*objs: Any, leadership: Any = None) -> tuple[InspectAPI, Store]:
    store = Store()
    store.proposer = _Log(store)

    def put(tx: Any) -> None:
        for o in objs:
            tx.put(o)

    await store.update(put)
    api = InspectAPI(store, leadership=leadership) if leadership else InspectAPI(store)
    return api, store


TASK = Task(id="task1xyz", service_id="svc1", slot=1, spec=TEMPLATE, created=CREATED)


async def test_service_inspect_carries_the_store_s_version_of_the_service() -> None:
    api, store = await _api(_service())
    out = await api.commands["service-inspect"]({"service": "web"})
    assert out["Version"]["Index"] == store.view().version("service", "svc1") > 0
    assert out["ServiceStatus"]["DesiredTasks"] == 3


async def test_inspect_finds_an_object_of_any_kind_by_id_name_or_prefix() -> None:
    api, _ = await _api(
        _service(), TASK, Node(id="node9", hostname="edge-9"), Network(id="net1", name="back")
    )
    lookup = api.commands["inspect"]
    assert (await lookup({"ref": "task1xyz"}))["ServiceID"] == "svc1"
    assert (await lookup({"ref": "task1"}))["ID"] == "task1xyz"
    assert (await lookup({"ref": "web"}))["Spec"]["Name"] == "web"
    assert (await lookup({"ref": "edge-9"}))["ID"] == "node9"
    assert (await lookup({"ref": "back"}))["Id"] == "net1"
    assert (await lookup({"ref": "ingress"}))["Ingress"] is True  # the default one
    with pytest.raises(ShoalError, match="No such object: nothing"):
        await lookup({"ref": "nothing"})
    with pytest.raises(ShoalError, match="No such object: web"):
        await lookup({"ref": "web", "type": "node"})
    with pytest.raises(ShoalError, match="invalid type 'volume'"):
        await lookup({"ref": "web", "type": "volume"})


async def test_an_id_prefix_shared_by_two_objects_is_ambiguous() -> None:
    api, _ = await _api(Node(id="abc1"), Secret(id="abc2", name="pw"))
    with pytest.raises(ShoalError, match="abc is ambiguous"):
        await api.commands["inspect"]({"ref": "abc"})


async def test_node_inspect_says_which_manager_leads() -> None:
    leader = Node(id="m1", role=NodeRole.MANAGER, status=NodeStatus.READY)
    other = Node(id="m2", role=NodeRole.MANAGER, status=NodeStatus.DOWN)
    api, _ = await _api(leader, other, leadership=lambda: ("m1", ("m1", "m2")))
    first = await api.commands["node-inspect"]({"node": "m1"})
    second = await api.commands["node-inspect"]({"node": "m2"})
    assert first["ManagerStatus"] == {"Leader": True, "Reachability": "reachable"}
    assert second["ManagerStatus"] == {"Reachability": "unreachable"}
