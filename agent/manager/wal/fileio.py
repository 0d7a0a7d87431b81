"""The few file operations the write-ahead log needs, each durable when it returns."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["fsync_directory", "remove_durably", "write_all", "write_durably"]


def fsync_directory(directory: Path) -> None:
    """Make the creations, renames and deletions of entries in `directory` durable."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_all(fd: int, data: bytes | bytearray | memoryview) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def write_durably(path: Path, data: bytes) -> None:
    """Create `path` holding `data`, atomically: a temporary file, fsync, rename, fsync the
    directory. Readers (and a restart after a crash) see no file or the whole file."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        write_all(fd, data)
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        tmp.unlink(missing_ok=True)
        raise
    os.close(fd)
    os.replace(tmp, path)
    fsync_directory(path.parent)


def remove_durably(paths: list[Path]) -> None:
    """Delete `paths` (all in one directory), then fsync that directory once."""
    if not paths:
        return
    for path in paths:
        path.unlink(missing_ok=True)
    fsync_directory(paths[0].parent)
