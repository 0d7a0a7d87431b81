"""What managers answer for `system info`, `system df` and a global service's progress, from an
in-memory store."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from agent.manager.control.inspect import InspectAPI
from agent.manager.control.services import ControlAPI
from agent.manager.control.system import RaftSettings, disk_usage, swarm_info
from agent.manager.store import (
    Cluster,
    Config,
    Network,
    Node,
    NodeAvailability,
    NodeRole,
    NodeStatus,
    Secret,
    Service,
    Store,
    Task,
    Tx,
)
from agent.model import DesiredState, TaskState, TaskStatus
from agent.model.spec import (
    ContainerSpec,
    NetworkAttachment,
    Placement,
    SecretRef,
    ServiceMode,
    ServiceSpec,
    TaskSpec,
)

RAFT = RaftSettings(snapshot_interval=2000, heartbeat_tick=1, election_tick=10, tick_s=0.1)


class Log:
    """An in-memory Raft log: every proposal is committed at once."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.index = 1

    async def __call__(self, data: bytes) -> int:
        self.index += 1
        self.store.apply(self.index, data)
        return self.index


def _store() -> Store:
    s = Store()
    s.proposer = Log(s)
    return s


def _spec(name: str, *, mode: str = "replicated", **task: Any) -> ServiceSpec:
    container = ContainerSpec(image="/bin/sleep", secrets=task.pop("secrets", ()))
    return ServiceSpec(
        name=name,
        task_template=TaskSpec(container=container, **task),
        mode=ServiceMode(kind=mode, replicas=0 if mode == "global" else 1),
    )


def _task(ident: str, service: Service, state: TaskState, desired: DesiredState) -> Task:
    return Task(
        id=ident,
        service_id=service.id,
        slot=1,
        node_id="n1",
        desired_state=desired,
        spec=service.spec.task_template,
        status=TaskStatus(task_id=ident, state=state),
    )


def _node(ident: str, role: NodeRole = NodeRole.WORKER, **kw: Any) -> Node:
    return Node(id=ident, hostname=ident, role=role, status=NodeStatus.READY, **kw)


async def _fill(s: Store, *objs: Any) -> None:
    def put(tx: Tx) -> None:
        for o in objs:
            tx.put(o)

    await s.update(put)


async def test_swarm_info_counts_nodes_and_managers_and_shows_the_clusters_settings() -> None:
    s = _store()
    cluster = Cluster(
        id="cluster",
        cluster_id="c1",
        task_history_limit=7,
        cert_lifetime_s=86400,
        unlock_key="k",
        home_assistant=True,
        home_assistant_prefix="ha",
    )
    await _fill(s, cluster, _node("m1", NodeRole.MANAGER), _node("w1"), _node("w2"))
    info = swarm_info(s.view(), RAFT, heartbeat_s=5)
    assert (info["Managers"], info["Nodes"]) == (1, 3)
    spec = info["Cluster"]["Spec"]
    assert info["Cluster"]["ID"] == "c1"
    assert spec["Orchestration"] == {"TaskHistoryRetentionLimit": 7}
    assert spec["Raft"]["SnapshotInterval"] == 2000 and spec["Raft"]["ElectionTick"] == 10
    assert spec["Dispatcher"] == {"HeartbeatPeriod": 5 * 10**9}
    assert spec["CAConfig"] == {"NodeCertExpiry": 86400 * 10**9}
    assert spec["EncryptionConfig"] == {"AutoLockManagers": True}
    assert spec["HomeAssistant"] == {"Discovery": True, "Prefix": "ha"}
    assert info["Cluster"]["DefaultAddrPool"] == ["10.0.0.0/8"]


async def test_disk_usage_counts_what_is_used_and_what_removing_the_rest_would_free(
    tmp_path: Path,
) -> None:
    s = _store()
    ref = SecretRef(source="used", target="used")
    web = Service(
        id="web",
        name="web",
        spec=_spec("web", secrets=(ref,), networks=(NetworkAttachment(target="front"),)),
    )
    idle = Service(id="idle", name="idle", spec=_spec("idle"))
    running = _task("t1", web, TaskState.RUNNING, DesiredState.RUNNING)
    history = _task("t0", web, TaskState.FAILED, DesiredState.SHUTDOWN)
    await _fill(
        s,
        web,
        idle,
        running,
        history,
        Secret(id="s1", name="used", data=b"x"),
        Secret(id="s2", name="spare", data=b"y" * 100),
        Config(id="c1", name="conf", data=b"z"),
        Network(id="front", name="front"),
        Network(id="back", name="back"),
    )
    (tmp_path / "wal").mkdir()
    (tmp_path / "wal" / "0000000000000001-0000000000000001.seg").write_bytes(b"w" * 300)
    (tmp_path / "snap").mkdir()
    (tmp_path / "snap" / "0000000000000001-0000000000000001.snap").write_bytes(b"o" * 50)
    (tmp_path / "snap" / "0000000000000002-0000000000000009.snap").write_bytes(b"n" * 70)

    usage = disk_usage(s.view(), tmp_path)
    rows = {r["type"]: r for r in usage["types"]}
    assert (rows["Services"]["total"], rows["Services"]["active"]) == (2, 1)
    assert 0 < rows["Services"]["reclaimable"] < rows["Services"]["size"]  # the idle one
    assert (rows["Tasks"]["total"], rows["Tasks"]["active"]) == (2, 1)
    assert 0 < rows["Tasks"]["reclaimable"] < rows["Tasks"]["size"]
    assert (rows["Secrets"]["total"], rows["Secrets"]["active"]) == (2, 1)
    assert rows["Secrets"]["reclaimable"] > 100  # the spare secret and its 100 bytes
    assert (rows["Configs"]["active"], rows["Networks"]["active"]) == (0, 1)
    assert rows["Configs"]["reclaimable"] == rows["Configs"]["size"] > 0
    assert rows["Raft log"] == {
        "type": "Raft log",
        "total": 1,
        "active": 1,
        "size": 300,
        "reclaimable": 0,
    }
    assert rows["Raft snapshots"]["size"] == 120 and rows["Raft snapshots"]["reclaimable"] == 50
    assert usage["tasks_by_state"] == {"failed": 1, "running": 1}
    by_name = {row["name"]: row for row in usage["services"]}
    assert by_name["web"]["tasks"] == 2 and by_name["web"]["running"] == 1
    assert by_name["idle"]["tasks"] == 0


async def test_disk_usage_of_a_manager_without_raft_files_yet_counts_none(tmp_path: Path) -> None:
    usage = disk_usage(_store().view(), tmp_path / "absent")
    rows = {r["type"]: r for r in usage["types"]}
    assert rows["Raft log"]["total"] == 0 and rows["Raft snapshots"]["size"] == 0


async def test_inspect_of_a_global_service_lists_the_nodes_that_get_its_task() -> None:
    s = _store()
    placement = Placement(constraints=("node.labels.zone==east",))
    await _fill(
        s,
        _node("a", labels={"zone": "east"}),
        _node("b", labels={"zone": "east"}, availability=NodeAvailability.DRAIN),
        _node("c", labels={"zone": "west"}),
        Node(id="d", hostname="d", labels={"zone": "east"}, status=NodeStatus.DOWN),
        _node("e", labels={"zone": "east"}),
    )
    api = ControlAPI(s)
    spec = _spec("agent", mode="global", placement=placement)
    await api.service_create({"spec": spec.to_dict()})
    inspect = InspectAPI(s)
    out = await inspect.service({"service": "agent"})
    assert out["Shoal"]["EligibleNodes"] == ["a", "e"]
    await api.service_create({"spec": _spec("web").to_dict()})
    assert "EligibleNodes" not in (await inspect.service({"service": "web"}))["Shoal"]
