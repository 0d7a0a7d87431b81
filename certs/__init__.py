"""shoal's cluster PKI: the CA, node identities, join tokens, renewal, sealing and autolock.

Names are loaded on first use (PEP 562), so a node daemon that only needs `certs.files` or
`certs.certinfo` never loads `cryptography` at idle.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_WHERE = {
    "CA_CERT_FILE": "ca",
    "CA_KEY_FILE": "ca",
    "CLOCK_SKEW": "ca",
    "CertError": "errors",
    "ClusterCA": "ca",
    "Identity": "identity",
    "JoinToken": "tokens",
    "Role": "identity",
    "SealError": "errors",
    "TokenError": "errors",
    "ca_digest": "verify",
    "cert_to_pem": "keys",
    "check_id_for_role": "identity",
    "is_valid_id": "identity",
    "key_to_pem": "keys",
    "load_cert": "keys",
    "load_certs": "keys",
    "load_private_key": "keys",
    "make_csr": "keys",
    "needs_renewal": "renewal",
    "new_admin_id": "identity",
    "new_cluster_id": "identity",
    "new_data_key": "keywrap",
    "new_monitor_id": "identity",
    "new_node_id": "identity",
    "new_private_key": "keys",
    "new_unlock_key": "keywrap",
    "parse_unlock_key": "keywrap",
    "renewal_time": "renewal",
    "seal": "seal",
    "unseal": "seal",
    "unwrap_key": "keywrap",
    "verify_ca_digest": "verify",
    "verify_issued": "verify",
    "wrap_key": "keywrap",
    "write_file_atomic": "files",
    "write_private_key": "keys",
}

if TYPE_CHECKING:
    from .ca import CA_CERT_FILE, CA_KEY_FILE, CLOCK_SKEW, ClusterCA
    from .errors import CertError, SealError, TokenError
    from .identity import (
        Identity,
        Role,
        check_id_for_role,
        is_valid_id,
        new_admin_id,
        new_cluster_id,
        new_monitor_id,
        new_node_id,
    )
    from .keys import (
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
    from .keywrap import new_data_key, new_unlock_key, parse_unlock_key, unwrap_key, wrap_key
    from .renewal import needs_renewal, renewal_time
    from .seal import seal, unseal
    from .tokens import JoinToken
    from .verify import ca_digest, verify_ca_digest, verify_issued

__all__ = [
    "CA_CERT_FILE",
    "CA_KEY_FILE",
    "CLOCK_SKEW",
    "CertError",
    "ClusterCA",
    "Identity",
    "JoinToken",
    "Role",
    "SealError",
    "TokenError",
    "ca_digest",
    "cert_to_pem",
    "check_id_for_role",
    "is_valid_id",
    "key_to_pem",
    "load_cert",
    "load_certs",
    "load_private_key",
    "make_csr",
    "needs_renewal",
    "new_admin_id",
    "new_cluster_id",
    "new_data_key",
    "new_monitor_id",
    "new_node_id",
    "new_private_key",
    "new_unlock_key",
    "parse_unlock_key",
    "renewal_time",
    "seal",
    "unseal",
    "unwrap_key",
    "verify_ca_digest",
    "verify_issued",
    "wrap_key",
    "write_file_atomic",
    "write_private_key",
]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'certs' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value
