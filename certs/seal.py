"""Secrets sealed to one node's key (ECIES over P-256), so only that node can open them.

Format (version 1): `0x01 | ephemeral public point (65 bytes, uncompressed) | nonce (12) |
AES-256-GCM ciphertext and tag`. The key is HKDF-SHA256 over the ECDH shared secret with
info `b"shoal-seal-v1" + context`. The additional authenticated data is the header (version
byte and ephemeral point) followed by `context`: binding the point stops anyone from swapping
it for its negation, which would give the same shared secret.
"""

from __future__ import annotations

import os

from cryptography import x509
from cryptography.exceptions import InvalidTag, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from .errors import SealError

SEAL_VERSION = 1
SEAL_INFO = b"shoal-seal-v1"
_POINT_LENGTH = 65
_NONCE_LENGTH = 12
_TAG_LENGTH = 16
_HEADER_LENGTH = 1 + _POINT_LENGTH
_MIN_LENGTH = _HEADER_LENGTH + _NONCE_LENGTH + _TAG_LENGTH


def _derive_key(shared_secret: bytes, context: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=SEAL_INFO + context).derive(
        shared_secret
    )


def _recipient_key(
    recipient: ec.EllipticCurvePublicKey | x509.Certificate,
) -> ec.EllipticCurvePublicKey:
    if isinstance(recipient, x509.Certificate):
        try:
            key: object = recipient.public_key()
        except (ValueError, UnsupportedAlgorithm):
            key = None
    else:
        key = recipient
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise SealError("can only seal to an ECDSA P-256 key or a certificate holding one")
    return key


def seal(
    recipient: ec.EllipticCurvePublicKey | x509.Certificate,
    plaintext: bytes,
    *,
    context: bytes = b"",
) -> bytes:
    """Encrypt `plaintext` so only the holder of `recipient`'s private key can read it.

    `context` (for example a secret's id and the node id) must be given again to `unseal`.
    """
    public_key = _recipient_key(recipient)
    ephemeral = ec.generate_private_key(ec.SECP256R1())
    key = _derive_key(ephemeral.exchange(ec.ECDH(), public_key), context)
    header = bytes([SEAL_VERSION]) + ephemeral.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    nonce = os.urandom(_NONCE_LENGTH)
    return header + nonce + AESGCM(key).encrypt(nonce, bytes(plaintext), header + context)


def unseal(private_key: ec.EllipticCurvePrivateKey, blob: bytes, *, context: bytes = b"") -> bytes:
    """Open a sealed blob; SealError (and nothing else) when it cannot be opened."""
    if not isinstance(blob, bytes | bytearray | memoryview):
        raise SealError("sealed secret must be bytes")
    data = bytes(blob)
    if len(data) < _MIN_LENGTH:
        raise SealError(
            f"sealed secret is truncated: {len(data)} bytes, at least {_MIN_LENGTH} expected"
        )
    if data[0] != SEAL_VERSION:
        raise SealError(
            f"sealed secret has format version {data[0]}; this shoal understands version "
            f"{SEAL_VERSION}, so upgrade it"
        )
    header = data[:_HEADER_LENGTH]
    point = data[1:_HEADER_LENGTH]
    nonce = data[_HEADER_LENGTH : _HEADER_LENGTH + _NONCE_LENGTH]
    ciphertext = data[_HEADER_LENGTH + _NONCE_LENGTH :]
    if point[0] != 0x04:
        raise SealError("sealed secret is corrupt: its ephemeral key is not an uncompressed point")
    try:
        ephemeral = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), point)
    except ValueError:
        raise SealError("sealed secret is corrupt: its ephemeral key is not on P-256") from None
    try:
        shared_secret = private_key.exchange(ec.ECDH(), ephemeral)
        key = _derive_key(shared_secret, bytes(context))
        return AESGCM(key).decrypt(nonce, ciphertext, header + bytes(context))
    except InvalidTag:
        raise SealError(
            "cannot open sealed secret: it was sealed to another key or for another context, "
            "or it was altered in transit"
        ) from None
    except (ValueError, TypeError, AttributeError, UnsupportedAlgorithm) as exc:
        raise SealError(f"cannot open sealed secret with this key: {exc}") from None
