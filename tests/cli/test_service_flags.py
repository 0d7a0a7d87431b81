"""`shoal service create` and `shoal service update` flags, parsed as a user types them."""

from __future__ import annotations

import argparse
import random
import re
import shlex
from dataclasses import replace
from pathlib import Path

import pytest

from agent.cli.createflags import add_create_flags, spec_from_create
from agent.cli.updateflags import add_update_flags, apply_update
from agent.model.errors import ShoalError
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
    RestartPolicy,
    SecretRef,
    ServiceMode,
    ServiceSpec,
    TmpfsOptions,
    Ulimit,
    UpdateConfig,
    VolumeOptions,
)

MB = 1024 * 1024


def parse_create(command: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_create_flags(parser)
    return parser.parse_args(shlex.split(command))


def create(command: str, environ: dict[str, str] | None = None) -> ServiceSpec:
    return spec_from_create(parse_create(command), environ=environ or {}, rng=random.Random(7))


def update(spec: ServiceSpec, command: str, environ: dict[str, str] | None = None) -> ServiceSpec:
    parser = argparse.ArgumentParser()
    add_update_flags(parser)
    return apply_update(
        spec, parser.parse_args([*shlex.split(command), "web"]), environ=environ or {}
    )


def create_error(command: str) -> str:
    with pytest.raises(ShoalError) as err:
        create(command)
    return str(err.value)


def update_error(spec: ServiceSpec, command: str) -> str:
    with pytest.raises(ShoalError) as err:
        update(spec, command)
    return str(err.value)


@pytest.fixture
def web() -> ServiceSpec:
    return create(
        "--name web -e A=1 -e B=2 --label tier=front --container-label c=1 "
        "--mount type=volume,source=data,target=/data --mount type=tmpfs,target=/tmp "
        "-p 8080:80 -p 9090:90/udp --constraint node.role==worker "
        "--placement-pref spread=node.labels.zone --secret db-password --config app.conf "
        "--network backend --restart-condition on-failure --update-parallelism 2 "
        "nginx:1.27"
    )


# create ------------------------------------------------------------------------------------
def test_create_turns_a_typical_command_into_a_spec() -> None:
    spec = create(
        "--replicas 3 --restart-delay 0s --stop-grace-period 1s "
        "--mount type=tmpfs,target=/tmp,tmpfs-size=1M -p 8080:80 --constraint node.role==worker "
        "shoal/busybox:latest sleep 100"
    )
    container = spec.task_template.container
    assert container.image == "shoal/busybox:latest"
    assert container.command is None
    assert container.args == ("sleep", "100")
    assert container.stop_grace_period_ns == SECOND
    assert container.mounts == (
        Mount(type="tmpfs", target="/tmp", tmpfs_options=TmpfsOptions(size_bytes=MB)),
    )
    assert spec.mode == ServiceMode(kind="replicated", replicas=3)
    assert spec.task_template.restart_policy == RestartPolicy(delay_ns=0)
    assert spec.task_template.placement.constraints == ("node.role==worker",)
    assert spec.endpoint_spec.ports == (PortConfig(target=80, published=8080),)


def test_create_keeps_docker_defaults_when_flags_are_absent() -> None:
    spec = create("nginx")
    assert spec.mode == ServiceMode(kind="replicated", replicas=1)
    assert spec.task_template.restart_policy == RestartPolicy()
    assert spec.task_template.restart_policy.delay_ns == 5 * SECOND
    assert spec.update_config is None and spec.rollback_config is None
    assert spec.task_template.container.args is None
    assert spec.task_template.container.init is None
    assert spec.task_template.container.healthcheck is None
    assert spec.endpoint_spec.mode == "vip"


def test_create_accepts_detach_and_quiet_for_the_caller() -> None:
    assert parse_create("nginx").detach is False
    ns = parse_create("-d -q nginx")
    assert (ns.detach, ns.quiet) == (True, True)


def test_flags_after_the_image_belong_to_the_command() -> None:
    spec = create("busybox sh -c 'echo hi' --name not-a-flag")
    assert spec.task_template.container.args == ("sh", "-c", "echo hi", "--name", "not-a-flag")


def test_create_without_name_picks_a_valid_random_one_from_the_rng() -> None:
    ns = parse_create("nginx")
    first = spec_from_create(ns, environ={}, rng=random.Random(1)).name
    again = spec_from_create(ns, environ={}, rng=random.Random(1)).name
    assert first == again
    assert re.fullmatch(r"[0-9A-Za-z][0-9A-Za-z_-]{0,62}", first)


def test_create_uses_a_valid_name() -> None:
    assert create("--name my_web-1 nginx").name == "my_web-1"


def test_global_modes_carry_zero_replicas() -> None:
    assert create("--mode global nginx").mode == ServiceMode(kind="global", replicas=0)
    assert create("--mode global-job nginx").mode == ServiceMode(kind="global-job", replicas=0)


def test_replicated_job_runs_all_completions_at_once_unless_told() -> None:
    assert create("--mode replicated-job --replicas 4 job").mode == ServiceMode(
        kind="replicated-job", replicas=4, max_concurrent=4
    )
    assert create("--mode replicated-job --replicas 4 --max-concurrent 2 job").mode == (
        ServiceMode(kind="replicated-job", replicas=4, max_concurrent=2)
    )


def test_env_from_flags_env_files_and_this_shell(tmp_path: Path) -> None:
    env_file = tmp_path / "app.env"
    env_file.write_text("# settings\n\nA=from-file\n  B=spaced value \nSHELL_ONLY\nUNSET\n")
    spec = create(
        f"--env-file {env_file} -e A=flag -e C=3 -e HOME -e MISSING -e D= nginx",
        environ={"HOME": "/root", "SHELL_ONLY": "yes"},
    )
    assert spec.task_template.container.env == (
        "B=spaced value ",
        "SHELL_ONLY=yes",
        "A=flag",
        "C=3",
        "HOME=/root",
        "D=",
    )


def test_env_file_that_cannot_be_read_names_the_flag_and_path(tmp_path: Path) -> None:
    missing = tmp_path / "nope.env"
    message = create_error(f"--env-file {missing} nginx")
    assert message.startswith(f'invalid argument "{missing}" for "--env-file" flag: cannot read')


def test_env_file_with_a_bad_variable_name_names_the_line(tmp_path: Path) -> None:
    env_file = tmp_path / "bad.env"
    env_file.write_text("OK=1\nBAD NAME=2\n")
    assert "line 2: invalid variable name 'BAD NAME'" in create_error(f"--env-file {env_file} x")


def test_service_and_container_labels() -> None:
    spec = create("--label a=1 --label flag --container-label b=2=3 nginx")
    assert spec.labels == {"a": "1", "flag": ""}
    assert spec.task_template.container.labels == {"b": "2=3"}


def test_entrypoint_is_shell_split_into_the_command() -> None:
    spec = create("--entrypoint '/bin/sh -c' busybox 'echo hi'")
    assert spec.task_template.container.command == ("/bin/sh", "-c")
    assert spec.task_template.container.args == ("echo hi",)
    assert create("--entrypoint '' busybox").task_template.container.command is None


def test_mounts_in_docker_csv_syntax() -> None:
    spec = create(
        "--mount type=bind,src=/srv/www,dst=/usr/share/nginx,ro,bind-propagation=rslave "
        "--mount source=cache,destination=/cache,volume-nocopy,volume-label=k=v,"
        "volume-driver=local,volume-opt=type=nfs "
        "--mount type=tmpfs,target=/run,tmpfs-size=64m,tmpfs-mode=1777,readonly=false "
        "--mount target=/anon nginx"
    )
    assert spec.task_template.container.mounts == (
        Mount(
            type="bind",
            source="/srv/www",
            target="/usr/share/nginx",
            read_only=True,
            bind_options=BindOptions(propagation="rslave"),
        ),
        Mount(
            type="volume",
            source="cache",
            target="/cache",
            volume_options=VolumeOptions(
                nocopy=True,
                labels={"k": "v"},
                driver_config=Driver(name="local", options={"type": "nfs"}),
            ),
        ),
        Mount(
            type="tmpfs", target="/run", tmpfs_options=TmpfsOptions(size_bytes=64 * MB, mode=0o1777)
        ),
        Mount(type="volume", target="/anon"),
    )


def test_ports_in_short_and_long_syntax() -> None:
    spec = create(
        "-p 8080:80 -p 5353:53/udp -p 9000-9001:9000-9001 -p 3000 "
        "--publish published=8443,target=443,protocol=tcp,mode=host nginx"
    )
    assert spec.endpoint_spec.ports == (
        PortConfig(target=80, published=8080),
        PortConfig(target=53, published=5353, protocol="udp"),
        PortConfig(target=9000, published=9000),
        PortConfig(target=9001, published=9001),
        PortConfig(target=3000),
        PortConfig(target=443, published=8443, publish_mode="host"),
    )


def test_the_same_port_given_twice_is_kept_once() -> None:
    assert create("-p 80:80 -p 80:80 nginx").endpoint_spec.ports == (
        PortConfig(target=80, published=80),
    )


def test_placement_constraints_are_normalised_and_preferences_kept() -> None:
    spec = create(
        "--constraint 'node.labels.zone != east' --constraint node.role==worker "
        "--placement-pref spread=node.labels.rack --replicas-max-per-node 2 nginx"
    )
    placement = spec.task_template.placement
    assert placement.constraints == ("node.labels.zone!=east", "node.role==worker")
    assert placement.preferences == ("spread=node.labels.rack",)
    assert placement.max_replicas_per_node == 2


def test_resources_use_docker_units() -> None:
    resources = create(
        "--reserve-cpu 0.5 --reserve-memory 64M --limit-cpu 2 --limit-memory 1g --limit-pids 100 "
        "nginx"
    ).task_template.resources
    assert (resources.reservations.nano_cpus, resources.reservations.memory_bytes) == (
        500_000_000,
        64 * MB,
    )
    assert (resources.limits.nano_cpus, resources.limits.memory_bytes, resources.limits.pids) == (
        2_000_000_000,
        1024 * MB,
        100,
    )


def test_restart_policy_flags() -> None:
    policy = create(
        "--restart-condition on-failure --restart-delay 1m30s --restart-max-attempts 3 "
        "--restart-window 2m nginx"
    ).task_template.restart_policy
    assert policy == RestartPolicy(
        condition="on-failure", delay_ns=90 * SECOND, max_attempts=3, window_ns=120 * SECOND
    )


def test_update_and_rollback_flags_start_from_swarm_defaults() -> None:
    spec = create(
        "--update-parallelism 2 --update-delay 10s --update-failure-action rollback "
        "--update-order start-first --rollback-max-failure-ratio 0.25 --rollback-monitor 1s nginx"
    )
    assert spec.update_config == UpdateConfig(
        parallelism=2, delay_ns=10 * SECOND, failure_action="rollback", order="start-first"
    )
    assert spec.rollback_config == UpdateConfig(max_failure_ratio=0.25, monitor_ns=SECOND)


def test_healthcheck_flags() -> None:
    check = create(
        "--health-cmd 'curl -f localhost' --health-interval 5s --health-timeout 2s "
        "--health-retries 3 --health-start-period 30s nginx"
    ).task_template.container.healthcheck
    assert check == Healthcheck(
        test=("CMD-SHELL", "curl -f localhost"),
        interval_ns=5 * SECOND,
        timeout_ns=2 * SECOND,
        retries=3,
        start_period_ns=30 * SECOND,
    )
    disabled = create("--no-healthcheck nginx").task_template.container.healthcheck
    assert disabled == Healthcheck(test=("NONE",))


def test_container_options() -> None:
    container = create(
        "-w /app -u 1000:1000 --hostname box --stop-signal SIGINT --privileged --init "
        "--read-only -t --cap-add net_admin --cap-add CAP_SYS_TIME --cap-drop chown "
        "--dns 10.0.0.2 --dns-search lan --dns-option ndots:2 --host db:10.0.0.5 "
        "--sysctl net.core.somaxconn=1024 --ulimit nofile=1024:2048 --ulimit nproc=64 "
        "--device /dev/ttyUSB0 --device /dev/i2c-1:/dev/i2c:rw nginx"
    ).task_template.container
    assert (container.dir, container.user, container.hostname) == ("/app", "1000:1000", "box")
    assert container.stop_signal == "SIGINT"
    assert (container.privileged, container.init, container.read_only, container.tty) == (
        True,
        True,
        True,
        True,
    )
    assert container.cap_add == ("CAP_NET_ADMIN", "CAP_SYS_TIME")
    assert container.cap_drop == ("CAP_CHOWN",)
    assert container.dns_config == DNSConfig(
        nameservers=("10.0.0.2",), search=("lan",), options=("ndots:2",)
    )
    assert container.hosts == ("10.0.0.5 db",)
    assert container.sysctls == {"net.core.somaxconn": "1024"}
    assert container.ulimits == (
        Ulimit(name="nofile", soft=1024, hard=2048),
        Ulimit(name="nproc", soft=64, hard=64),
    )
    assert container.devices == (
        DeviceMapping(path_on_host="/dev/ttyUSB0", path_in_container="/dev/ttyUSB0"),
        DeviceMapping(
            path_on_host="/dev/i2c-1", path_in_container="/dev/i2c", cgroup_permissions="rw"
        ),
    )


def test_a_capability_both_added_and_dropped_cancels_out() -> None:
    container = create("--cap-add NET_ADMIN --cap-drop net_admin nginx").task_template.container
    assert (container.cap_add, container.cap_drop) == ((), ())


def test_secrets_and_configs_in_short_and_long_syntax() -> None:
    container = create(
        "--secret db-password --secret source=tls-key,target=server.key,uid=100,mode=0400 "
        "--config app.conf --config src=nginx-conf,target=/etc/nginx/nginx.conf nginx"
    ).task_template.container
    assert container.secrets == (
        SecretRef(source="db-password", target="db-password"),
        SecretRef(source="tls-key", target="server.key", uid="100", mode=0o400),
    )
    assert container.configs == (
        ConfigRef(source="app.conf", target="/app.conf"),
        ConfigRef(source="nginx-conf", target="/etc/nginx/nginx.conf"),
    )


def test_networks_in_short_and_long_syntax() -> None:
    networks = create(
        "--network front --network name=back,alias=api,alias=v1,driver-opt=mtu=1400 nginx"
    ).task_template.networks
    assert networks == (
        NetworkAttachment(target="front"),
        NetworkAttachment(target="back", aliases=("api", "v1"), driver_opts={"mtu": "1400"}),
    )


def test_log_driver_and_options() -> None:
    spec = create("--log-driver json-file --log-opt max-size=10m nginx")
    assert spec.task_template.log_driver == Driver(name="json-file", options={"max-size": "10m"})


def test_dnsrr_accepts_ports_published_on_the_host() -> None:
    spec = create("--endpoint-mode dnsrr -p published=80,target=80,mode=host nginx")
    assert spec.endpoint_spec.mode == "dnsrr"


@pytest.mark.parametrize(
    ("command", "message"),
    [
        (
            "--replicas abc x",
            'invalid argument "abc" for "--replicas" flag: expected a whole number',
        ),
        ("--replicas -1 x", 'invalid argument "-1" for "--replicas" flag: expected a whole number'),
        ("--name 'my web' x", 'invalid argument "my web" for "--name" flag: a service name is'),
        ("--name=-web x", 'invalid argument "-web" for "--name" flag'),
        ("--mode swarm x", 'invalid argument "swarm" for "--mode" flag: expected replicated,'),
        (
            "--mode global --replicas 2 x",
            'invalid argument "2" for "--replicas" flag: replicas can only be used with '
            "replicated or replicated-job mode",
        ),
        ("--max-concurrent 2 x", 'invalid argument "2" for "--max-concurrent" flag'),
        (
            "--mode global --replicas-max-per-node 1 x",
            'invalid argument "1" for "--replicas-max-per-node" flag',
        ),
        ("--mode replicated-job --update-delay 1s x", "do not apply to jobs"),
        ("--restart-delay soon x", 'invalid argument "soon" for "--restart-delay" flag: expected'),
        ("--restart-condition always x", 'invalid argument "always" for "--restart-condition"'),
        ("--reserve-cpu lots x", 'invalid argument "lots" for "--reserve-cpu" flag'),
        ("--limit-memory 1q x", 'invalid argument "1q" for "--limit-memory" flag'),
        ("--limit-pids 1.5 x", 'invalid argument "1.5" for "--limit-pids" flag'),
        ("--update-max-failure-ratio 2 x", 'invalid argument "2" for "--update-max-failure-ratio"'),
        ("--update-order random x", 'invalid argument "random" for "--update-order" flag'),
        (
            "--rollback-failure-action rollback x",
            'invalid argument "rollback" for "--rollback-failure-action" flag: expected pause or '
            "continue",
        ),
        ("--health-retries many x", 'invalid argument "many" for "--health-retries" flag'),
        ("--health-interval 5 x", 'invalid argument "5" for "--health-interval" flag'),
        ("--no-healthcheck --health-cmd true x", "--no-healthcheck conflicts with --health-*"),
        ("--stop-grace-period forever x", 'invalid argument "forever" for "--stop-grace-period"'),
        ("--endpoint-mode rr x", 'invalid argument "rr" for "--endpoint-mode" flag'),
        ("--endpoint-mode dnsrr -p 80:80 x", 'invalid argument "dnsrr" for "--endpoint-mode"'),
        ("--entrypoint 'sh -c \"oops' x", 'invalid argument "sh -c "oops" for "--entrypoint"'),
        ("-e =1 x", 'invalid argument "=1" for "--env" flag'),
        ("--label =1 x", 'invalid argument "=1" for "--label" flag'),
        ("--mount type=nfs,target=/x x", 'invalid argument "type=nfs,target=/x" for "--mount"'),
        ("--mount source=data x", "a target=/path/in/container is required"),
        ("--mount target=data x", "the target 'data' is not an absolute path"),
        ("--mount type=bind,target=/x x", "a bind mount needs a source=/absolute/host/path"),
        ("--mount type=bind,source=rel,target=/x x", "a bind mount needs a source"),
        ("--mount type=tmpfs,source=a,target=/x x", "a tmpfs mount takes no source"),
        ("--mount target=/x,color=red x", "unknown field 'color'"),
        ("--mount target=/x,ro=maybe x", "expected true or false"),
        ("--mount type=bind,src=/a,target=/x,volume-nocopy x", "cannot mix 'volume-*' options"),
        ("--mount target=/x,tmpfs-size=1M x", "cannot mix 'tmpfs-*' options with mount type"),
        ("--mount target=/x,bind-propagation=up x", 'for "--mount" flag: expected private,'),
        ("--mount target=/x --mount target=/x x", 'invalid "--mount" flags: mount target'),
        ("-p 99999:80 x", 'invalid argument "99999:80" for "--publish" flag'),
        ("-p 127.0.0.1:80:80 x", "a host IP is not supported for service ports"),
        ("-p 80/icmp x", 'invalid argument "80/icmp" for "--publish" flag'),
        ("-p published=80 x", "target=PORT is required"),
        ("-p target=80,host=1 x", "unknown field 'host'"),
        ("-p target=80,mode=bridge x", 'invalid argument "target=80,mode=bridge" for "--publish"'),
        ("-p 80:80 -p 80:81 x", "invalid \"--publish\" flags: port '80/tcp' is given twice"),
        ("--constraint node.role x", 'invalid argument "node.role" for "--constraint" flag'),
        ("--constraint node.colour==red x", "unknown attribute 'node.colour'"),
        ("--placement-pref pack=node.id x", 'invalid argument "pack=node.id" for "--placement'),
        ("--secret target=x x", 'invalid argument "target=x" for "--secret" flag'),
        ("--secret source=a,mode=999 x", 'invalid argument "source=a,mode=999" for "--secret"'),
        ("--secret a --secret source=b,target=a x", 'invalid "--secret" flags: secret target'),
        ("--config source=a,owner=me x", 'invalid argument "source=a,owner=me" for "--config"'),
        ("--network alias=x x", 'invalid argument "alias=x" for "--network" flag'),
        ("--device ttyUSB0 x", 'invalid argument "ttyUSB0" for "--device" flag'),
        ("--dns resolver x", 'invalid argument "resolver" for "--dns" flag'),
        ("--host db x", 'invalid argument "db" for "--host" flag: expected HOST:IP'),
        ("--host db:nowhere x", 'invalid argument "db:nowhere" for "--host" flag'),
        ("--sysctl net.ipv4.ip_forward x", 'invalid argument "net.ipv4.ip_forward" for "--sysctl"'),
        ("--ulimit files=10 x", 'invalid argument "files=10" for "--ulimit" flag'),
        ("--ulimit nofile=20:10 x", "the soft limit 20 is above the hard limit 10"),
        ("--cap-add 'net admin' x", 'invalid argument "net admin" for "--cap-add" flag'),
        ("--log-opt max-size=1m x", 'invalid argument "max-size=1m" for "--log-opt" flag'),
        ("--log-driver syslog --log-opt tag x", 'invalid argument "tag" for "--log-opt" flag'),
        ("''", 'invalid argument "" for IMAGE'),
    ],
)
def test_create_errors_name_the_flag_and_the_value(command: str, message: str) -> None:
    assert message in create_error(command)


# update ------------------------------------------------------------------------------------
def test_update_without_flags_changes_nothing(web: ServiceSpec) -> None:
    assert update(web, "") == web


def test_update_reads_rollback_force_detach_and_quiet_flags() -> None:
    parser = argparse.ArgumentParser()
    add_update_flags(parser)
    ns = parser.parse_args(["--rollback", "-d", "-q", "web"])
    assert (ns.rollback, ns.detach, ns.quiet, ns.force, ns.service) == (
        True,
        True,
        True,
        False,
        "web",
    )


def test_update_leaves_what_no_flag_names(web: ServiceSpec) -> None:
    spec = update(web, "--image nginx:1.28 --replicas 5")
    assert spec.task_template.container.image == "nginx:1.28"
    assert spec.mode.replicas == 5
    assert (
        replace(
            spec,
            mode=web.mode,
            task_template=replace(
                spec.task_template,
                container=replace(spec.task_template.container, image="nginx:1.27"),
            ),
        )
        == web
    )


def test_update_args_and_entrypoint_replace_or_reset(web: ServiceSpec) -> None:
    spec = update(web, "--args 'sleep 10' --entrypoint '/bin/sh -c'")
    assert spec.task_template.container.args == ("sleep", "10")
    assert spec.task_template.container.command == ("/bin/sh", "-c")
    reset = update(spec, "--args '' --entrypoint ''")
    assert reset.task_template.container.args is None
    assert reset.task_template.container.command is None


def test_env_add_replaces_in_place_appends_and_env_rm_removes(web: ServiceSpec) -> None:
    spec = update(web, "--env-add B=20 --env-add C=3 --env-add HOME --env-rm A", {"HOME": "/h"})
    assert spec.task_template.container.env == ("B=20", "C=3", "HOME=/h")


def test_label_add_and_rm(web: ServiceSpec) -> None:
    spec = update(web, "--label-add owner=ops --label-rm tier --container-label-add c=2")
    assert spec.labels == {"owner": "ops"}
    assert spec.task_template.container.labels == {"c": "2"}
    assert update(spec, "--container-label-rm c").task_template.container.labels == {}


def test_mount_add_replaces_by_target_and_mount_rm_removes_by_target(web: ServiceSpec) -> None:
    spec = update(
        web,
        "--mount-add type=volume,source=data2,target=/data --mount-add type=bind,src=/x,dst=/x "
        "--mount-rm /tmp",
    )
    assert spec.task_template.container.mounts == (
        Mount(type="volume", source="data2", target="/data"),
        Mount(type="bind", source="/x", target="/x"),
    )


def test_mount_add_refuses_the_same_target_twice(web: ServiceSpec) -> None:
    message = update_error(web, "--mount-add target=/a --mount-add target=/a")
    assert message == "invalid \"--mount-add\" flags: mount target '/a' is given twice"


def test_publish_rm_removes_by_target_port_and_publish_add_skips_duplicates(
    web: ServiceSpec,
) -> None:
    spec = update(web, "--publish-rm 80 --publish-add 9090:90/udp --publish-add 8443:443")
    assert spec.endpoint_spec.ports == (
        PortConfig(target=90, published=9090, protocol="udp"),
        PortConfig(target=443, published=8443),
    )
    assert update(web, "--publish-rm 90").endpoint_spec.ports == web.endpoint_spec.ports
    assert update(web, "--publish-rm 90/udp").endpoint_spec.ports == (
        PortConfig(target=80, published=8080),
    )


def test_constraint_and_placement_pref_add_and_rm(web: ServiceSpec) -> None:
    spec = update(
        web,
        "--constraint-rm 'node.role == worker' --constraint-add node.labels.gpu==yes "
        "--placement-pref-rm spread=node.labels.zone --placement-pref-add spread=node.id",
    )
    assert spec.task_template.placement.constraints == ("node.labels.gpu==yes",)
    assert spec.task_template.placement.preferences == ("spread=node.id",)


def test_secret_and_config_add_and_rm_by_name(web: ServiceSpec) -> None:
    spec = update(web, "--secret-rm db-password --secret-add api-key --config-rm app.conf")
    assert spec.task_template.container.secrets == (SecretRef(source="api-key", target="api-key"),)
    assert spec.task_template.container.configs == ()


def test_secret_add_replaces_the_secret_at_the_same_target(web: ServiceSpec) -> None:
    spec = update(web, "--secret-add source=db-password-v2,target=db-password")
    assert spec.task_template.container.secrets == (
        SecretRef(source="db-password-v2", target="db-password"),
    )


def test_network_host_dns_sysctl_ulimit_and_device_edits(web: ServiceSpec) -> None:
    spec = update(
        web,
        "--network-rm backend --network-add name=front,alias=www --host-add db:10.0.0.5 "
        "--dns-add 10.0.0.2 --sysctl-add net.core.somaxconn=512 --ulimit-add nofile=100 "
        "--device-add /dev/ttyUSB0",
    )
    container = spec.task_template.container
    assert spec.task_template.networks == (NetworkAttachment(target="front", aliases=("www",)),)
    assert container.hosts == ("10.0.0.5 db",)
    assert container.dns_config == DNSConfig(nameservers=("10.0.0.2",))
    assert container.sysctls == {"net.core.somaxconn": "512"}
    assert container.ulimits == (Ulimit(name="nofile", soft=100, hard=100),)
    assert container.devices == (
        DeviceMapping(path_on_host="/dev/ttyUSB0", path_in_container="/dev/ttyUSB0"),
    )
    back = update(
        spec,
        "--host-rm db --dns-rm 10.0.0.2 --sysctl-rm net.core.somaxconn --ulimit-rm nofile "
        "--device-rm /dev/ttyUSB0",
    ).task_template.container
    assert (back.hosts, back.dns_config, back.sysctls, back.ulimits, back.devices) == (
        (),
        None,
        {},
        (),
        (),
    )


def test_cap_add_and_cap_drop_move_capabilities_between_the_lists() -> None:
    spec = create("--cap-add NET_ADMIN --cap-drop CHOWN nginx")
    changed = update(spec, "--cap-add chown --cap-drop net_admin --cap-add SYS_TIME")
    assert changed.task_template.container.cap_add == ("CAP_CHOWN", "CAP_SYS_TIME")
    assert changed.task_template.container.cap_drop == ("CAP_NET_ADMIN",)


def test_force_increments_force_update_each_time(web: ServiceSpec) -> None:
    once = update(web, "--force")
    assert once.task_template.force_update == 1
    assert update(once, "--force").task_template.force_update == 2
    assert replace(once, task_template=replace(once.task_template, force_update=0)) == web


def test_scalar_flags_replace_only_what_they_name(web: ServiceSpec) -> None:
    spec = update(web, "--restart-delay 1s --update-delay 3s --limit-memory 128M -u nobody")
    assert spec.task_template.restart_policy == RestartPolicy(
        condition="on-failure", delay_ns=SECOND
    )
    assert spec.update_config == UpdateConfig(parallelism=2, delay_ns=3 * SECOND)
    assert spec.task_template.resources.limits.memory_bytes == 128 * MB
    assert spec.task_template.resources.limits.nano_cpus == 0
    assert spec.task_template.container.user == "nobody"
    assert spec.rollback_config is None


def test_rollback_flags_start_from_defaults_when_the_spec_has_none(web: ServiceSpec) -> None:
    spec = update(web, "--rollback-parallelism 0")
    assert spec.rollback_config == UpdateConfig(parallelism=0)


def test_replicas_max_per_node_zero_means_unlimited(web: ServiceSpec) -> None:
    limited = update(web, "--replicas-max-per-node 3")
    assert limited.task_template.placement.max_replicas_per_node == 3
    assert update(limited, "--replicas-max-per-node 0").task_template.placement == (
        web.task_template.placement
    )


def test_boolean_flags_switch_on_and_off(web: ServiceSpec) -> None:
    on = update(web, "--tty --read-only --init --privileged")
    container = on.task_template.container
    assert (container.tty, container.read_only, container.init, container.privileged) == (
        True,
        True,
        True,
        True,
    )
    off = update(on, "--no-tty --no-read-only --no-init --no-privileged").task_template.container
    assert (off.tty, off.read_only, off.init, off.privileged) == (False, False, False, False)


def test_health_cmd_re_enables_a_disabled_healthcheck() -> None:
    spec = create("--no-healthcheck nginx")
    check = update(spec, "--health-cmd 'true' --health-retries 2").task_template.container
    assert check.healthcheck == Healthcheck(test=("CMD-SHELL", "true"), retries=2)
    timing_only = update(spec, "--health-interval 1s").task_template.container.healthcheck
    assert timing_only == Healthcheck(interval_ns=SECOND)


def test_empty_health_cmd_returns_to_the_image_check() -> None:
    spec = create("--health-cmd 'curl -f localhost' nginx")
    assert update(spec, "--health-cmd ''").task_template.container.healthcheck is None


def test_log_opt_alone_replaces_the_options_of_the_current_driver() -> None:
    spec = create("--log-driver json-file --log-opt max-size=10m nginx")
    changed = update(spec, "--log-opt max-file=3")
    assert changed.task_template.log_driver == Driver(name="json-file", options={"max-file": "3"})


def test_update_replicas_of_a_replicated_job_keeps_its_concurrency() -> None:
    spec = create("--mode replicated-job --replicas 4 --max-concurrent 2 job")
    assert update(spec, "--replicas 8").mode == ServiceMode(
        kind="replicated-job", replicas=8, max_concurrent=2
    )


@pytest.mark.parametrize(
    ("command", "message"),
    [
        ("--replicas x", 'invalid argument "x" for "--replicas" flag: expected a whole number'),
        ("--image ''", 'invalid argument "" for "--image" flag'),
        ("--args 'a \"b'", 'invalid argument "a "b" for "--args" flag: cannot split it'),
        ("--env-add =x", 'invalid argument "=x" for "--env-add" flag'),
        ("--label-add =x", 'invalid argument "=x" for "--label-add" flag'),
        ("--mount-add type=bind,target=/x", 'for "--mount-add" flag: a bind mount needs'),
        ("--publish-add 0:0", 'invalid argument "0:0" for "--publish-add" flag'),
        ("--publish-rm tcp", 'invalid argument "tcp" for "--publish-rm" flag'),
        ("--publish-add 9090:91/udp", "invalid \"--publish-add\" flags: port '9090/udp'"),
        ("--constraint-add role=worker", 'invalid argument "role=worker" for "--constraint-add"'),
        ("--constraint-rm oops", 'invalid argument "oops" for "--constraint-rm" flag'),
        ("--placement-pref-add x", 'invalid argument "x" for "--placement-pref-add" flag'),
        ("--secret-add a,b=c", 'invalid argument "a,b=c" for "--secret-add" flag'),
        (
            "--config-add c --config-add source=d,target=/c",
            "invalid \"--config-add\" flags: config target '/c' is given twice",
        ),
        (
            "--secret-add a --secret-add source=b,target=a",
            "invalid \"--secret-add\" flags: secret target 'a' is given twice",
        ),
        ("--dns-add x", 'invalid argument "x" for "--dns-add" flag'),
        ("--host-add db", 'invalid argument "db" for "--host-add" flag'),
        ("--ulimit-add x=1", 'invalid argument "x=1" for "--ulimit-add" flag'),
        ("--device-add tty", 'invalid argument "tty" for "--device-add" flag'),
        ("--sysctl-add kernel", 'invalid argument "kernel" for "--sysctl-add" flag'),
        ("--max-concurrent 2", 'invalid argument "2" for "--max-concurrent" flag'),
        ("--update-failure-action stop", 'invalid argument "stop" for "--update-failure-action"'),
        ("--rollback-delay 1x", 'invalid argument "1x" for "--rollback-delay" flag'),
        ("--endpoint-mode dnsrr", 'invalid argument "dnsrr" for "--endpoint-mode" flag'),
        ("--log-opt a=b", 'invalid argument "a=b" for "--log-opt" flag: give the --log-driver'),
        ("--no-healthcheck --health-retries 1", "--no-healthcheck conflicts with --health-*"),
    ],
)
def test_update_errors_name_the_flag_and_the_value(
    web: ServiceSpec, command: str, message: str
) -> None:
    assert message in update_error(web, command)


def test_update_replicas_of_a_global_service_is_an_error() -> None:
    spec = create("--mode global agent")
    assert update_error(spec, "--replicas 3") == (
        'invalid argument "3" for "--replicas" flag: replicas can only be used with replicated '
        "or replicated-job mode"
    )


def test_update_flags_are_refused_for_jobs() -> None:
    spec = create("--mode global-job job")
    assert "do not apply to jobs" in update_error(spec, "--update-parallelism 2")


def test_disconnect_window_and_rebalance_are_service_settings() -> None:
    spec = create("--name web --disconnect-window 30s --rebalance shoal/busybox:latest")
    assert spec.disconnect_window_ns == 30 * SECOND
    assert spec.rebalance is True
    assert create("--name web shoal/busybox:latest").rebalance is False
    assert update(spec, "--no-rebalance").rebalance is False
    assert update(spec, "").disconnect_window_ns == 30 * SECOND
    assert "--disconnect-window" in create_error("--name web --disconnect-window soon img")


def test_create_past_the_limits_is_refused_before_anything_is_sent() -> None:
    assert "replicas is 1,000,000,000; at most 10,000" in create_error(
        "--replicas 1000000000 busybox"
    )
    assert "max-concurrent is 20,000" in create_error(
        "--mode replicated-job --replicas 10 --max-concurrent 20000 busybox"
    )
    labels = " ".join(f"--label k{i}=v" for i in range(101))
    assert "the number of service labels is 101; at most 100" in create_error(f"{labels} busybox")
    assert create("--replicas 10000 busybox").mode.replicas == 10_000


def test_update_past_the_limits_is_refused() -> None:
    spec = create("--name web busybox")
    assert "replicas is 10,001" in update_error(spec, "--replicas 10001")
