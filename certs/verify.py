"""Checks anyone can make with only the CA certificate: its digest, and who it issued."""

from __future__ import annotations

import hashlib
import hmac
from datetime import datetime

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

from ._time import format_utc, resolve_now
from .errors import CertError
from .identity import Identity
from .keys import load_certs


def ca_digest(ca_pem: bytes) -> str:
    """Lowercase hex SHA-256 over the DER of every certificate in the bundle, in order."""
    der = b"".join(cert.public_bytes(serialization.Encoding.DER) for cert in load_certs(ca_pem))
    return hashlib.sha256(der).hexdigest()


def verify_ca_digest(ca_pem: bytes, digest: str) -> bool:
    """True when `ca_pem` is the CA a join token pins; False for any mismatch or bad input."""
    try:
        actual = ca_digest(ca_pem)
    except CertError:
        return False
    if not isinstance(digest, str):
        return False
    return hmac.compare_digest(actual.encode(), digest.strip().lower().encode())


def verify_issued(
    ca_cert: x509.Certificate, leaf_cert: x509.Certificate, *, now: datetime | None = None
) -> Identity:
    """Check that `leaf_cert` was signed by `ca_cert` and is valid at `now`; return its Identity.

    Revocation is not checked here: the CRL is the broker's job and the store's.
    """
    moment = resolve_now(now)
    try:
        leaf_cert.verify_directly_issued_by(ca_cert)
    except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
        raise CertError(
            "certificate was not issued by this cluster's CA; the node must join this "
            "cluster again with a join token from one of its managers"
        ) from None
    try:
        constraints = leaf_cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        constraints = None
    if constraints is not None and constraints.ca:
        raise CertError("certificate is a CA certificate, not a node, admin or monitor one")
    if moment < leaf_cert.not_valid_before_utc:
        raise CertError(
            f"certificate is not valid until {format_utc(leaf_cert.not_valid_before_utc)}; "
            "check this machine's clock"
        )
    if moment > leaf_cert.not_valid_after_utc:
        raise CertError(
            f"certificate expired on {format_utc(leaf_cert.not_valid_after_utc)}; "
            "an expired certificate cannot be renewed, so join the cluster again with a "
            "fresh join token"
        )
    identity = Identity.from_cert(leaf_cert)
    ca_orgs = ca_cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
    if not ca_orgs or ca_orgs[0].value != identity.cluster_id:
        raise CertError(
            f"certificate names cluster {identity.cluster_id!r}, which is not this CA's cluster"
        )
    return identity
