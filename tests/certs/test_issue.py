import ipaddress
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from certs import (
    CLOCK_SKEW,
    CertError,
    ClusterCA,
    Role,
    load_cert,
    make_csr,
    new_admin_id,
    new_node_id,
    new_private_key,
    verify_issued,
)
from certs.keys import public_key_der

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def ca() -> ClusterCA:
    return ClusterCA.create("k3v9x2m7q8w1e5r4t6y0u2i3o", now=NOW)


def subject_value(cert: x509.Certificate, oid: x509.ObjectIdentifier) -> object:
    return cert.subject.get_attributes_for_oid(oid)[0].value


def ec_public_key(cert: x509.Certificate) -> ec.EllipticCurvePublicKey:
    key = cert.public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey)
    return key


def hostile_csr(key: ec.EllipticCurvePrivateKey) -> bytes:
    """A CSR that claims to be a manager CA for another cluster."""
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(
            x509.Name(
                [
                    x509.NameAttribute(NameOID.COMMON_NAME, "evil"),
                    x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "shoal-manager"),
                    x509.NameAttribute(NameOID.ORGANIZATION_NAME, "another-cluster"),
                ]
            )
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("evil.example")]), False)
        .sign(key, hashes.SHA256())
    )
    return csr.public_bytes(serialization.Encoding.PEM)


def test_issue_ignores_the_csr_subject_and_extensions(ca: ClusterCA) -> None:
    key = new_private_key()
    node_id = new_node_id()

    leaf = load_cert(ca.issue(hostile_csr(key), node_id=node_id, role=Role.WORKER, now=NOW))

    assert subject_value(leaf, NameOID.COMMON_NAME) == node_id
    assert subject_value(leaf, NameOID.ORGANIZATIONAL_UNIT_NAME) == "shoal-worker"
    assert subject_value(leaf, NameOID.ORGANIZATION_NAME) == ca.cluster_id
    assert not leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    with pytest.raises(x509.ExtensionNotFound):
        leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert public_key_der(ec_public_key(leaf)) == public_key_der(key)


def test_issue_defaults_to_90_days_starting_slightly_in_the_past(ca: ClusterCA) -> None:
    leaf = load_cert(
        ca.issue(make_csr(new_private_key()), node_id=new_node_id(), role=Role.WORKER, now=NOW)
    )
    assert leaf.not_valid_before_utc == NOW - CLOCK_SKEW
    assert leaf.not_valid_after_utc == NOW + timedelta(days=90)


def test_issue_never_outlives_the_ca(ca: ClusterCA) -> None:
    late = ca.cert.not_valid_after_utc - timedelta(days=10)
    leaf = load_cert(
        ca.issue(make_csr(new_private_key()), node_id=new_node_id(), role=Role.WORKER, now=late)
    )
    assert leaf.not_valid_after_utc == ca.cert.not_valid_after_utc


def test_issued_leaf_is_a_tls_client_certificate_that_can_receive_sealed_secrets(
    ca: ClusterCA,
) -> None:
    leaf = load_cert(
        ca.issue(make_csr(new_private_key()), node_id=new_node_id(), role=Role.WORKER, now=NOW)
    )
    usage = leaf.extensions.get_extension_for_class(x509.KeyUsage).value
    extended = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    authority = leaf.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    ca_ski = ca.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert usage.digital_signature
    assert usage.key_agreement
    assert not usage.key_cert_sign
    assert list(extended) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert authority.key_identifier == ca_ski.digest
    assert leaf.serial_number.bit_length() <= 159


def test_issue_gives_every_certificate_a_different_serial(ca: ClusterCA) -> None:
    csr = make_csr(new_private_key())
    serials = {
        load_cert(ca.issue(csr, node_id=new_node_id(), role=Role.WORKER, now=NOW)).serial_number
        for _ in range(20)
    }
    assert len(serials) == 20


def test_issue_refuses_a_csr_with_a_bad_signature(ca: ClusterCA) -> None:
    der = x509.load_pem_x509_csr(make_csr(new_private_key())).public_bytes(
        serialization.Encoding.DER
    )
    tampered = x509.load_der_x509_csr(der[:-1] + bytes([der[-1] ^ 0x01])).public_bytes(
        serialization.Encoding.PEM
    )
    with pytest.raises(CertError, match="CSR signature is invalid"):
        ca.issue(tampered, node_id=new_node_id(), role=Role.WORKER, now=NOW)


def test_issue_refuses_an_rsa_csr_and_says_which_key_is_needed(ca: ClusterCA) -> None:
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "node")]))
        .sign(rsa_key, hashes.SHA256())
        .public_bytes(serialization.Encoding.PEM)
    )
    with pytest.raises(CertError, match=r"CSR key is RSA.*ECDSA P-256"):
        ca.issue(csr, node_id=new_node_id(), role=Role.WORKER, now=NOW)


def test_issue_refuses_a_p384_csr(ca: ClusterCA) -> None:
    csr = make_csr(ec.generate_private_key(ec.SECP384R1()))
    with pytest.raises(CertError, match="secp384r1"):
        ca.issue(csr, node_id=new_node_id(), role=Role.WORKER, now=NOW)


def test_issue_refuses_input_that_is_not_a_csr(ca: ClusterCA) -> None:
    with pytest.raises(CertError, match="not a valid PEM certificate signing request"):
        ca.issue(ca.cert_pem, node_id=new_node_id(), role=Role.WORKER, now=NOW)


def test_issue_refuses_an_id_that_contradicts_the_role(ca: ClusterCA) -> None:
    with pytest.raises(CertError, match="must start with 'adm-'"):
        ca.issue(make_csr(new_private_key()), node_id=new_node_id(), role=Role.ADMIN, now=NOW)


def test_verify_issued_returns_the_identity_of_a_valid_leaf(ca: ClusterCA) -> None:
    admin_id = new_admin_id()
    leaf = load_cert(
        ca.issue(make_csr(new_private_key()), node_id=admin_id, role=Role.ADMIN, now=NOW)
    )

    identity = verify_issued(ca.cert, leaf, now=NOW + timedelta(days=1))

    assert identity.node_id == admin_id
    assert identity.role is Role.ADMIN
    assert identity.serial == leaf.serial_number
    assert identity.not_after == NOW + timedelta(days=90)
    assert not identity.is_node


def test_verify_issued_refuses_a_leaf_from_another_cluster(ca: ClusterCA) -> None:
    other = ClusterCA.create("other-cluster", now=NOW)
    leaf = load_cert(
        other.issue(make_csr(new_private_key()), node_id=new_node_id(), role=Role.WORKER, now=NOW)
    )
    with pytest.raises(CertError, match="not issued by this cluster's CA"):
        verify_issued(ca.cert, leaf, now=NOW)


def test_verify_issued_refuses_a_leaf_from_a_ca_with_the_same_cluster_id(ca: ClusterCA) -> None:
    impostor = ClusterCA.create(ca.cluster_id, now=NOW)
    leaf = load_cert(
        impostor.issue(
            make_csr(new_private_key()), node_id=new_node_id(), role=Role.MANAGER, now=NOW
        )
    )
    with pytest.raises(CertError, match="not issued by this cluster's CA"):
        verify_issued(ca.cert, leaf, now=NOW)


def test_verify_issued_refuses_an_expired_leaf_and_says_when_it_expired(ca: ClusterCA) -> None:
    leaf = load_cert(
        ca.issue(
            make_csr(new_private_key()),
            node_id=new_node_id(),
            role=Role.WORKER,
            not_before=NOW - timedelta(days=30),
            not_after=NOW - timedelta(days=1),
        )
    )
    with pytest.raises(CertError, match="certificate expired on 2026-02-28 12:00:00 UTC"):
        verify_issued(ca.cert, leaf, now=NOW)


def test_verify_issued_refuses_a_leaf_that_is_not_valid_yet(ca: ClusterCA) -> None:
    leaf = load_cert(
        ca.issue(make_csr(new_private_key()), node_id=new_node_id(), role=Role.WORKER, now=NOW)
    )
    with pytest.raises(CertError, match=r"not valid until.*clock"):
        verify_issued(ca.cert, leaf, now=NOW - timedelta(hours=1))


def test_verify_issued_refuses_the_ca_certificate_itself(ca: ClusterCA) -> None:
    with pytest.raises(CertError, match="is a CA certificate"):
        verify_issued(ca.cert, ca.cert, now=NOW)


def test_server_cert_lists_names_as_dns_and_literals_as_ip_addresses(ca: ClusterCA) -> None:
    key = new_private_key()
    cert = load_cert(
        ca.issue_server_cert(key, ["broker.local", "10.0.0.7", "::1", "localhost"], now=NOW)
    )
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    extended = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value

    assert sans.get_values_for_type(x509.DNSName) == ["broker.local", "localhost"]
    assert sans.get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address("10.0.0.7"),
        ipaddress.ip_address("::1"),
    ]
    assert subject_value(cert, NameOID.COMMON_NAME) == "broker.local"
    assert list(extended) == [ExtendedKeyUsageOID.SERVER_AUTH]
    assert cert.not_valid_after_utc == NOW + timedelta(days=825)
    cert.verify_directly_issued_by(ca.cert)


def test_server_cert_accepts_a_public_key(ca: ClusterCA) -> None:
    key = new_private_key()
    cert = load_cert(ca.issue_server_cert(key.public_key(), ["broker"], now=NOW))
    assert public_key_der(ec_public_key(cert)) == public_key_der(key)


@pytest.mark.parametrize("hosts", [[], [""], ["two words"], ["bröker"]])
def test_server_cert_refuses_missing_or_malformed_hosts(ca: ClusterCA, hosts: list[str]) -> None:
    with pytest.raises(CertError, match="host"):
        ca.issue_server_cert(new_private_key(), hosts, now=NOW)


def test_crl_lists_the_revoked_serials_and_is_signed_by_the_ca(ca: ClusterCA) -> None:
    revoked_at = NOW - timedelta(hours=2)

    crl = x509.load_pem_x509_crl(ca.build_crl([(1234, revoked_at), (5678, NOW)], now=NOW))

    assert crl.is_signature_valid(ca.key.public_key())
    assert crl.issuer == ca.cert.subject
    assert len(crl) == 2
    entry = crl.get_revoked_certificate_by_serial_number(1234)
    assert entry is not None
    assert entry.revocation_date_utc == revoked_at
    assert crl.get_revoked_certificate_by_serial_number(999) is None
    assert crl.last_update_utc == NOW
    assert crl.next_update_utc == NOW + timedelta(days=7)


def test_an_empty_crl_is_valid(ca: ClusterCA) -> None:
    crl = x509.load_pem_x509_crl(ca.build_crl([], now=NOW, next_update=timedelta(days=1)))
    assert len(crl) == 0
    assert crl.is_signature_valid(ca.key.public_key())
    assert crl.next_update_utc == NOW + timedelta(days=1)


def test_later_crls_have_larger_crl_numbers(ca: ClusterCA) -> None:
    def number(now: datetime) -> int:
        crl = x509.load_pem_x509_crl(ca.build_crl([], now=now))
        return crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number

    assert number(NOW + timedelta(seconds=1)) > number(NOW)


def test_server_cert_for_brokers_that_dial_each_other_also_authenticates_clients(
    ca: ClusterCA,
) -> None:
    cert = load_cert(ca.issue_server_cert(new_private_key(), ["127.0.0.1"], client_auth=True))
    extended = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(extended) == [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
