"""`python -m certs.keygen KEY_FILE`: a new node key written to KEY_FILE (mode 0600), and a
CSR for it on standard output. An optional first line on standard input is the password the
key is encrypted with (autolocked managers).

The node daemon renews its certificate through this, so the daemon itself never loads
`cryptography` (several MB that an idle edge agent should not carry).
"""

from __future__ import annotations

import sys
from pathlib import Path

from cryptography.hazmat.primitives import serialization

from .files import write_file_atomic
from .keys import make_csr, new_private_key


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m certs.keygen KEY_FILE", file=sys.stderr)
        return 2
    password = sys.stdin.readline().strip() if not sys.stdin.isatty() else ""
    key = new_private_key()
    encryption: serialization.KeySerializationEncryption = serialization.NoEncryption()
    if password:
        encryption = serialization.BestAvailableEncryption(password.encode())
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )
    write_file_atomic(Path(argv[0]), pem, 0o600)
    sys.stdout.write(make_csr(key).decode())
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
