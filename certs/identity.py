"""Who a certificate speaks for: node ids, roles, and the Identity read back from a certificate.

The cluster CA assigns identity; a certificate's subject carries it as
CN = node id, OU = role, O = cluster id. Admin and monitor identities carry a CN prefix
(`adm-`, `mon-`) so that the CN alone, which the broker uses as the MQTT username, tells a
node from a person or a dashboard.
"""

from __future__ import annotations

import random
import re
import secrets
import string
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from cryptography import x509
from cryptography.x509.oid import NameOID

from .errors import CertError
from .keys import load_cert

ID_ALPHABET = string.digits + string.ascii_lowercase
NODE_ID_LENGTH = 25
ADMIN_PREFIX = "adm-"
MONITOR_PREFIX = "mon-"
_PREFIXED_RANDOM_LENGTH = 21
_VALID_ID = re.compile(r"[0-9a-z-]{5,64}")


class Role(StrEnum):
    MANAGER = "shoal-manager"
    WORKER = "shoal-worker"
    ADMIN = "shoal-admin"
    MONITOR = "shoal-monitor"

    @classmethod
    def parse(cls, text: str) -> Role:
        """Parse a role from its OU value ("shoal-worker") or its short name ("worker")."""
        wanted = text.strip().lower() if isinstance(text, str) else ""
        for role in cls:
            if wanted in (role.value, role.short_name):
                return role
        valid = ", ".join(f"{role.short_name} ({role.value})" for role in cls)
        raise CertError(f"unknown role {text!r}; valid roles are: {valid}")

    @property
    def short_name(self) -> str:
        return self.value.removeprefix("shoal-")

    @property
    def is_node(self) -> bool:
        """Managers and workers are nodes; admins and monitors are people and tools."""
        return self in (Role.MANAGER, Role.WORKER)


def _random_base36(length: int, rng: random.Random | None) -> str:
    if rng is None:
        return "".join(secrets.choice(ID_ALPHABET) for _ in range(length))
    return "".join(rng.choice(ID_ALPHABET) for _ in range(length))


def new_node_id(rng: random.Random | None = None) -> str:
    """A 25-character base36 id (about 129 random bits), the shape of a Swarm node id.

    `rng` exists for deterministic simulation; production code leaves it out and gets `secrets`.
    """
    return _random_base36(NODE_ID_LENGTH, rng)


def new_cluster_id(rng: random.Random | None = None) -> str:
    return _random_base36(NODE_ID_LENGTH, rng)


def new_admin_id(rng: random.Random | None = None) -> str:
    return ADMIN_PREFIX + _random_base36(_PREFIXED_RANDOM_LENGTH, rng)


def new_monitor_id(rng: random.Random | None = None) -> str:
    return MONITOR_PREFIX + _random_base36(_PREFIXED_RANDOM_LENGTH, rng)


def is_valid_id(text: object) -> bool:
    """True for ids safe as an MQTT topic level and a CN: 5 to 64 of [0-9a-z-]."""
    return isinstance(text, str) and _VALID_ID.fullmatch(text) is not None


def check_id_for_role(identity_id: str, role: Role) -> None:
    """Refuse an id whose shape contradicts its role.

    Node ids (managers, workers) never contain '-'; admin ids start with `adm-` and monitor
    ids with `mon-`. This keeps "the CN alone tells the role" true for every issued certificate.
    """
    if not is_valid_id(identity_id):
        raise CertError(
            f"{identity_id!r} is not a valid shoal id: use 5 to 64 characters from 0-9, a-z and '-'"
        )
    if role is Role.ADMIN:
        expected_prefix: str | None = ADMIN_PREFIX
    elif role is Role.MONITOR:
        expected_prefix = MONITOR_PREFIX
    else:
        expected_prefix = None
    if expected_prefix is None:
        if "-" in identity_id:
            raise CertError(
                f"node id {identity_id!r} contains '-', which only admin ({ADMIN_PREFIX}...) "
                f"and monitor ({MONITOR_PREFIX}...) ids may; generate one with new_node_id()"
            )
    elif not identity_id.startswith(expected_prefix):
        raise CertError(f"{role.short_name} id {identity_id!r} must start with {expected_prefix!r}")


@dataclass(frozen=True)
class Identity:
    """The identity a cluster certificate asserts, with its validity window (UTC)."""

    node_id: str
    role: Role
    cluster_id: str
    serial: int
    not_before: datetime
    not_after: datetime

    def __post_init__(self) -> None:
        if not isinstance(self.role, Role):
            raise CertError(f"identity role must be a Role, got {self.role!r}")
        for label, value in (("node id", self.node_id), ("cluster id", self.cluster_id)):
            if not is_valid_id(value):
                raise CertError(f"{label} {value!r} is not a valid shoal id")
        for label, moment in (("not_before", self.not_before), ("not_after", self.not_after)):
            if moment.tzinfo is None or moment.utcoffset() is None:
                raise CertError(f"identity {label} must be a timezone-aware datetime")

    @classmethod
    def from_cert(cls, cert: x509.Certificate | bytes) -> Identity:
        """Read CN/OU/O from a certificate; CertError when any is missing or malformed.

        This does not check who signed the certificate: use `verify_issued` for that.
        """
        if isinstance(cert, bytes):
            cert = load_cert(cert)
        subject = cert.subject
        node_id = _single_attribute(subject, NameOID.COMMON_NAME, "CN (node id)")
        role_text = _single_attribute(subject, NameOID.ORGANIZATIONAL_UNIT_NAME, "OU (role)")
        cluster_id = _single_attribute(subject, NameOID.ORGANIZATION_NAME, "O (cluster id)")
        try:
            role = Role(role_text)
        except ValueError:
            valid = ", ".join(role.value for role in Role)
            raise CertError(
                f"certificate OU {role_text!r} is not a shoal role (expected one of: {valid})"
            ) from None
        if not is_valid_id(cluster_id):
            raise CertError(f"certificate O {cluster_id!r} is not a valid shoal cluster id")
        check_id_for_role(node_id, role)
        return cls(
            node_id=node_id,
            role=role,
            cluster_id=cluster_id,
            serial=cert.serial_number,
            not_before=cert.not_valid_before_utc,
            not_after=cert.not_valid_after_utc,
        )

    @property
    def is_node(self) -> bool:
        return self.role.is_node


def _single_attribute(name: x509.Name, oid: x509.ObjectIdentifier, label: str) -> str:
    values = name.get_attributes_for_oid(oid)
    if not values:
        raise CertError(f"certificate subject has no {label}; it was not issued by a shoal CA")
    if len(values) > 1:
        raise CertError(f"certificate subject has {len(values)} {label} entries, expected one")
    value = values[0].value
    if not isinstance(value, str):
        raise CertError(f"certificate subject {label} is not text")
    return value
