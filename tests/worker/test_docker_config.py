"""How an assignment becomes Docker Engine's container create body (no engine needed)."""

from __future__ import annotations

from pathlib import Path

from agent.model.spec import Healthcheck, Mount, PortConfig, VolumeOptions
from agent.worker import Driver, HollowDriver, ProcessDriver
from agent.worker.docker import DockerDriver
from agent.worker.docker_config import container_config
from tests.worker.fakes import FakeDriver
from tests.worker.helpers import sh


def test_every_driver_keeps_the_protocol(tmp_path: Path) -> None:
    drivers: list[Driver] = [DockerDriver(), ProcessDriver(tmp_path), HollowDriver(), FakeDriver()]
    assert all(isinstance(driver, Driver) for driver in drivers)


def test_only_host_mode_ports_are_published_on_the_node() -> None:
    a = sh(
        "true",
        ports=(
            PortConfig(target=80, published=8080, publish_mode="host"),
            PortConfig(target=53, published=0, protocol="udp", publish_mode="host"),
            PortConfig(target=443, published=443),  # ingress: the routing mesh's business
        ),
    )
    config = container_config(a)
    assert config["ExposedPorts"] == {"80/tcp": {}, "53/udp": {}}
    assert config["HostConfig"]["PortBindings"] == {
        "80/tcp": [{"HostIp": "", "HostPort": "8080"}],
        "53/udp": [{"HostIp": "", "HostPort": ""}],
    }


def test_a_task_on_shoal_networks_gets_no_engine_network_and_the_nodes_resolver() -> None:
    a = sh("true", ports=(PortConfig(target=80, published=8080, publish_mode="host"),))
    config = container_config(a, resolv_conf="/var/lib/shoal/net/t1/resolv.conf")
    host = config["HostConfig"]
    assert host["NetworkMode"] == "none"
    assert "PortBindings" not in host and "ExposedPorts" not in config  # the node publishes it
    assert {
        "Type": "bind",
        "Source": "/var/lib/shoal/net/t1/resolv.conf",
        "Target": "/etc/resolv.conf",
        "ReadOnly": True,
    } in host["Mounts"]


def test_swarm_host_lines_become_docker_extra_hosts() -> None:
    config = container_config(sh("true", hosts=("10.0.0.2 db db.local",)))
    assert config["HostConfig"]["ExtraHosts"] == ["db:10.0.0.2", "db.local:10.0.0.2"]


def test_healthcheck_durations_stay_nanoseconds_and_zero_inherits() -> None:
    check = Healthcheck(test=("CMD", "true"), interval_ns=2_000_000_000, retries=3)
    config = container_config(sh("true", healthcheck=check))
    assert config["Healthcheck"] == {
        "Test": ["CMD", "true"],
        "Interval": 2_000_000_000,
        "Retries": 3,
    }


def test_shoal_labels_win_over_user_labels() -> None:
    a = sh("true", labels={"com.shoal.task.id": "forged", "app": "x"})
    labels = container_config(a)["Labels"]
    assert labels["com.shoal.task.id"] == "task1" and labels["app"] == "x"


def test_containers_carry_docker_swarms_labels_and_they_win_over_user_labels() -> None:
    a = sh("true", labels={"com.docker.swarm.task.id": "forged", "app": "x"})
    labels = container_config(a)["Labels"]
    assert labels["com.docker.swarm.task.id"] == a.task_id and labels["app"] == "x"
    assert labels["com.docker.swarm.service.name"] == a.service_name
    assert labels["com.docker.swarm.service.id"] == a.service_id
    assert labels["com.docker.swarm.node.id"] == a.node_id
    assert labels["com.docker.swarm.task.name"] == a.container_name
    assert a.container_name.endswith(f".{a.task_id}")


def test_named_volume_with_options() -> None:
    mount = Mount(
        type="volume",
        source="cache",
        target="/cache",
        volume_options=VolumeOptions(nocopy=True, labels={"k": "v"}),
    )
    (out,) = container_config(sh("true", mounts=(mount,)))["HostConfig"]["Mounts"]
    assert out == {
        "Type": "volume",
        "Source": "cache",
        "Target": "/cache",
        "ReadOnly": False,
        "VolumeOptions": {"NoCopy": True, "Labels": {"k": "v"}},
    }


def test_engine_restart_policy_is_off_and_grace_rounds_up() -> None:
    config = container_config(sh("true", grace=0.5))
    assert config["HostConfig"]["RestartPolicy"] == {"Name": "no"}
    assert config["StopTimeout"] == 1
