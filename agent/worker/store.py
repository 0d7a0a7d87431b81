"""The node's copy of its assignments on disk, so it can bring its tasks back while offline."""

from __future__ import annotations

import logging
import os
import secrets
from collections.abc import Iterable
from pathlib import Path

import msgpack

from agent.worker.errors import AssignmentError, WorkerError
from agent.worker.model import Assignment

__all__ = ["ASSIGNMENTS_FILE", "load_assignments", "save_assignments", "write_atomic"]

log = logging.getLogger("shoal.worker.store")

ASSIGNMENTS_FILE = "assignments.msgpack"
_FORMAT = 1


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


def save_assignments(state_dir: Path, assignments: Iterable[Assignment]) -> None:
    body = {"format": _FORMAT, "assignments": [a.to_dict() for a in assignments]}
    try:
        state_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise WorkerError(f"cannot create shoal's state directory {state_dir}: {exc}") from exc
    write_atomic(state_dir / ASSIGNMENTS_FILE, msgpack.packb(body, use_bin_type=True))


def load_assignments(state_dir: Path) -> list[Assignment]:
    """The last saved set; a damaged file or entry is logged and skipped, never fatal."""
    path = state_dir / ASSIGNMENTS_FILE
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return []
    except OSError as exc:
        log.error("cannot read %s: %s; starting with no assignments", path, exc)
        return []
    try:
        body = msgpack.unpackb(raw, raw=False, strict_map_key=False)
    except Exception as exc:  # msgpack raises several unrelated types on bad bytes
        log.error("%s is damaged (%s); starting with no assignments", path, exc)
        return []
    if not isinstance(body, dict) or body.get("format") != _FORMAT:
        log.error("%s has an unknown format; starting with no assignments", path)
        return []
    entries = body.get("assignments")
    if not isinstance(entries, list):
        log.error("%s holds no assignment list; starting with no assignments", path)
        return []
    out: list[Assignment] = []
    for i, entry in enumerate(entries):
        try:
            out.append(Assignment.from_dict(entry))
        except AssignmentError as exc:
            log.error("%s: entry %d skipped: %s", path, i, exc)
    return out
