import re
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from certs import (
    CertError,
    ClusterCA,
    ca_digest,
    cert_to_pem,
    key_to_pem,
    new_private_key,
    verify_ca_digest,
)
from certs.keys import public_key_der

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
CLUSTER = "k3v9x2m7q8w1e5r4t6y0u2i3o"


@pytest.fixture
def ca() -> ClusterCA:
    return ClusterCA.create(CLUSTER, now=NOW)


def test_create_makes_a_p256_self_signed_root_named_after_the_cluster(ca: ClusterCA) -> None:
    cert = ca.cert
    assert isinstance(ca.key.curve, ec.SECP256R1)
    assert cert.subject == cert.issuer
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == (
        f"shoal-ca-{CLUSTER}"
    )
    assert ca.cluster_id == CLUSTER
    cert.verify_directly_issued_by(cert)


def test_create_makes_a_ca_valid_for_20_years_that_can_only_sign_leaves(ca: ClusterCA) -> None:
    cert = ca.cert
    constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert constraints.critical
    assert constraints.value.ca
    assert constraints.value.path_length == 0
    assert usage.key_cert_sign
    assert usage.crl_sign
    assert not usage.digital_signature
    cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    lifetime = cert.not_valid_after_utc - NOW
    assert timedelta(days=20 * 365) <= lifetime <= timedelta(days=20 * 366)


def test_create_refuses_a_cluster_id_unsafe_for_topics() -> None:
    with pytest.raises(CertError, match=r"cluster id 'my\.cluster' is not valid"):
        ClusterCA.create("my.cluster")


def test_create_refuses_a_naive_now() -> None:
    with pytest.raises(CertError, match="timezone-aware"):
        ClusterCA.create(CLUSTER, now=datetime(2026, 3, 1))


def test_digest_is_the_sha256_of_the_ca_certificate(ca: ClusterCA) -> None:
    assert ca.digest == ca_digest(ca.cert_pem)
    assert len(ca.digest) == 64
    assert ca.digest == ca.digest.lower()


def test_ca_digest_covers_every_certificate_of_a_bundle(ca: ClusterCA) -> None:
    other = ClusterCA.create("other-cluster", now=NOW)
    bundle = ca.cert_pem + other.cert_pem
    assert ca_digest(bundle) not in (ca.digest, other.digest)
    assert ca_digest(bundle) != ca_digest(other.cert_pem + ca.cert_pem)


def test_verify_ca_digest_accepts_the_pinned_ca_and_nothing_else(ca: ClusterCA) -> None:
    other = ClusterCA.create(CLUSTER, now=NOW)
    assert verify_ca_digest(ca.cert_pem, ca.digest)
    assert not verify_ca_digest(other.cert_pem, ca.digest)
    assert not verify_ca_digest(b"not a certificate", ca.digest)
    assert not verify_ca_digest(ca.cert_pem, "ü" * 64)


def test_save_then_load_gives_the_same_ca(ca: ClusterCA, tmp_path: Path) -> None:
    ca.save(tmp_path / "ca")
    loaded = ClusterCA.load(tmp_path / "ca")
    assert loaded.cert == ca.cert
    assert loaded.digest == ca.digest
    assert loaded.cluster_id == CLUSTER
    assert public_key_der(loaded.key) == public_key_der(ca.key)


def test_save_writes_the_key_0600_and_the_certificate_0644(ca: ClusterCA, tmp_path: Path) -> None:
    ca.save(tmp_path)
    assert stat.S_IMODE((tmp_path / "ca-key.pem").stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "ca.pem").stat().st_mode) == 0o644


def test_load_refuses_a_key_that_does_not_match_the_certificate(
    ca: ClusterCA, tmp_path: Path
) -> None:
    ca.save(tmp_path)
    (tmp_path / "ca-key.pem").write_bytes(key_to_pem(new_private_key()))
    with pytest.raises(CertError, match="does not match"):
        ClusterCA.load(tmp_path)


def test_load_names_the_missing_file(ca: ClusterCA, tmp_path: Path) -> None:
    ca.save(tmp_path)
    (tmp_path / "ca-key.pem").unlink()
    with pytest.raises(CertError, match=r"ca-key\.pem does not exist.*shoal swarm init"):
        ClusterCA.load(tmp_path)


@pytest.mark.parametrize("name", ["ca.pem", "ca-key.pem"])
def test_load_names_the_corrupt_file(ca: ClusterCA, tmp_path: Path, name: str) -> None:
    ca.save(tmp_path)
    (tmp_path / name).write_bytes(b"-----BEGIN garbage")
    with pytest.raises(CertError, match=re.escape(f"{tmp_path / name} is corrupt")):
        ClusterCA.load(tmp_path)


def test_a_leaf_certificate_cannot_be_loaded_as_a_ca(ca: ClusterCA, tmp_path: Path) -> None:
    from certs import Role, make_csr, new_node_id, write_private_key

    key = new_private_key()
    leaf = ca.issue(make_csr(key), node_id=new_node_id(), role=Role.WORKER, now=NOW)
    (tmp_path / "ca.pem").write_bytes(leaf)
    write_private_key(tmp_path / "ca-key.pem", key)
    with pytest.raises(CertError, match="not a CA certificate"):
        ClusterCA.load(tmp_path)


def test_cert_pem_is_the_certificate(ca: ClusterCA) -> None:
    assert ca.cert_pem == cert_to_pem(ca.cert)
