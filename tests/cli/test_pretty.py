"""`service inspect --pretty` and `node inspect --pretty`: Docker's human layouts."""

from __future__ import annotations

from agent.cli.pretty import go_duration, human_bytes, node_pretty, service_pretty
from agent.manager.control.shapes import ManagerInfo, node_shape, service_shape
from agent.manager.store import Node, NodeRole, NodeStatus, Service, UpdateState, UpdateStatus
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
    ServiceMode,
    ServiceSpec,
    TaskSpec,
    UpdateConfig,
)
from agent.model.stamps import parse_stamp

STARTED = "2026-12-03T12:00:00.000+00:00"
NOW = parse_stamp(STARTED) + 90


def _shape(**spec: object) -> dict[str, object]:
    template = TaskSpec(
        container=ContainerSpec(
            image="shoal/busybox:latest",
            args=("sleep", "1000"),
            env=("A=1", "B=2"),
            init=True,
            mounts=(Mount(type="bind", source="/srv", target="/data", read_only=True),),
        ),
        resources=Resources(limits=ResourceSpec(nano_cpus=500_000_000, memory_bytes=64 * 2**20)),
        placement=Placement(constraints=("node.role==worker", "node.labels.zone==a")),
        networks=(NetworkAttachment(target="back"),),
    )
    fields: dict[str, object] = {
        "name": "web",
        "labels": {"tier": "front"},
        "task_template": template,
        "mode": ServiceMode(replicas=3),
        "update_config": UpdateConfig(parallelism=2, delay_ns=10 * SECOND),
        "endpoint_spec": EndpointSpec(ports=(PortConfig(target=80, published=8080),)),
    }
    fields.update(spec)
    status = UpdateStatus(
        state=UpdateState.UPDATING, started_at=STARTED, message="update in progress"
    )
    service = Service(
        id="svc1",
        name="web",
        spec=ServiceSpec(**fields),
        update_status=status,  # type: ignore[arg-type]
    )
    return service_shape(service, version=1)


def test_service_pretty_is_docker_s_layout() -> None:
    assert service_pretty(_shape(), now=NOW) == "\n".join(
        [
            "",
            "ID:\t\tsvc1",
            "Name:\t\tweb",
            "Labels:",
            " - tier=front",
            "Service Mode:\tReplicated",
            " Replicas:\t3",
            "UpdateStatus:",
            " State:\t\tupdating",
            " Started:\tAbout a minute ago",
            " Message:\tupdate in progress",
            "Placement:",
            " Constraints:\t[node.role==worker node.labels.zone==a]",
            "UpdateConfig:",
            " Parallelism:\t2",
            " Delay:\t\t10s",
            " On failure:\tpause",
            " Monitoring Period: 5s",
            " Max failure ratio: 0",
            " Update order:      stop-first",
            "ContainerSpec:",
            " Image:\t\tshoal/busybox:latest",
            " Args:\t\tsleep 1000 ",
            " Env:\t\tA=1 B=2 ",
            " Init:\t\ttrue",
            "Mounts:",
            " Target:\t/data",
            "  Source:\t/srv",
            "  ReadOnly:\ttrue",
            "  Type:\t\tbind",
            "Resources:",
            " Limits:",
            "  CPU:\t\t0.5",
            "  Memory:\t64MiB",
            "Networks: back ",
            "Endpoint Mode:\tvip",
            "Ports:",
            " PublishedPort = 8080",
            "  Protocol = tcp",
            "  TargetPort = 80",
            "  PublishMode = ingress",
        ]
    )


def test_service_pretty_leaves_out_what_the_service_does_not_have() -> None:
    template = TaskSpec(container=ContainerSpec(image="redis:7"))
    text = service_pretty(
        _shape(
            task_template=template,
            mode=ServiceMode(kind="global", replicas=0),
            update_config=None,
            endpoint_spec=EndpointSpec(),
        ),
        now=NOW,
    )
    assert "Service Mode:\tGlobal" in text and "Replicas" not in text
    for absent in ("UpdateConfig:", "Args:", "Env:", "Init:", "Mounts:", "Resources:", "Ports:"):
        assert absent not in text


def test_go_durations_and_byte_sizes_read_as_docker_prints_them() -> None:
    assert [go_duration(n) for n in (0, 500_000_000, 5 * SECOND, 90 * SECOND, 3600 * SECOND)] == [
        "0s",
        "500ms",
        "5s",
        "1m30s",
        "1h0m0s",
    ]
    assert [human_bytes(n) for n in (512, 64 * 2**20, 1536 * 2**20)] == ["512B", "64MiB", "1.5GiB"]


def test_node_pretty_shows_state_manager_status_and_platform() -> None:
    node = Node(
        id="n1",
        role=NodeRole.MANAGER,
        hostname="edge-1",
        status=NodeStatus.READY,
        labels={"zone": "a"},
        description={
            "platform": {"os": "linux", "arch": "x86_64"},
            "resources": {"nano_cpus": 2 * 10**9, "memory_bytes": 2**30},
            "engine": {"driver": "process"},
        },
    )
    text = node_pretty(node_shape(node, version=1, manager=ManagerInfo(True, "reachable")))
    assert text.splitlines()[:6] == [
        "ID:\t\t\tn1",
        "Labels:",
        " - zone=a",
        "Hostname:\t\tedge-1",
        "Status:",
        " State:\t\t\tReady",
    ]
    assert " Raft Status:\t\tReachable" in text and " Leader:\t\tYes" in text
    assert " CPUs:\t\t\t2" in text and " Memory:\t\t1GiB" in text
