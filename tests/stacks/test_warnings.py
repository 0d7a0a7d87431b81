"""Keys that docker stack deploy ignores are warned about in Docker's words; deploys go on."""

from __future__ import annotations

from stacks import StackWarning, load_stack_text

IGNORED = """\
version: "3.8"
services:
  web:
    image: shoal/busybox:latest
    build: ./web
    container_name: web-1
    depends_on: [db]
    links: [db]
    network_mode: host
    expose: ["8080"]
    security_opt: [no-new-privileges]
  db:
    image: shoal/busybox:latest
    restart: always
    shm_size: 256m
"""


def test_ignored_options_are_listed_like_docker_does() -> None:
    spec = load_stack_text(IGNORED, stack_name="app")

    assert [str(w) for w in spec.warnings] == [
        "Ignoring unsupported options: build, depends_on, links, network_mode, restart, "
        "security_opt, shm_size",
        "Ignoring deprecated options:\n\n"
        "container_name: Setting the container name is not supported.\n\n"
        "expose: Exposing ports is unnecessary - services on the same network can access each "
        "other's containers on any port.",
    ]
    assert [s.name for s in spec.services] == ["app_db", "app_web"]
    assert spec.service("db").task_template.restart_policy.condition == "any"


def test_devices_and_privileged_are_supported_not_ignored() -> None:
    spec = load_stack_text(
        "services:\n  probe:\n    image: x\n    privileged: true\n    devices: [/dev/ttyACM0]\n",
        stack_name="app",
    )
    container = spec.service("probe").task_template.container
    assert container.privileged
    assert container.devices[0].path_on_host == "/dev/ttyACM0"
    assert spec.warnings == ()


def test_a_host_ip_on_a_port_is_ignored_with_dockers_warning() -> None:
    spec = load_stack_text(
        'services:\n  web:\n    image: x\n    ports: ["127.0.0.1:8080:80"]\n',
        stack_name="app",
        filename="web.yml",
    )
    assert spec.warnings == (
        StackWarning(
            "ignoring IP-address (127.0.0.1:8080:80/tcp) service will listen on '0.0.0.0'",
            file="web.yml",
            line=4,
            column=13,
            path="services.web.ports[0]",
        ),
    )
    assert spec.service("web").endpoint_spec.ports[0].published == 8080


def test_deprecated_external_name_is_folded_into_name_with_a_warning() -> None:
    spec = load_stack_text(
        "services:\n  web:\n    image: x\n    networks: [outside]\n"
        "networks:\n  outside:\n    external:\n      name: plant-net\n",
        stack_name="app",
    )
    assert spec.service("web").task_template.networks[0].target == "plant-net"
    assert [str(w) for w in spec.warnings] == [
        "stack.yml:7:5: networks.outside.external: network outside: "
        "network.external.name is deprecated in favor of network.name"
    ]


def test_unset_variables_warn_and_become_empty() -> None:
    spec = load_stack_text(
        "services:\n  web:\n    image: x\n    command: echo ${GREETING}\n",
        stack_name="app",
        environ={},
    )
    assert spec.service("web").task_template.container.args == ("echo",)
    assert [str(w) for w in spec.warnings] == [
        'stack.yml:4:5: services.web.command: The "GREETING" variable is not set. '
        "Defaulting to a blank string."
    ]


def test_restart_is_warned_about_as_docker_does_and_still_applies() -> None:
    spec = load_stack_text(
        "services:\n  job:\n    image: x\n    restart: on-failure:3\n", stack_name="app"
    )
    assert [str(w) for w in spec.warnings] == ["Ignoring unsupported options: restart"]
    policy = spec.service("job").task_template.restart_policy
    assert (policy.condition, policy.max_attempts) == ("on-failure", 3)


def test_restart_policy_under_deploy_brings_no_warning() -> None:
    spec = load_stack_text(
        "services:\n  job:\n    image: x\n    deploy:\n      restart_policy:\n"
        "        condition: none\n",
        stack_name="app",
    )
    assert spec.warnings == ()
