"""The node's copy of its assignments on disk, so it can bring its tasks back while offline.

Secrets are kept as they arrived, sealed to this node's key; configs are kept in clear.
"""

from __future__ import annotations

import logging
import os
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import msgpack

from agent.model import Assignment, AssignmentError, ConfigBlob, SecretBlob
from agent.model.errors import WorkerError

__all__ = [
    "ASSIGNMENTS_FILE",
    "Saved",
    "load_assignments",
    "load_saved",
    "save_assignments",
    "write_atomic",
]

log = logging.getLogger("shoal.worker.store")

ASSIGNMENTS_FILE = "assignments.msgpack"
_FORMAT = 1
_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class Saved:
    """What :func:`load_saved` found: the assignments with the secrets and configs they use."""

    assignments: list[Assignment]
    secrets: list[SecretBlob]
    configs: list[ConfigBlob]


def write_atomic(path: Path, data: bytes, *, fsync: bool = True) -> None:
    """Replace ``path`` so that readers, even after a reboot, see the old content or the new."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
        if fsync:
            fd = os.open(path.parent, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise WorkerError(
            f"cannot write {path}: {exc.strerror or exc}; check that {path.parent} exists and "
            "is writable by shoal's agent"
        ) from exc


def save_assignments(
    state_dir: Path,
    assignments: Iterable[Assignment],
    *,
    secrets: Iterable[SecretBlob] = (),
    configs: Iterable[ConfigBlob] = (),
) -> None:
    body = {
        "format": _FORMAT,
        "assignments": [a.to_dict() for a in assignments],
        "secrets": [s.to_dict() for s in secrets],
        "configs": [c.to_dict() for c in configs],
    }
    try:
        state_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise WorkerError(f"cannot create shoal's state directory {state_dir}: {exc}") from exc
    write_atomic(state_dir / ASSIGNMENTS_FILE, msgpack.packb(body, use_bin_type=True))


def load_assignments(state_dir: Path) -> list[Assignment]:
    return load_saved(state_dir).assignments


def load_saved(state_dir: Path) -> Saved:
    """The last saved set; a damaged file or entry is logged and skipped, never fatal."""
    nothing = Saved([], [], [])
    path = state_dir / ASSIGNMENTS_FILE
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return nothing
    except OSError as exc:
        log.error("cannot read %s: %s; starting with no assignments", path, exc)
        return nothing
    try:
        body = msgpack.unpackb(raw, raw=False, strict_map_key=False)
    except Exception as exc:  # msgpack raises several unrelated types on bad bytes
        log.error("%s is damaged (%s); starting with no assignments", path, exc)
        return nothing
    if not isinstance(body, dict) or body.get("format") != _FORMAT:
        log.error("%s has an unknown format; starting with no assignments", path)
        return nothing
    if not isinstance(body.get("assignments"), list):
        log.error("%s holds no assignment list; starting with no assignments", path)
        return nothing
    return Saved(
        _entries(path, body, "assignments", Assignment.from_dict),
        _entries(path, body, "secrets", SecretBlob.from_dict),
        _entries(path, body, "configs", ConfigBlob.from_dict),
    )


def _entries(
    path: Path, body: dict[object, object], key: str, parse: Callable[[object], _T]
) -> list[_T]:
    entries = body.get(key) or []
    if not isinstance(entries, list):
        log.error("%s: %s is not a list; ignoring it", path, key)
        return []
    out: list[_T] = []
    for i, entry in enumerate(entries):
        try:
            out.append(parse(entry))
        except AssignmentError as exc:
            log.error("%s: %s entry %d skipped: %s", path, key, i, exc)
    return out
