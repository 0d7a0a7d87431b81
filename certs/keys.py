"""Private keys, CSRs and certificates as PEM, and files written atomically.

Every key in shoal is ECDSA P-256: small enough for constrained devices, supported by every
TLS stack a broker runs, and usable for ECDH so a node's key can also receive sealed secrets.
"""

from __future__ import annotations

from pathlib import Path

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from .errors import CertError
from .files import write_file_atomic


def new_private_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def key_to_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    """PKCS#8 PEM, unencrypted: protect the file with its mode (see `write_private_key`)."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def load_private_key(pem: bytes) -> ec.EllipticCurvePrivateKey:
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except TypeError:
        raise CertError(
            "private key is encrypted with a passphrase; shoal needs an unencrypted "
            "PKCS#8 key protected by file mode 0600"
        ) from None
    except (ValueError, UnsupportedAlgorithm):
        raise CertError(
            "not a valid PEM private key (expected a '-----BEGIN PRIVATE KEY-----' block)"
        ) from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        raise CertError(
            "private key is not an ECDSA P-256 key; shoal uses P-256 keys only "
            "(generate one with `openssl ecparam -name prime256v1 -genkey`)"
        )
    return key


def write_private_key(path: Path | str, key: ec.EllipticCurvePrivateKey) -> None:
    write_file_atomic(path, key_to_pem(key), mode=0o600)


def make_csr(key: ec.EllipticCurvePrivateKey, common_name: str = "shoal-node") -> bytes:
    """A PEM CSR proving possession of `key`. The CA ignores its subject: it assigns identity."""
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .sign(key, hashes.SHA256())
    )
    return csr.public_bytes(serialization.Encoding.PEM)


def load_cert(pem: bytes) -> x509.Certificate:
    """The first certificate of a PEM bundle."""
    return load_certs(pem)[0]


def load_certs(pem: bytes) -> list[x509.Certificate]:
    try:
        certs = x509.load_pem_x509_certificates(pem)
    except (ValueError, TypeError):
        certs = []
    if not certs:
        raise CertError(
            "not a valid PEM certificate (expected a '-----BEGIN CERTIFICATE-----' block)"
        )
    return certs


def cert_to_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def public_key_der(key: ec.EllipticCurvePublicKey | ec.EllipticCurvePrivateKey) -> bytes:
    """SubjectPublicKeyInfo DER, for comparing keys."""
    public = key.public_key() if isinstance(key, ec.EllipticCurvePrivateKey) else key
    return public.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
