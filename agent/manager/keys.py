"""The manager's data key at rest, and autolock.

The data key encrypts the manager's raft log and snapshots (`DiskStorage`). It is kept in one
file, written atomically with mode 0600, in one of two forms (JSON)::

    {"version": 1, "locked": false, "key": "<base64 data key>"}      autolock off
    {"version": 1, "locked": true, "wrapped": "<base64 blob>"}      autolock on

With autolock on, the key is wrapped with the swarm's unlock key (`certs.wrap_key`), which is
never stored: a restarted manager stays locked until an operator gives the unlock key.
`swarm update --autolock=true|false` and `swarm unlock-key --rotate` are `rewrap` calls.
"""

from __future__ import annotations

import base64
import binascii
import json
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric import ec

from agent.model.errors import ShoalError
from certs import CertError, new_data_key, unwrap_key, wrap_key, write_file_atomic

__all__ = ["DataKeyError", "DataKeyFile", "LockedError"]

_VERSION = 1
_KEY_BYTES = 32


class DataKeyError(ShoalError):
    """The data key file is missing, damaged or cannot be written, or an unlock key is wrong."""


class LockedError(DataKeyError):
    """The manager is locked (autolock): its data key needs the swarm's unlock key."""


class DataKeyFile:
    """The file holding a manager's data key, plain or wrapped with an unlock key."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)

    def exists(self) -> bool:
        return self.path.exists()

    def create(self, unlock_key: str | None) -> bytes:
        """A new data key, stored plain (`unlock_key` None) or wrapped with `unlock_key`.

        Refuses to replace an existing key: the raft state encrypted with it would be lost.
        """
        if self.path.exists():
            raise DataKeyError(
                f"{self.path} already holds a data key; replacing it would make this "
                "manager's raft state unreadable"
            )
        data_key = new_data_key()
        self._write(data_key, unlock_key)
        return data_key

    def load(self, unlock_key: str | None = None) -> bytes:
        """The data key. A plain key needs no unlock key (one given is not used)."""
        form, value = self._read()
        if form == "plain":
            return value
        if unlock_key is None:
            raise LockedError(
                "this manager is locked: start it with the swarm's unlock key "
                "(`shoal swarm unlock`), printed when autolock was turned on"
            )
        try:
            data_key = unwrap_key(value, unlock_key)
        except CertError as exc:
            raise DataKeyError(f"cannot unlock {self.path}: {exc}") from None
        return _check_key(data_key, self.path)

    def rewrap(self, old_unlock_key: str | None, new_unlock_key: str | None) -> None:
        """Store the same data key wrapped with `new_unlock_key`, or plain when it is None."""
        self._write(self.load(old_unlock_key), new_unlock_key)

    def is_locked(self) -> bool:
        return self._read()[0] == "wrapped"

    # ------------------------------------------------------------------ file format

    def _write(self, data_key: bytes, unlock_key: str | None) -> None:
        if unlock_key is None:
            obj: dict[str, object] = {"version": _VERSION, "locked": False, "key": _b64(data_key)}
        else:
            try:
                blob = wrap_key(data_key, unlock_key)
            except CertError as exc:
                raise DataKeyError(f"cannot lock {self.path}: {exc}") from None
            obj = {"version": _VERSION, "locked": True, "wrapped": _b64(blob)}
        try:
            write_file_atomic(self.path, json.dumps(obj).encode() + b"\n", mode=0o600)
        except CertError as exc:
            raise DataKeyError(str(exc)) from exc

    def _read(self) -> tuple[str, bytes]:
        try:
            text = self.path.read_bytes()
        except FileNotFoundError:
            raise DataKeyError(
                f"{self.path} is missing: this manager has no data key; restore it from a "
                "backup, or remove the manager from the swarm and join it again"
            ) from None
        except OSError as exc:
            raise DataKeyError(f"cannot read {self.path}: {exc.strerror or exc}") from exc
        try:
            obj = json.loads(text)
            if type(obj) is not dict or obj.get("version") != _VERSION:
                raise ValueError(f"unknown format version {obj.get('version')!r}")
            if obj.get("locked") is True:
                return "wrapped", base64.b64decode(obj["wrapped"], validate=True)
            if obj.get("locked") is False:
                return "plain", _check_key(base64.b64decode(obj["key"], validate=True), self.path)
            raise ValueError("field 'locked' must be true or false")
        except (ValueError, KeyError, TypeError, AttributeError, binascii.Error) as exc:
            raise DataKeyError(
                f"{self.path} is damaged ({exc}); restore it from a backup"
            ) from None


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _check_key(data_key: bytes, path: Path) -> bytes:
    if len(data_key) != _KEY_BYTES:
        raise DataKeyError(f"{path} holds a {len(data_key)}-byte data key, not {_KEY_BYTES}")
    return data_key


def write_node_key(path: Path, key: ec.EllipticCurvePrivateKey, unlock_key: str | None) -> None:
    """A node's TLS key, encrypted with the unlock key when the swarm is autolocked."""
    from cryptography.hazmat.primitives import serialization

    if unlock_key is None:
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    else:
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(unlock_key.encode()),
        )
    write_file_atomic(path, pem, mode=0o600)


def read_node_key(path: Path, unlock_key: str | None) -> ec.EllipticCurvePrivateKey:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    try:
        key = serialization.load_pem_private_key(
            path.read_bytes(), password=unlock_key.encode() if unlock_key else None
        )
    except (ValueError, TypeError) as exc:
        raise DataKeyError(f"cannot read {path}: {exc}") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise DataKeyError(f"{path} does not hold an EC key")
    return key
