"""shoal's cluster PKI: the CA, node identities, join tokens, renewal, sealing and autolock."""

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
