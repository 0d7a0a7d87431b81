"""Valid stack files in the shapes real projects use convert to the expected service specs."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.model.spec import (
    SECOND,
    BindOptions,
    ConfigRef,
    DeviceMapping,
    DNSConfig,
    Driver,
    Healthcheck,
    Mount,
    NetworkAttachment,
    PortConfig,
    ResourceSpec,
    RestartPolicy,
    SecretRef,
    ServiceMode,
    TmpfsOptions,
    Ulimit,
    UpdateConfig,
    VolumeOptions,
)
from stacks import IPAMConfig, NetworkSpec, SecretSpec, StackSpec, VolumeSpec, load_stack
from tests.stacks.paths import VALID

NS = "com.docker.stack.namespace"


def load(*names: str, stack: str = "app", **environ: str) -> StackSpec:
    return load_stack([Path(n) for n in names], stack_name=stack, environ=environ)


@pytest.mark.parametrize("path", sorted(VALID.glob("*.yml")), ids=lambda p: p.name)
def test_every_valid_file_loads_alone(path: Path) -> None:
    spec = load_stack(
        [path], stack_name="corpus", environ={"EDGE_API_KEY": "k", "SHOAL_OVERRIDDEN": "x"}
    )
    assert spec.services
    assert all(s.name.startswith("corpus_") for s in spec.services)


def test_stackdemo_has_web_and_redis_on_the_default_network(in_valid: Path) -> None:
    spec = load("stackdemo.yml", stack="stackdemo")

    assert [s.name for s in spec.services] == ["stackdemo_redis", "stackdemo_web"]
    web = spec.service("web")
    assert web.task_template.container.image == "127.0.0.1:5000/stackdemo"
    assert web.labels == {NS: "stackdemo", "com.docker.stack.image": "127.0.0.1:5000/stackdemo"}
    assert web.mode == ServiceMode(kind="replicated", replicas=1)
    assert web.endpoint_spec.ports == (PortConfig(target=8000, published=8000),)
    assert web.task_template.networks == (
        NetworkAttachment(target="stackdemo_default", aliases=("web",)),
    )
    assert web.task_template.restart_policy == RestartPolicy(condition="any", delay_ns=5 * SECOND)
    assert web.update_config is None
    assert spec.networks == (NetworkSpec(name="stackdemo_default", labels={NS: "stackdemo"}),)
    assert [str(w) for w in spec.warnings] == ["Ignoring unsupported options: build"]


def test_voting_app_services_networks_secrets_and_placement(in_valid: Path) -> None:
    spec = load("voting.yml", stack="vote")

    assert [s.name for s in spec.services] == [
        "vote_db",
        "vote_redis",
        "vote_result",
        "vote_vote",
        "vote_worker",
    ]
    vote = spec.service("vote")
    assert vote.mode.replicas == 2
    assert vote.endpoint_spec.ports == (PortConfig(target=80, published=5000),)
    assert vote.task_template.placement.preferences == ("spread=node.labels.zone",)
    assert vote.update_config == UpdateConfig(parallelism=2)
    assert vote.task_template.restart_policy.condition == "on-failure"

    db = spec.service("db")
    assert db.task_template.placement.constraints == ("node.role==manager",)
    assert db.task_template.container.env == (
        "POSTGRES_PASSWORD_FILE=/run/secrets/db_password",
        "POSTGRES_USER=postgres",
    )
    assert db.task_template.container.mounts == (
        Mount(
            type="volume",
            source="vote_db-data",
            target="/var/lib/postgresql/data",
            volume_options=VolumeOptions(labels={NS: "vote"}),
        ),
    )
    assert db.task_template.container.secrets == (
        SecretRef(source="vote_db_password", target="db_password"),
    )

    worker = spec.service("worker")
    assert worker.labels["APP"] == "VOTING"
    assert worker.task_template.container.secrets == (
        SecretRef(
            source="vote_db_password", target="postgres_password", uid="103", gid="103", mode=0o440
        ),
    )
    assert worker.task_template.restart_policy == RestartPolicy(
        condition="on-failure", delay_ns=10 * SECOND, max_attempts=3, window_ns=120 * SECOND
    )
    assert worker.task_template.placement.constraints == (
        "node.role==manager",
        "node.labels.disk!=hdd",
    )
    assert worker.task_template.placement.max_replicas_per_node == 1
    assert [n.target for n in worker.task_template.networks] == ["vote_backend", "vote_frontend"]

    assert [n.name for n in spec.networks] == ["vote_backend", "vote_frontend"]
    backend = spec.networks[0]
    assert backend.attachable and backend.driver == "overlay"
    assert backend.ipam is not None
    assert backend.ipam.config == (IPAMConfig(subnet="10.0.9.0/24"),)
    assert spec.volumes == (VolumeSpec(name="vote_db-data", labels={NS: "vote"}),)
    assert spec.secrets == (
        SecretSpec(name="vote_db_password", data=b"s3cr3t\n", labels={NS: "vote"}),
    )
    assert [str(w) for w in spec.warnings] == ["Ignoring unsupported options: depends_on"]


def test_interpolation_uses_every_form_with_dotenv_and_caller(in_valid: Path) -> None:
    spec = load("interpolation.yml", SHOAL_OVERRIDDEN="from-caller", PASSED_THROUGH="pt")
    web = spec.service("web")
    container = web.task_template.container

    assert container.image == "nginx:1.25-alpine"
    assert container.args == ("echo", "hello 1.25-alpine world", "$NOT_A_VARIABLE", "kept $AS_IS")
    assert dict(e.split("=", 1) for e in container.env) == {
        "DEFAULT_IF_UNSET": "fallback",
        "DEFAULT_IF_EMPTY": "fallback",
        "EMPTY_KEPT": "",
        "REPLACED_IF_SET": "tag-is-set",
        "REPLACED_IF_DEFINED": "defined",
        "NOT_REPLACED": "",
        "NESTED": "1.25-alpine-nested",
        "REQUIRED": "1.25-alpine",
        "FROM_CALLER": "from-caller",
        "UNSET_PLAIN": "[]",
        "PASSED_THROUGH": "pt",
    }
    assert web.mode.replicas == 3
    assert web.labels["${SHOAL_TAG}"] == "keys-are-not-substituted"
    assert [str(w) for w in spec.warnings] == [
        'interpolation.yml:16:7: services.web.environment.UNSET_PLAIN: The "SHOAL_NOWHERE" '
        "variable is not set. Defaulting to a blank string."
    ]


def test_anchors_merge_keys_and_extension_fields(in_valid: Path) -> None:
    spec = load("anchors.yml")
    api, worker = spec.service("api"), spec.service("worker")

    assert api.mode.replicas == 3
    assert worker.mode.replicas == 2
    for service in (api, worker):
        assert service.task_template.log_driver == Driver(
            name="json-file", options={"max-size": "10m", "max-file": "3"}
        )
        assert service.task_template.restart_policy == RestartPolicy(
            condition="on-failure", delay_ns=3 * SECOND
        )
        assert service.task_template.resources.limits == ResourceSpec(
            nano_cpus=500_000_000, memory_bytes=128 * 1024**2
        )
    assert api.task_template.container.env == ("LOG_LEVEL=info", "TZ=UTC")
    assert worker.task_template.container.env == ("LOG_LEVEL=debug", "TZ=UTC")
    assert spec.networks == (NetworkSpec(name="app_default", attachable=True, labels={NS: "app"}),)


def test_long_and_short_syntaxes(in_valid: Path) -> None:
    spec = load("long-syntax.yml", stack="plant", EDGE_API_KEY="k3y", DEBUG="1")
    edge = spec.service("edge")
    task = edge.task_template
    c = task.container

    assert (c.command, c.args) == (("/bin/sh", "-c"), ("exec httpd -f -p 80",))
    assert (c.dir, c.user, c.hostname, c.stop_signal) == ("/srv", "1000:1000", "edge-gw", "SIGTERM")
    assert c.stop_grace_period_ns == 90 * SECOND
    assert (c.privileged, c.init, c.tty, c.read_only) == (True, True, True, True)
    assert (c.cap_add, c.cap_drop) == (("NET_ADMIN",), ("ALL",))
    assert c.sysctls == {"net.core.somaxconn": "1024"}
    assert c.ulimits == (
        Ulimit(name="nofile", soft=1024, hard=2048),
        Ulimit(name="nproc", soft=512, hard=512),
    )
    assert c.hosts == ("10.0.0.5 broker.local",)
    assert c.dns_config == DNSConfig(nameservers=("1.1.1.1",), search=("fleet.local",))
    assert c.labels == {"com.example.role": "gateway", NS: "plant"}
    assert c.env == ("DEBUG=1", "FROM_ENV_FILE=yes", "MODE=edge")
    assert c.devices == (
        DeviceMapping(path_on_host="/dev/ttyUSB0", path_in_container="/dev/ttyUSB0"),
        DeviceMapping(path_on_host="/dev/gpiomem", path_in_container="/dev/gpiomem"),
    )
    assert edge.endpoint_spec.mode == "dnsrr"
    assert edge.endpoint_spec.ports == (
        PortConfig(target=80, published=0),
        PortConfig(target=80, published=8080),
        PortConfig(target=443, published=8443, publish_mode="host"),
        PortConfig(target=9000, published=9000, protocol="udp"),
        PortConfig(target=9001, published=9001, protocol="udp"),
    )
    assert c.mounts == (
        Mount(type="bind", source="/var/run/shoal", target="/var/run/shoal", read_only=True),
        Mount(type="bind", source=str(VALID / "config"), target="/etc/edge"),
        Mount(
            type="volume",
            source="plant_data",
            target="/data",
            volume_options=VolumeOptions(
                labels={"backup": "nightly", NS: "plant"},
                driver_config=Driver(name="local", options={"type": "tmpfs", "device": "tmpfs"}),
            ),
        ),
        Mount(type="volume", target="/scratch"),
        Mount(
            type="volume",
            source="cache",
            target="/cache",
            volume_options=VolumeOptions(nocopy=True),
        ),
        Mount(
            type="bind",
            source="/sys/class/gpio",
            target="/gpio",
            read_only=True,
            bind_options=BindOptions(propagation="rslave"),
        ),
        Mount(type="tmpfs", target="/tmp", tmpfs_options=TmpfsOptions(size_bytes=64 * 1024**2)),
        Mount(type="tmpfs", target="/run"),
    )
    assert c.secrets == (
        SecretRef(
            source="edge-tls-2024", target="/etc/edge/tls.crt", uid="1000", gid="1000", mode=0o400
        ),
        SecretRef(source="plant_api_key", target="api_key"),
    )
    assert c.configs == (
        ConfigRef(source="plant_edge_conf", target="/edge_conf"),
        ConfigRef(source="plant_edge_conf", target="/etc/edge/edge.conf"),
    )
    assert c.healthcheck == Healthcheck(
        test=("CMD-SHELL", "wget -q -O - http://localhost/ || exit 1"),
        interval_ns=30 * SECOND,
        timeout_ns=5 * SECOND,
        retries=3,
        start_period_ns=500_000_000,
    )
    assert task.log_driver == Driver(name="local", options={"max-size": "1m"})
    assert task.networks == (
        NetworkAttachment(target="plant-fieldbus", aliases=("gateway", "edge")),
    )
    assert task.resources.limits == ResourceSpec(
        nano_cpus=250_000_000, memory_bytes=64 * 1024**2, pids=100
    )
    assert task.resources.reservations == ResourceSpec(
        nano_cpus=100_000_000, memory_bytes=32 * 1024**2
    )
    assert task.restart_policy == RestartPolicy(
        condition="any", delay_ns=SECOND, max_attempts=10, window_ns=3600 * SECOND
    )
    assert task.placement.constraints == ("node.labels.site==plant-7",)
    assert edge.mode == ServiceMode(kind="global", replicas=0)
    assert edge.labels == {
        "com.example.tier": "edge",
        NS: "plant",
        "com.docker.stack.image": "shoal/busybox:latest",
    }
    assert edge.update_config == UpdateConfig(
        parallelism=0,
        delay_ns=2 * SECOND,
        failure_action="rollback",
        monitor_ns=30 * SECOND,
        max_failure_ratio=0.25,
        order="start-first",
    )
    assert edge.rollback_config == UpdateConfig(parallelism=1, failure_action="continue")

    migrate = spec.service("migrate")
    assert migrate.task_template.container.args == ("echo", "migrating", "the database")
    assert migrate.task_template.container.healthcheck == Healthcheck(test=("NONE",))
    assert migrate.task_template.restart_policy == RestartPolicy(
        condition="on-failure", max_attempts=2
    )
    assert migrate.mode == ServiceMode(kind="replicated-job", replicas=4, max_concurrent=4)

    assert spec.networks == (
        NetworkSpec(name="plant_default", labels={NS: "plant"}),  # migrate names no network
        NetworkSpec(name="plant-fieldbus", external=True),
    )
    assert spec.volumes == (
        VolumeSpec(name="cache", external=True),
        VolumeSpec(
            name="plant_data",
            driver_opts={"type": "tmpfs", "device": "tmpfs"},
            labels={"backup": "nightly", NS: "plant"},
        ),
    )
    assert spec.secrets == (
        SecretSpec(name="plant_api_key", data=b"k3y", labels={NS: "plant"}),
        SecretSpec(name="edge-tls-2024", external=True),
    )
    assert [(c.name, c.data) for c in spec.configs] == [("plant_edge_conf", b"listen 80\n")]
    assert [str(w) for w in spec.warnings] == ["Ignoring unsupported options: restart"]


def test_specs_survive_a_round_trip_through_dicts(in_valid: Path) -> None:
    spec = load("long-syntax.yml", EDGE_API_KEY="k")
    assert StackSpec.from_dict(spec.to_dict()) == spec
