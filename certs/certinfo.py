"""What a node needs to know about its own certificate, read without `cryptography`.

The node daemon schedules renewals and reports its identity from this at idle; loading
`cryptography` would add several MB to every edge device's agent. Python's `ssl` module parses
the certificate (the same parser that checks it during the TLS handshake).
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from .errors import CertError

__all__ = ["CertInfo", "read_cert_info"]


@dataclass(frozen=True, slots=True)
class CertInfo:
    node_id: str
    role: str  # the OU: shoal-manager, shoal-worker, ...
    cluster_id: str
    serial: int
    not_before: datetime
    not_after: datetime


def _name(rdns: object) -> dict[str, str]:
    out: dict[str, str] = {}
    for rdn in rdns if isinstance(rdns, tuple) else ():
        for key, value in rdn:
            out[key] = value
    return out


def read_cert_info(path: Path) -> CertInfo:
    try:
        decoded = ssl._ssl._test_decode_cert(str(path))  # type: ignore[attr-defined]
    except (ssl.SSLError, OSError) as exc:
        raise CertError(f"cannot read the certificate {path}: {exc}") from None
    subject = _name(decoded.get("subject"))
    try:
        return CertInfo(
            node_id=subject["commonName"],
            role=subject.get("organizationalUnitName", ""),
            cluster_id=subject.get("organizationName", ""),
            serial=int(decoded["serialNumber"], 16),
            not_before=datetime.fromtimestamp(ssl.cert_time_to_seconds(decoded["notBefore"]), UTC),
            not_after=datetime.fromtimestamp(ssl.cert_time_to_seconds(decoded["notAfter"]), UTC),
        )
    except (KeyError, ValueError) as exc:
        raise CertError(f"the certificate {path} lacks {exc}") from None
