"""The flags of ``shoal service create``, to a ServiceSpec.

Flags keep Docker's names and meanings. argparse only collects them: every value stays the
string the user typed (``None`` when the flag was not given, a list for repeatable flags), and
:func:`spec_from_create` converts them, raising :class:`ShoalError` with Docker's wording,
``invalid argument "abc" for "--replicas" flag: expected a whole number``.
"""

from __future__ import annotations

import argparse
import os
import random
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from agent.cli.flagvalues import (
    capability,
    caps,
    choice,
    config,
    constraint,
    device,
    env_entry,
    env_file,
    host_entry,
    key_value,
    mount,
    nameserver,
    network,
    nonempty,
    port_configs,
    preference,
    read_each,
    read_one,
    secret,
    service_name,
    strict_key_value,
    ulimit,
)
from agent.cli.sharedflags import (
    GLOBAL_MODES,
    MODES,
    add_shared_flags,
    apply_mode,
    apply_shared_flags,
    check_rules,
    dedup_env,
)
from agent.model.errors import ShoalError
from agent.model.spec import (
    ContainerSpec,
    DNSConfig,
    EndpointSpec,
    Placement,
    ServiceMode,
    ServiceSpec,
    TaskSpec,
)

__all__ = ["add_create_flags", "random_name", "spec_from_create"]

_ADJECTIVES = (
    "amber bold brave bright calm clever cosmic crisp deep eager fair fast fierce gentle "
    "golden happy hidden jolly keen kind lively lucky merry misty nimble noble quick quiet "
    "rapid silent silver sleek smooth snug steady stormy sunny swift tidal tranquil vivid "
    "wandering warm wild wise witty zesty"
).split()


_NOUNS = (
    "anchovy barracuda bass bream carp cod coral dolphin eel flounder grouper gudgeon haddock "
    "halibut herring jellyfish kelp krill mackerel manta marlin minnow mullet narwhal octopus "
    "orca perch pike plankton pollock ray roach salmon sardine shad shrimp smelt snapper sole "
    "sprat squid sturgeon tarpon trout tuna turbot urchin wahoo whiting"
).split()


_CREATE_LISTS = (
    (("-e", "--env"), "KEY=VALUE", "set an environment variable (KEY alone: from this shell)"),
    (("--env-file",), "FILE", "read environment variables from a file"),
    (("--label",), "KEY=VALUE", "service label"),
    (("--container-label",), "KEY=VALUE", "container label"),
    (("--mount",), "SPEC", "mount: type=bind|volume|tmpfs,source=...,target=...[,readonly]"),
    (("-p", "--publish"), "PORT", "publish a port: 8080:80[/udp] or published=8080,target=80"),
    (("--constraint",), "EXPR", "placement constraint, like node.role==worker"),
    (("--placement-pref",), "PREF", "placement preference, like spread=node.labels.zone"),
    (("--network",), "NETWORK", "network to attach: NAME or name=NAME,alias=ALIAS"),
    (("--device",), "DEVICE", "host device: /dev/x[:/dev/y[:rwm]] (needs --privileged)"),
    (("--dns",), "IP", "DNS server"),
    (("--dns-search",), "DOMAIN", "DNS search domain"),
    (("--dns-option",), "OPTION", "DNS option"),
    (("--host",), "HOST:IP", "add a line to /etc/hosts"),
    (("--secret",), "SECRET", "secret to expose: NAME or source=NAME,target=FILE"),
    (("--config",), "CONFIG", "config to expose: NAME or source=NAME,target=/PATH"),
    (("--sysctl",), "KEY=VALUE", "kernel parameter"),
    (("--ulimit",), "NAME=SOFT[:HARD]", "ulimit, like nofile=1024:2048"),
)


def add_create_flags(parser: argparse.ArgumentParser) -> None:
    """The flags of ``service create`` and its ``IMAGE [COMMAND] [ARG...]`` (dest ``args``)."""
    parser.add_argument("--name", metavar="NAME", help="service name (default: a random one)")
    parser.add_argument("--mode", metavar="MODE", help=f"{', '.join(MODES)} (default replicated)")
    add_shared_flags(parser)
    for names, metavar, text in _CREATE_LISTS:
        parser.add_argument(*names, action="append", default=[], metavar=metavar, help=text)
    parser.add_argument("image", metavar="IMAGE")
    parser.add_argument("args", nargs=argparse.REMAINDER, help="command and arguments")


def spec_from_create(
    ns: argparse.Namespace,
    *,
    environ: Mapping[str, str] | None = None,
    rng: random.Random | None = None,
) -> ServiceSpec:
    """The spec ``service create`` asks for; ``environ`` serves ``-e KEY`` and env files."""
    environ = os.environ if environ is None else environ
    name = read_one(ns, "name", service_name) or random_name(rng or random.Random())
    image = str(ns.image).strip()
    if not image:
        raise ShoalError('invalid argument "" for IMAGE: expected an image like nginx:1.27')
    kind: Any = read_one(ns, "mode", choice(*MODES)) or "replicated"
    mode = ServiceMode(kind=kind, replicas=0 if kind in GLOBAL_MODES else 1)
    mode = apply_mode(mode, ns)
    if kind == "replicated-job" and mode.max_concurrent is None:
        mode = replace(mode, max_concurrent=mode.replicas)
    env = [e for path in getattr(ns, "env_file", None) or () for e in env_file(path, environ)]
    env += [e for e in read_each(ns, "env", lambda t: env_entry(t, environ)) if e is not None]
    cap_add, cap_drop = caps(
        read_each(ns, "cap_add", capability), read_each(ns, "cap_drop", capability)
    )
    dns = DNSConfig(
        nameservers=tuple(read_each(ns, "dns", nameserver)),
        search=tuple(read_each(ns, "dns_search", nonempty)),
        options=tuple(read_each(ns, "dns_option", nonempty)),
    )
    container = ContainerSpec(
        image=image,
        args=tuple(getattr(ns, "args", None) or ()) or None,
        env=dedup_env(env),
        labels=dict(read_each(ns, "container_label", key_value)),
        hosts=tuple(read_each(ns, "host", host_entry)),
        dns_config=dns if dns != DNSConfig() else None,
        mounts=tuple(read_each(ns, "mount", mount)),
        secrets=tuple(read_each(ns, "secret", secret)),
        configs=tuple(read_each(ns, "config", config)),
        devices=tuple(read_each(ns, "device", device)),
        cap_add=cap_add,
        cap_drop=cap_drop,
        sysctls=dict(read_each(ns, "sysctl", strict_key_value)),
        ulimits=tuple(read_each(ns, "ulimit", ulimit)),
    )
    ports = [p for raw in read_each(ns, "publish", port_configs) for p in raw]
    task = TaskSpec(
        container=container,
        placement=Placement(
            constraints=tuple(dict.fromkeys(read_each(ns, "constraint", constraint))),
            preferences=tuple(read_each(ns, "placement_pref", preference)),
        ),
        networks=tuple(read_each(ns, "network", network)),
    )
    spec = ServiceSpec(
        name=name,
        labels=dict(read_each(ns, "label", key_value)),
        task_template=task,
        mode=mode,
        endpoint_spec=EndpointSpec(ports=tuple(dict.fromkeys(ports))),
    )
    return check_rules(apply_shared_flags(spec, ns), update=False)


def random_name(rng: random.Random) -> str:
    """A name for a service created without ``--name``, like ``brave-herring``."""
    return f"{rng.choice(_ADJECTIVES)}-{rng.choice(_NOUNS)}"
