"""Join tokens: `SHOAL-1-<ca digest>-<secret>`.

The digest pins the cluster CA (a joiner checks the broker's CA against it before sending
anything); the secret proves the joiner was given the token by an operator. The token does
not name a role: managers keep one secret per role and rotate them independently.
"""

from __future__ import annotations

import base64
import hmac
import random
import secrets
import string
from dataclasses import dataclass, field

from .errors import TokenError

TOKEN_PREFIX = "SHOAL"
TOKEN_VERSION = "1"
DIGEST_LENGTH = 64
SECRET_LENGTH = 32
SECRET_BYTES = 20
SECRET_ALPHABET = string.ascii_lowercase + "234567"
_HEX = frozenset("0123456789abcdef")
_SECRET_CHARS = frozenset(SECRET_ALPHABET)
_HINT = "ask a manager for a token with `shoal swarm join-token worker` (or `manager`)"


def _fail(problem: str) -> TokenError:
    return TokenError(f"{problem}; {_HINT}")


def _check_digest(digest: object) -> str:
    if not isinstance(digest, str):
        raise _fail("join token's CA digest must be text")
    if len(digest) != DIGEST_LENGTH or not _HEX.issuperset(digest):
        raise _fail(
            f"join token's CA digest must be {DIGEST_LENGTH} lowercase hex characters "
            f"(0-9, a-f), got {len(digest)} characters"
            + ("" if _HEX.issuperset(digest) else " including some that are not lowercase hex")
        )
    return digest


def _check_secret(secret: object) -> str:
    if not isinstance(secret, str):
        raise _fail("join token's secret must be text")
    if len(secret) != SECRET_LENGTH:
        raise _fail(f"join token's secret must be {SECRET_LENGTH} characters, got {len(secret)}")
    bad = sorted(set(secret) - _SECRET_CHARS)
    if bad:
        raise _fail(
            "join token's secret may only contain a-z and 2-7, but contains "
            + ", ".join(repr(char) for char in bad)
        )
    return secret


@dataclass(frozen=True)
class JoinToken:
    """A parsed join token. Its repr hides the secret; `str()` gives the full token."""

    ca_digest: str
    secret: str = field(repr=False)

    def __post_init__(self) -> None:
        _check_digest(self.ca_digest)
        _check_secret(self.secret)

    def __str__(self) -> str:
        return f"{TOKEN_PREFIX}-{TOKEN_VERSION}-{self.ca_digest}-{self.secret}"

    @classmethod
    def new(cls, ca_digest: str, rng: random.Random | None = None) -> JoinToken:
        """A token with a fresh 160-bit secret (from `secrets`, or `rng` in simulations)."""
        raw = secrets.token_bytes(SECRET_BYTES) if rng is None else rng.randbytes(SECRET_BYTES)
        secret = base64.b32encode(raw).decode("ascii").lower()
        return cls(ca_digest=ca_digest, secret=secret)

    @classmethod
    def parse(cls, text: str) -> JoinToken:
        """Parse a token; TokenError (and nothing else) for any malformed input.

        Error messages never repeat the token, which is a secret.
        """
        if not isinstance(text, str):
            raise _fail("join token must be text")
        text = text.strip()
        if not text:
            raise _fail("join token is empty")
        if not text.isascii():
            raise _fail("join token contains non-ASCII characters; copy it again exactly")
        parts = text.split("-")
        if parts[0] != TOKEN_PREFIX:
            raise _fail(f"join token must start with '{TOKEN_PREFIX}-'")
        if len(parts) < 2 or not parts[1]:
            raise _fail(f"join token has no version after '{TOKEN_PREFIX}-'")
        if parts[1] != TOKEN_VERSION:
            version = parts[1] if parts[1].isdigit() and len(parts[1]) < 10 else "?"
            raise _fail(
                f"join token version {version} is not supported: this shoal understands "
                f"version {TOKEN_VERSION} (SHOAL-1-...); upgrade shoal if the token is newer"
            )
        if len(parts) != 4:
            raise _fail(
                f"join token has {len(parts)} dash-separated parts, expected 4 "
                "(SHOAL-1-<ca digest>-<secret>)"
            )
        return cls(ca_digest=_check_digest(parts[2]), secret=_check_secret(parts[3]))

    def matches(self, other: JoinToken) -> bool:
        """Constant-time equality over both parts, for checking a presented token."""
        digest_ok = hmac.compare_digest(self.ca_digest.encode(), other.ca_digest.encode())
        secret_ok = hmac.compare_digest(self.secret.encode(), other.secret.encode())
        return digest_ok & secret_ok
