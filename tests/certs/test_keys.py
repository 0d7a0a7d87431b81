import os
import re
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from certs import (
    CertError,
    cert_to_pem,
    key_to_pem,
    load_cert,
    load_certs,
    load_private_key,
    make_csr,
    new_private_key,
    write_file_atomic,
    write_private_key,
)
from certs.ca import ClusterCA
from certs.keys import public_key_der


def test_new_private_key_is_p256() -> None:
    key = new_private_key()
    assert isinstance(key.curve, ec.SECP256R1)


def test_private_key_survives_a_pem_round_trip() -> None:
    key = new_private_key()
    pem = key_to_pem(key)
    assert pem.startswith(b"-----BEGIN PRIVATE KEY-----")
    assert public_key_der(load_private_key(pem)) == public_key_der(key)


def test_load_private_key_says_what_is_wrong_with_garbage() -> None:
    with pytest.raises(CertError, match="not a valid PEM private key"):
        load_private_key(b"-----BEGIN PRIVATE KEY-----\nnope\n-----END PRIVATE KEY-----\n")


def test_load_private_key_refuses_a_key_that_is_not_p256() -> None:
    from cryptography.hazmat.primitives import serialization

    rsa_pem = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    with pytest.raises(CertError, match="not an ECDSA P-256 key"):
        load_private_key(rsa_pem)


def test_write_private_key_creates_the_file_with_mode_0600(tmp_path: Path) -> None:
    path = tmp_path / "node-key.pem"
    key = new_private_key()

    write_private_key(path, key)

    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert public_key_der(load_private_key(path.read_bytes())) == public_key_der(key)


def test_write_file_atomic_replaces_content_sets_mode_and_leaves_no_temp_files(
    tmp_path: Path,
) -> None:
    path = tmp_path / "ca.pem"
    path.write_bytes(b"old")
    old_umask = os.umask(0o077)
    try:
        write_file_atomic(path, b"new", mode=0o644)
    finally:
        os.umask(old_umask)
    assert path.read_bytes() == b"new"
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["ca.pem"]


def test_write_file_atomic_names_the_file_when_the_directory_is_missing(tmp_path: Path) -> None:
    path = tmp_path / "missing" / "ca.pem"
    with pytest.raises(CertError, match=re.escape(f"cannot write {path}")):
        write_file_atomic(path, b"data")


def test_make_csr_is_signed_by_the_key() -> None:
    key = new_private_key()
    csr = x509.load_pem_x509_csr(make_csr(key))
    public_key = csr.public_key()
    assert csr.is_signature_valid
    assert isinstance(public_key, ec.EllipticCurvePublicKey)
    assert public_key_der(public_key) == public_key_der(key)


def test_load_certs_reads_every_certificate_of_a_bundle() -> None:
    first = ClusterCA.create("cluster-one").cert
    second = ClusterCA.create("cluster-two").cert
    bundle = cert_to_pem(first) + cert_to_pem(second)

    assert load_certs(bundle) == [first, second]
    assert load_cert(bundle) == first


@pytest.mark.parametrize("pem", [b"", b"garbage", b"-----BEGIN CERTIFICATE-----\n-----END"])
def test_load_cert_refuses_input_without_a_certificate(pem: bytes) -> None:
    with pytest.raises(CertError, match="not a valid PEM certificate"):
        load_cert(pem)
