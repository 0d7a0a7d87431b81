import random
import re
from dataclasses import replace
from datetime import UTC, datetime

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import NameOID

from certs import (
    CertError,
    ClusterCA,
    Identity,
    Role,
    cert_to_pem,
    check_id_for_role,
    is_valid_id,
    make_csr,
    new_admin_id,
    new_cluster_id,
    new_monitor_id,
    new_node_id,
    new_private_key,
)

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def self_signed(*attributes: x509.NameAttribute) -> x509.Certificate:
    key = new_private_key()
    name = x509.Name(list(attributes))
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(7)
        .not_valid_before(NOW)
        .not_valid_after(NOW.replace(year=2027))
        .sign(key, hashes.SHA256())
    )


def test_node_and_cluster_ids_are_25_lowercase_base36_characters() -> None:
    for make in (new_node_id, new_cluster_id):
        value = make()
        assert re.fullmatch(r"[0-9a-z]{25}", value)
        assert is_valid_id(value)


def test_admin_and_monitor_ids_carry_their_prefix_and_21_random_characters() -> None:
    assert re.fullmatch(r"adm-[0-9a-z]{21}", new_admin_id())
    assert re.fullmatch(r"mon-[0-9a-z]{21}", new_monitor_id())


def test_ids_are_unique_and_reproducible_from_a_seeded_rng() -> None:
    assert len({new_node_id() for _ in range(200)}) == 200
    assert new_node_id(random.Random(3)) == new_node_id(random.Random(3))


@pytest.mark.parametrize(
    "text",
    ["abcd", "a" * 65, "node.one", "node/one", "node+", "node#1", "Node1", "node one", "", "nødé1"],
)
def test_is_valid_id_rejects_anything_unsafe_in_a_topic_or_cn(text: str) -> None:
    assert not is_valid_id(text)


def test_is_valid_id_accepts_lowercase_base36_with_dashes_from_5_to_64_characters() -> None:
    assert is_valid_id("abcde")
    assert is_valid_id("a" * 64)
    assert is_valid_id("adm-xyz12")


def test_role_parse_accepts_the_ou_value_and_the_short_name() -> None:
    assert Role.parse("shoal-manager") is Role.MANAGER
    assert Role.parse("worker") is Role.WORKER
    assert Role.parse(" Admin ") is Role.ADMIN


def test_role_parse_error_lists_the_valid_roles() -> None:
    with pytest.raises(CertError, match="unknown role 'boss'") as caught:
        Role.parse("boss")
    for role in Role:
        assert role.value in str(caught.value)


def test_check_id_for_role_keeps_the_cn_alone_telling_the_role() -> None:
    check_id_for_role(new_node_id(), Role.WORKER)
    check_id_for_role(new_admin_id(), Role.ADMIN)
    check_id_for_role(new_monitor_id(), Role.MONITOR)
    with pytest.raises(CertError, match="contains '-'"):
        check_id_for_role(new_admin_id(), Role.MANAGER)
    with pytest.raises(CertError, match="must start with 'adm-'"):
        check_id_for_role(new_node_id(), Role.ADMIN)
    with pytest.raises(CertError, match="must start with 'mon-'"):
        check_id_for_role(new_admin_id(), Role.MONITOR)


def test_identity_from_cert_reads_cn_ou_o_serial_and_validity_from_pem() -> None:
    ca = ClusterCA.create(new_cluster_id(), now=NOW)
    node_id = new_node_id()
    pem = ca.issue(make_csr(new_private_key()), node_id=node_id, role=Role.MANAGER, now=NOW)

    identity = Identity.from_cert(pem)

    assert identity.node_id == node_id
    assert identity.role is Role.MANAGER
    assert identity.cluster_id == ca.cluster_id
    assert identity.is_node
    assert identity.not_before.tzinfo is not None
    assert identity.serial > 0


@pytest.mark.parametrize(
    ("attributes", "message"),
    [
        (
            [
                x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "shoal-worker"),
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "cluster1"),
            ],
            "no CN",
        ),
        (
            [
                x509.NameAttribute(NameOID.COMMON_NAME, "node1"),
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "cluster1"),
            ],
            "no OU",
        ),
        (
            [
                x509.NameAttribute(NameOID.COMMON_NAME, "node1"),
                x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "shoal-worker"),
            ],
            "no O",
        ),
        (
            [
                x509.NameAttribute(NameOID.COMMON_NAME, "node1"),
                x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "root"),
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "cluster1"),
            ],
            "OU 'root' is not a shoal role",
        ),
        (
            [
                x509.NameAttribute(NameOID.COMMON_NAME, "node/1"),
                x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "shoal-worker"),
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "cluster1"),
            ],
            "not a valid shoal id",
        ),
        (
            [
                x509.NameAttribute(NameOID.COMMON_NAME, "node1"),
                x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "shoal-worker"),
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Cluster One"),
            ],
            "not a valid shoal cluster id",
        ),
    ],
)
def test_identity_from_cert_refuses_a_missing_or_invalid_subject_part(
    attributes: list[x509.NameAttribute], message: str
) -> None:
    cert = self_signed(*attributes)
    with pytest.raises(CertError, match=message):
        Identity.from_cert(cert)
    with pytest.raises(CertError, match=message):
        Identity.from_cert(cert_to_pem(cert))


def test_identity_from_cert_refuses_bytes_that_are_not_a_certificate() -> None:
    with pytest.raises(CertError, match="not a valid PEM certificate"):
        Identity.from_cert(b"hello")


def test_identity_refuses_naive_datetimes_and_unsafe_ids() -> None:
    identity = Identity(
        node_id="abcdefghij",
        role=Role.WORKER,
        cluster_id="cluster1",
        serial=1,
        not_before=NOW,
        not_after=NOW.replace(year=2027),
    )
    with pytest.raises(CertError, match="timezone-aware"):
        replace(identity, not_after=datetime(2027, 1, 1))
    with pytest.raises(CertError, match=r"node id 'a\.b' is not a valid shoal id"):
        replace(identity, node_id="a.b")
