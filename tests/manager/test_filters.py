"""`--filter` on listings: Docker's keys and meaning (a key given again is OR, different keys
AND), checked and applied by the managers, and the order each listing comes in."""

from __future__ import annotations

import base64
from typing import Any

import msgpack
import pytest

from agent.manager.control.filters import NETWORKS, NODES, OBJECTS, SERVICES, TASKS, FilterError
from agent.manager.control.networks import NetworksAPI
from agent.manager.control.secrets import SecretsAPI
from agent.manager.control.services import ControlAPI
from agent.manager.control.stacks import StackAPI
from agent.manager.reconcile.allocator import INGRESS_ID
from agent.manager.store import Network, Node, NodeRole, Secret, Service, Store
from agent.model.spec import ContainerSpec, ServiceMode, ServiceSpec, TaskSpec
from stacks.services import LABEL_NAMESPACE


def _store() -> Store:
    s = Store()
    index = 1

    async def commit(data: bytes) -> int:
        nonlocal index
        index += 1
        msgpack.unpackb(data, raw=False)
        s.apply(index, data)
        return index

    s.proposer = commit
    return s


def _spec(name: str, kind: str = "replicated", **labels: str) -> dict[str, Any]:
    replicas = 0 if kind.startswith("global") else 1
    return ServiceSpec(
        name=name,
        labels=labels,
        task_template=TaskSpec(container=ContainerSpec(image="busybox")),
        mode=ServiceMode(kind=kind, replicas=replicas),  # type: ignore[arg-type]
    ).to_dict()


NODE_LIST = [
    Node(id="abc1", hostname="web-1", role=NodeRole.MANAGER, labels={"zone": "a"}),
    Node(
        id="abd2",
        hostname="web-2",
        labels={"zone": "b"},
        description={"engine": {"version": "27.1", "labels": {"ssd": "yes"}}},
    ),
    Node(id="xyz3", hostname="db-1", labels={"zone": "a", "disk": "ssd"}),
]


def _hosts(nodes: list[Node]) -> list[str]:
    return [n.hostname for n in nodes]


# the filter module ----------------------------------------------------------------------------
def test_no_filters_keep_everything_in_order() -> None:
    assert NODES.select(NODE_LIST, None) == NODE_LIST
    assert NODES.select(NODE_LIST, []) == NODE_LIST


def test_a_key_given_twice_matches_either_value() -> None:
    assert _hosts(NODES.select(NODE_LIST, ["name=web-2", "name=db"])) == ["web-2", "db-1"]


def test_different_keys_must_all_match() -> None:
    chosen = NODES.select(NODE_LIST, ["node.label=zone=a", "role=worker"])
    assert _hosts(chosen) == ["db-1"]


def test_id_and_name_match_a_prefix_not_a_part() -> None:
    assert _hosts(NODES.select(NODE_LIST, ["id=ab"])) == ["web-1", "web-2"]
    assert _hosts(NODES.select(NODE_LIST, ["name=eb"])) == []


def test_node_label_filters_node_labels_and_label_the_engine_labels_as_in_docker() -> None:
    assert _hosts(NODES.select(NODE_LIST, ["node.label=disk"])) == ["db-1"]
    assert _hosts(NODES.select(NODE_LIST, ["node.label=zone=b"])) == ["web-2"]
    assert _hosts(NODES.select(NODE_LIST, ["label=ssd=yes"])) == ["web-2"]
    assert _hosts(NODES.select(NODE_LIST, ["label=zone"])) == []


def test_every_node_in_the_store_is_an_accepted_member() -> None:
    assert NODES.select(NODE_LIST, ["membership=accepted"]) == NODE_LIST
    assert NODES.select(NODE_LIST, ["membership=pending"]) == []


def test_an_unknown_key_is_refused_by_name_with_the_keys_there_are() -> None:
    with pytest.raises(FilterError) as info:
        NODES.select(NODE_LIST, ["foo=bar"])
    assert str(info.value).startswith("Invalid filter 'foo'")
    assert "id, label, membership, name, node.label, role" in str(info.value)


def test_a_filter_without_an_equals_sign_is_refused() -> None:
    with pytest.raises(FilterError, match=r"expected name=value.*'role'"):
        NODES.select(NODE_LIST, ["role"])


@pytest.mark.parametrize(
    ("listing", "text", "said"),
    [
        (NODES, "role=boss", "Invalid filter 'role=boss': role is one of manager, worker"),
        (NODES, "membership=maybe", "membership is one of accepted, pending"),
        (SERVICES, "mode=cron", "mode is one of replicated, global, replicated-job, global-job"),
        (TASKS, "desired-state=dancing", "Invalid filter 'desired-state=dancing'"),
        (NETWORKS, "scope=galaxy", "scope is one of swarm, global, local"),
        (NETWORKS, "type=odd", "type is one of custom, builtin"),
    ],
)
def test_a_value_a_key_does_not_take_is_refused_naming_the_key(
    listing: Any, text: str, said: str
) -> None:
    with pytest.raises(FilterError, match=said.replace("(", r"\(")):
        listing.select([], [text])


def test_filters_that_are_not_a_list_of_texts_are_refused() -> None:
    with pytest.raises(FilterError, match="list of key=value"):
        NODES.select(NODE_LIST, {"name": "web"})


def test_task_rows_filter_by_node_name_or_id_and_desired_state() -> None:
    rows = [
        {"id": "t1", "name": "web.1", "node": "one", "node_id": "n1", "desired": "running"},
        {"id": "t2", "name": "web.1", "node": "two", "node_id": "n2", "desired": "shutdown"},
        {"id": "u3", "name": "web.10", "node": "one", "node_id": "n1", "desired": "complete"},
    ]
    ids = lambda fs: [r["id"] for r in TASKS.select(rows, fs)]  # noqa: E731
    assert ids(["node=one"]) == ["t1", "u3"]
    assert ids(["node=n2"]) == ["t2"]
    assert ids(["desired-state=running", "desired-state=complete"]) == ["t1", "u3"]
    assert ids(["name=web.1", "id=t"]) == ["t1", "t2"]
    assert ids(["desired-state=accepted"]) == []


def test_network_names_and_ids_match_any_part_as_in_docker() -> None:
    nets = [Network(id="aa11", name="backend"), Network(id="bb22", name="front", driver="x")]
    assert [n.name for n in NETWORKS.select(nets, ["name=end"])] == ["backend"]
    assert [n.name for n in NETWORKS.select(nets, ["id=22"])] == ["front"]
    assert [n.name for n in NETWORKS.select(nets, ["driver=overlay"])] == ["backend"]
    assert NETWORKS.select(nets, ["type=builtin"]) == []
    assert NETWORKS.select(nets, ["scope=swarm", "type=custom"]) == nets


def test_secrets_filter_by_label_presence_or_value() -> None:
    items = [
        Secret(id="s1", name="db-pass", labels={"env": "prod"}),
        Secret(id="s2", name="db-user", labels={"env": "dev"}),
        Secret(id="s3", name="tls", labels={}),
    ]
    names = lambda fs: [o.name for o in OBJECTS.select(items, fs)]  # noqa: E731
    assert names(["label=env"]) == ["db-pass", "db-user"]
    assert names(["label=env=dev"]) == ["db-user"]
    assert names(["name=db", "label=env=prod"]) == ["db-pass"]


# the control API --------------------------------------------------------------------------------
async def test_service_ls_filters_by_mode_label_and_name_and_sorts_by_name() -> None:
    s = _store()
    api = ControlAPI(s)
    await api.service_create({"spec": _spec("zeta", tier="web")})
    await api.service_create({"spec": _spec("alpha", "global", tier="db")})
    await api.service_create({"spec": _spec("beta", "replicated-job")})

    async def names(*filters: str) -> list[str]:
        return [r["name"] for r in await api.service_ls({"filters": list(filters)})]

    assert await names() == ["alpha", "beta", "zeta"]
    assert await names("mode=global", "mode=replicated") == ["alpha", "zeta"]
    assert await names("label=tier") == ["alpha", "zeta"]
    assert await names("label=tier=web") == ["zeta"]
    assert await names("name=be") == ["beta"]
    zeta = next(x for x in s.view().list(Service) if x.name == "zeta")
    assert await names(f"id={zeta.id[:6]}") == ["zeta"]


async def test_a_bad_filter_is_refused_before_anything_is_listed() -> None:
    api = ControlAPI(_store())
    await api.service_create({"spec": _spec("web")})
    with pytest.raises(FilterError, match="Invalid filter 'foo'"):
        await api.service_ls({"filters": ["foo=1"]})
    with pytest.raises(FilterError, match="Invalid filter 'mode'"):
        await api.service_ps({"service": "web", "filters": ["mode=global"]})
    with pytest.raises(FilterError, match="desired-state=up"):
        await api.node_ps({"node": "nowhere", "filters": ["desired-state=up"]})


async def test_stack_services_take_the_service_filters() -> None:
    s = _store()
    api = ControlAPI(s)
    for name in ("app_web", "app_db"):
        await api.service_create({"spec": _spec(name, **{LABEL_NAMESPACE: "app"})})
    stacks = StackAPI(s)
    rows = await stacks.services({"stack": "app", "filters": []})
    assert [r["name"] for r in rows] == ["app_db", "app_web"]
    rows = await stacks.services({"stack": "app", "filters": ["name=app_w"]})
    assert [r["name"] for r in rows] == ["app_web"]
    with pytest.raises(FilterError, match="Invalid filter 'node'"):
        await stacks.services({"stack": "app", "filters": ["node=x"]})


async def test_secret_and_config_ls_filter_and_sort_by_name() -> None:
    api = SecretsAPI(_store())
    data = base64.b64encode(b"x").decode()
    for name, labels in (("zz", {"env": "prod"}), ("aa", {}), ("mm", {"env": "dev"})):
        await api.secret_create({"name": name, "data": data, "labels": labels})
        await api.config_create({"name": name, "data": data, "labels": labels})
    for ls in (api.secret_ls, api.config_ls):
        assert [r["name"] for r in await ls({})] == ["aa", "mm", "zz"]
        assert [r["name"] for r in await ls({"filters": ["label=env"]})] == ["mm", "zz"]
        assert [r["name"] for r in await ls({"filters": ["name=z", "name=a"]})] == ["aa", "zz"]


async def test_network_ls_lists_the_default_ingress_by_name_order_and_filters_it_too() -> None:
    api = NetworksAPI(_store())
    await api.create({"name": "zebra", "labels": {"team": "x"}})
    await api.create({"name": "apple"})
    assert [r["name"] for r in await api.ls({})] == ["apple", INGRESS_ID, "zebra"]
    assert [r["name"] for r in await api.ls({"filters": ["label=team"]})] == ["zebra"]
    assert [r["name"] for r in await api.ls({"filters": ["name=ingr"]})] == [INGRESS_ID]
    with pytest.raises(FilterError, match="Invalid filter 'mode'"):
        await api.ls({"filters": ["mode=x"]})
