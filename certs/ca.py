"""The cluster CA: a self-signed ECDSA P-256 root that assigns every identity in a cluster.

The CA ignores everything a CSR claims except its public key: the subject it writes is
CN = node id, OU = role, O = cluster id, chosen by the manager that approved the join.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from pathlib import Path
from typing import TypeVar

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ._time import format_utc, resolve_now, to_utc
from .errors import CertError
from .identity import Role, check_id_for_role, is_valid_id
from .keys import (
    cert_to_pem,
    load_cert,
    load_private_key,
    new_private_key,
    public_key_der,
    write_file_atomic,
    write_private_key,
)
from .verify import ca_digest, verify_ca_digest, verify_issued

__all__ = [
    "CA_CERT_FILE",
    "CA_KEY_FILE",
    "CLOCK_SKEW",
    "ClusterCA",
    "ca_digest",
    "verify_ca_digest",
    "verify_issued",
]

T = TypeVar("T")

CA_CERT_FILE = "ca.pem"
CA_KEY_FILE = "ca-key.pem"
CA_LIFETIME = timedelta(days=20 * 365 + 5)
LEAF_LIFETIME = timedelta(days=90)
SERVER_LIFETIME = timedelta(days=825)
CLOCK_SKEW = timedelta(minutes=5)
"""Certificates start this long before they are issued, so a node whose clock is a little
behind the manager's can use its certificate at once."""

_MAX_NAME_LENGTH = 64  # X.520 upper bound for CN, O and OU


class ClusterCA:
    """The cluster's root certificate with its private key.

    Build one with `create` (at `shoal swarm init`) or `load` (from a manager's state
    directory); the constructor checks that the key belongs to the certificate.
    """

    def __init__(self, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> None:
        if public_key_der(key) != public_key_der(_ec_public_key(cert, "CA certificate")):
            raise CertError("CA private key does not match the CA certificate")
        try:
            constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
        except x509.ExtensionNotFound:
            constraints = None
        if constraints is None or not constraints.ca:
            raise CertError("certificate is not a CA certificate (BasicConstraints CA is not set)")
        organizations = cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
        cluster_id = organizations[0].value if organizations else None
        if not isinstance(cluster_id, str) or not is_valid_id(cluster_id):
            raise CertError("CA certificate has no valid cluster id in its O attribute")
        self.cert = cert
        self.key = key
        self.cluster_id: str = cluster_id
        self.cert_pem = cert_to_pem(cert)
        self.digest = ca_digest(self.cert_pem)

    def __repr__(self) -> str:
        return f"ClusterCA(cluster_id={self.cluster_id!r}, digest={self.digest[:12]}...)"

    @classmethod
    def create(cls, cluster_id: str, *, now: datetime | None = None) -> ClusterCA:
        if not is_valid_id(cluster_id):
            raise CertError(
                f"cluster id {cluster_id!r} is not valid: use 5 to 64 characters from "
                "0-9, a-z and '-' (new_cluster_id() makes one)"
            )
        moment = resolve_now(now)
        key = new_private_key()
        name = x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, cluster_id),
                x509.NameAttribute(
                    NameOID.COMMON_NAME, f"shoal-ca-{cluster_id}"[:_MAX_NAME_LENGTH]
                ),
            ]
        )
        ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(moment - CLOCK_SKEW)
            .not_valid_after(moment + CA_LIFETIME)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=False,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(ski, critical=False)
            .sign(key, hashes.SHA256())
        )
        return cls(cert, key)

    @classmethod
    def load(cls, directory: Path) -> ClusterCA:
        cert_path = Path(directory) / CA_CERT_FILE
        key_path = Path(directory) / CA_KEY_FILE
        cert = _read_and_parse(cert_path, load_cert)
        key = _read_and_parse(key_path, load_private_key)
        try:
            return cls(cert, key)
        except CertError as exc:
            raise CertError(
                f"{key_path} and {cert_path} do not form a cluster CA: {exc}; restore both "
                "files from the same backup"
            ) from None

    def save(self, directory: Path) -> None:
        """Write `ca.pem` (0644) and `ca-key.pem` (0600), creating `directory` (0700)."""
        target = Path(directory)
        try:
            target.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise CertError(f"cannot create {target}: {exc.strerror or exc}") from exc
        write_private_key(target / CA_KEY_FILE, self.key)
        write_file_atomic(target / CA_CERT_FILE, self.cert_pem, mode=0o644)

    def issue(
        self,
        csr_pem: bytes,
        *,
        node_id: str,
        role: Role,
        lifetime: timedelta = LEAF_LIFETIME,
        now: datetime | None = None,
        not_before: datetime | None = None,
        not_after: datetime | None = None,
    ) -> bytes:
        """Sign the CSR's public key into a client certificate for `node_id` in `role`.

        The CSR's subject and extensions are ignored. Validity runs from `now - CLOCK_SKEW`
        to `now + lifetime`, never past the CA's own expiry; `not_before`/`not_after`
        override either end (tests use them to build expired certificates).
        """
        check_id_for_role(node_id, role)
        public_key = _csr_public_key(csr_pem)
        start, end = self._validity(lifetime, now, not_before, not_after)
        subject = x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, self.cluster_id),
                x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, role.value),
                x509.NameAttribute(NameOID.COMMON_NAME, node_id),
            ]
        )
        builder = self._leaf_builder(subject, public_key, start, end).add_extension(
            _key_usage(key_agreement=True), critical=True
        )
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
        )
        return cert_to_pem(builder.sign(self.key, hashes.SHA256()))

    def issue_server_cert(
        self,
        key: ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey,
        hosts: list[str],
        *,
        lifetime: timedelta = SERVER_LIFETIME,
        now: datetime | None = None,
        client_auth: bool = False,
    ) -> bytes:
        """A TLS server certificate for the broker, valid for every name and IP in `hosts`.

        `client_auth` adds the client authentication usage, for brokers that also dial each
        other over mutual TLS (the routes of a NATS cluster)."""
        if not hosts:
            raise CertError("a server certificate needs at least one host name or IP address")
        sans: list[x509.GeneralName] = []
        for host in hosts:
            host = host.strip() if isinstance(host, str) else ""
            if not host or not host.isascii() or " " in host or len(host) > 253:
                raise CertError(
                    f"{host!r} is not a host name or IP address for the broker certificate"
                )
            try:
                sans.append(x509.IPAddress(ipaddress.ip_address(host)))
            except ValueError:
                sans.append(x509.DNSName(host.lower()))
        common_name = hosts[0].strip()
        if len(common_name) > _MAX_NAME_LENGTH:
            raise CertError(
                f"the first host {common_name!r} is longer than {_MAX_NAME_LENGTH} characters "
                "and cannot be the certificate's CN; list a shorter name first"
            )
        public_key = key.public_key() if isinstance(key, ec.EllipticCurvePrivateKey) else key
        start, end = self._validity(lifetime, now, None, None)
        usages = [ExtendedKeyUsageOID.SERVER_AUTH]
        if client_auth:
            usages.append(ExtendedKeyUsageOID.CLIENT_AUTH)
        subject = x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, self.cluster_id),
                x509.NameAttribute(NameOID.COMMON_NAME, common_name),
            ]
        )
        builder = (
            self._leaf_builder(subject, public_key, start, end)
            .add_extension(_key_usage(key_agreement=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        )
        return cert_to_pem(builder.sign(self.key, hashes.SHA256()))

    def build_crl(
        self,
        revoked: Iterable[tuple[int, datetime]],
        *,
        now: datetime | None = None,
        next_update: timedelta = timedelta(days=7),
    ) -> bytes:
        """A PEM CRL of (serial, revocation time) pairs; an empty CRL is valid.

        The CRL number is the issue time in seconds, so later CRLs have larger numbers.
        """
        moment = resolve_now(now)
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(self.cert.subject)
            .last_update(moment)
            .next_update(moment + next_update)
            .add_extension(x509.CRLNumber(int(moment.timestamp())), critical=False)
            .add_extension(self._authority_key_identifier(), critical=False)
        )
        for serial, revoked_at in revoked:
            entry = (
                x509.RevokedCertificateBuilder()
                .serial_number(serial)
                .revocation_date(to_utc(revoked_at, "revocation time"))
                .build()
            )
            builder = builder.add_revoked_certificate(entry)
        crl = builder.sign(self.key, hashes.SHA256())
        return crl.public_bytes(serialization.Encoding.PEM)

    def _validity(
        self,
        lifetime: timedelta,
        now: datetime | None,
        not_before: datetime | None,
        not_after: datetime | None,
    ) -> tuple[datetime, datetime]:
        moment = resolve_now(now)
        start = moment - CLOCK_SKEW if not_before is None else to_utc(not_before, "not_before")
        if not_after is None:
            end = min(moment + lifetime, self.cert.not_valid_after_utc)
        else:
            end = to_utc(not_after, "not_after")
        if end <= start:
            raise CertError(
                f"certificate would expire ({format_utc(end)}) before it starts "
                f"({format_utc(start)}); check the lifetime and the CA's expiry"
            )
        return start, end

    def _authority_key_identifier(self) -> x509.AuthorityKeyIdentifier:
        try:
            ski = self.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        except x509.ExtensionNotFound:
            return x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key())
        return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)

    def _leaf_builder(
        self,
        subject: x509.Name,
        public_key: ec.EllipticCurvePublicKey,
        start: datetime,
        end: datetime,
    ) -> x509.CertificateBuilder:
        return (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self.cert.subject)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(end)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
            .add_extension(self._authority_key_identifier(), critical=False)
        )


def _key_usage(*, key_agreement: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=key_agreement,
        key_cert_sign=False,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )


def _csr_public_key(csr_pem: bytes) -> ec.EllipticCurvePublicKey:
    try:
        csr = x509.load_pem_x509_csr(csr_pem)
    except (ValueError, TypeError):
        raise CertError(
            "not a valid PEM certificate signing request (expected a "
            "'-----BEGIN CERTIFICATE REQUEST-----' block)"
        ) from None
    try:
        signature_ok = csr.is_signature_valid
        public_key = csr.public_key()
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise CertError("CSR uses an unsupported key or signature algorithm") from None
    if not signature_ok:
        raise CertError("CSR signature is invalid; generate a new key and CSR and try again")
    if not isinstance(public_key, ec.EllipticCurvePublicKey) or not isinstance(
        public_key.curve, ec.SECP256R1
    ):
        kind = type(public_key).__name__.removeprefix("_").replace("PublicKey", "")
        curve = getattr(public_key, "curve", None)
        detail = f"{kind} {curve.name}" if curve is not None else kind
        raise CertError(
            f"CSR key is {detail}, but shoal certificates need an ECDSA P-256 (prime256v1) "
            "key; generate one with certs.new_private_key()"
        )
    return public_key


def _ec_public_key(cert: x509.Certificate, label: str) -> ec.EllipticCurvePublicKey:
    try:
        key = cert.public_key()
    except (ValueError, UnsupportedAlgorithm):
        key = None
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise CertError(f"{label} does not hold an EC public key")
    return key


def _read_and_parse(path: Path, parse: Callable[[bytes], T]) -> T:
    """Read a CA file and parse it, naming the file in every error."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise CertError(
            f"{path} does not exist; run `shoal swarm init` to create a cluster CA, "
            "or point shoal at the directory that holds ca.pem and ca-key.pem"
        ) from None
    except PermissionError:
        raise CertError(
            f"cannot read {path}: permission denied; run shoal as the user that owns it"
        ) from None
    except OSError as exc:
        raise CertError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        return parse(data)
    except CertError as exc:
        raise CertError(f"{path} is corrupt: {exc}; restore it from a backup") from None
