"""Atomic file writes. No cryptography here: the node daemon imports this at idle."""

from __future__ import annotations

import os
from pathlib import Path

from .errors import CertError

__all__ = ["write_file_atomic"]


def write_file_atomic(path: Path | str, data: bytes, mode: int = 0o644) -> None:
    """Replace `path` with `data` so readers see the old file or the new one, never a mix.

    The file is created with `mode` from the start (a secret is never briefly world-readable),
    written, fsynced, renamed over `path`, and the directory entry is fsynced too.
    """
    target = Path(path)
    tmp = target.with_name(f".{target.name}.{os.urandom(6).hex()}.tmp")
    try:
        _write_new_file(tmp, data, mode)
        os.replace(tmp, target)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        reason = exc.strerror or str(exc)
        raise CertError(
            f"cannot write {target}: {reason}; check that {target.parent} exists and is "
            "writable by this user"
        ) from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_directory(target.parent)


def _write_new_file(path: Path, data: bytes, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        os.fchmod(fd, mode)  # the umask may have narrowed `mode`; set it exactly
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_directory(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return  # some platforms cannot open directories; the rename itself has happened
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
