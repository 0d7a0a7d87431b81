"""Private keys, CSRs and certificates as PEM, and files written atomically.

Every key in shoal is ECDSA P-256: small enough for constrained devices, supported by every
TLS stack a broker runs, and usable for ECDH so a node's key can also receive sealed secrets.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from .errors import CertError


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


def write_file_atomic(path: Path | str, data: bytes, mode: int = 0o644) -> None:
    """Replace `path` with `data` so readers see the old file or the new one, never a mix.

    The file is created with `mode` from the start (a secret is never briefly world-readable),
    written, fsynced, renamed over `path`, and the directory entry is fsynced too.
    """
    target = Path(path)
    tmp = target.with_name(f".{target.name}.{secrets.token_hex(6)}.tmp")
    try:
        _write_new_file(tmp, data, mode)
        os.replace(tmp, target)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        reason = exc.strerror or str(exc)
        raise CertError(
            f"cannot write {target}: {reason}; check that {target.parent} exists and is "
            "writable by this user"
        ) from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_directory(target.parent)


def _write_new_file(path: Path, data: bytes, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        os.fchmod(fd, mode)  # the umask may have narrowed `mode`; set it exactly
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_directory(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return  # some platforms cannot open directories; the rename itself has happened
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


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
