"""What deploying a stack creates, besides its services: networks, volumes, secrets, configs.

Names are final (namespaced ``<stack>_<name>`` unless the file gives ``name:``); every object
carries the ``com.docker.stack.namespace`` label. External objects are listed with
``external=True`` so a deployer can check that they exist; they are never created.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from agent.model.spec import ServiceSpec, Spec
from stacks.errors import StackWarning

__all__ = [
    "ConfigSpec",
    "IPAMConfig",
    "IPAMSpec",
    "NetworkSpec",
    "SecretSpec",
    "StackSpec",
    "VolumeSpec",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class IPAMConfig(Spec):
    subnet: str = ""
    ip_range: str = ""
    gateway: str = ""
    aux_addresses: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class IPAMSpec(Spec):
    driver: str = "default"
    config: tuple[IPAMConfig, ...] = ()
    options: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class NetworkSpec(Spec):
    name: str
    driver: str = "overlay"
    driver_opts: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    attachable: bool = False
    internal: bool = False
    enable_ipv6: bool = False
    ipam: IPAMSpec | None = None
    external: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class VolumeSpec(Spec):
    """A named volume; tasks create it on their node through their mount's volume options."""

    name: str
    driver: str = "local"
    driver_opts: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    external: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class SecretSpec(Spec):
    name: str
    data: bytes = b""
    labels: dict[str, str] = field(default_factory=dict)
    external: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class ConfigSpec(Spec):
    name: str
    data: bytes = b""
    labels: dict[str, str] = field(default_factory=dict)
    external: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class StackSpec(Spec):
    """A whole stack, ready to deploy; ``warnings`` are for the person deploying it."""

    name: str
    services: tuple[ServiceSpec, ...] = ()
    networks: tuple[NetworkSpec, ...] = ()
    secrets: tuple[SecretSpec, ...] = ()
    configs: tuple[ConfigSpec, ...] = ()
    volumes: tuple[VolumeSpec, ...] = ()
    warnings: tuple[StackWarning, ...] = ()

    def service(self, name: str) -> ServiceSpec:
        """The service called ``name``, given with or without the stack prefix."""
        for spec in self.services:
            if spec.name in (name, f"{self.name}_{name}"):
                return spec
        raise KeyError(name)
