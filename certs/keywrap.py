"""Autolock: the data-encryption key of a manager's state, wrapped with an unlock key.

The unlock key (`SHLKEY-1-<52 base32 characters>`) is shown to the operator once and never
stored; a locked manager asks for it at start. Wrapped blob (version 1):
`0x01 | salt (16) | key check (16) | nonce (12) | AES-256-GCM ciphertext and tag`.
The key check lets `unwrap_key` tell a wrong unlock key from a damaged blob.
"""

from __future__ import annotations

import base64
import hmac
import os
import secrets

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from .errors import CertError

UNLOCK_KEY_PREFIX = "SHLKEY-1-"
WRAP_VERSION = 1
DATA_KEY_BYTES = 32
_UNLOCK_KEY_BYTES = 32
_UNLOCK_KEY_CHARS = 52
_BASE32_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz234567")
_INFO = b"shoal-keywrap-v1"
_SALT_LENGTH = 16
_CHECK_LENGTH = 16
_NONCE_LENGTH = 12
_TAG_LENGTH = 16
_HEADER_LENGTH = 1 + _SALT_LENGTH + _CHECK_LENGTH
_MIN_LENGTH = _HEADER_LENGTH + _NONCE_LENGTH + _TAG_LENGTH
_UNLOCK_HINT = (
    "use the unlock key printed when autolock was turned on, or "
    "`shoal swarm unlock-key` on an unlocked manager"
)


def new_data_key() -> bytes:
    return secrets.token_bytes(DATA_KEY_BYTES)


def new_unlock_key() -> str:
    encoded = base64.b32encode(secrets.token_bytes(_UNLOCK_KEY_BYTES)).decode("ascii")
    return UNLOCK_KEY_PREFIX + encoded.rstrip("=").lower()


def parse_unlock_key(text: str) -> bytes:
    """The 32 key bytes of an unlock key; CertError saying what is wrong otherwise.

    Messages never repeat the key.
    """
    if not isinstance(text, str):
        raise CertError(f"unlock key must be text; {_UNLOCK_HINT}")
    text = text.strip()
    if not text.startswith(UNLOCK_KEY_PREFIX):
        raise CertError(f"unlock key must start with {UNLOCK_KEY_PREFIX!r}; {_UNLOCK_HINT}")
    body = text.removeprefix(UNLOCK_KEY_PREFIX)
    if len(body) != _UNLOCK_KEY_CHARS or not _BASE32_CHARS.issuperset(body):
        raise CertError(
            f"unlock key must be {UNLOCK_KEY_PREFIX!r} followed by {_UNLOCK_KEY_CHARS} "
            f"characters from a-z and 2-7 (got {len(body)} characters); {_UNLOCK_HINT}"
        )
    return base64.b32decode(body.upper() + "====")


def _derive(unlock_key: str, salt: bytes) -> tuple[bytes, bytes]:
    material = HKDF(algorithm=hashes.SHA256(), length=64, salt=salt, info=_INFO).derive(
        parse_unlock_key(unlock_key)
    )
    return material[:32], material[32 : 32 + _CHECK_LENGTH]


def wrap_key(data_key: bytes, unlock_key: str) -> bytes:
    if not data_key:
        raise CertError("the data key to wrap is empty")
    salt = os.urandom(_SALT_LENGTH)
    key, check = _derive(unlock_key, salt)
    header = bytes([WRAP_VERSION]) + salt + check
    nonce = os.urandom(_NONCE_LENGTH)
    return header + nonce + AESGCM(key).encrypt(nonce, bytes(data_key), header)


def unwrap_key(blob: bytes, unlock_key: str) -> bytes:
    """The data key inside `blob`; CertError("unlock key is wrong") for another unlock key."""
    if not isinstance(blob, bytes | bytearray | memoryview):
        raise CertError("wrapped key must be bytes")
    data = bytes(blob)
    if len(data) < _MIN_LENGTH:
        raise CertError(
            f"wrapped key is corrupt: {len(data)} bytes, at least {_MIN_LENGTH} expected; "
            "restore the manager's state from a backup"
        )
    if data[0] != WRAP_VERSION:
        raise CertError(
            f"wrapped key has format version {data[0]}; this shoal understands version "
            f"{WRAP_VERSION}, so upgrade it or restore the state from a backup"
        )
    header = data[:_HEADER_LENGTH]
    salt = data[1 : 1 + _SALT_LENGTH]
    stored_check = data[1 + _SALT_LENGTH : _HEADER_LENGTH]
    nonce = data[_HEADER_LENGTH : _HEADER_LENGTH + _NONCE_LENGTH]
    ciphertext = data[_HEADER_LENGTH + _NONCE_LENGTH :]
    key, check = _derive(unlock_key, salt)
    if not hmac.compare_digest(check, stored_check):
        raise CertError(f"unlock key is wrong; {_UNLOCK_HINT}")
    try:
        return AESGCM(key).decrypt(nonce, ciphertext, header)
    except InvalidTag:
        raise CertError(
            "wrapped key is corrupt: it fails its integrity check; restore the manager's "
            "state from a backup"
        ) from None
