"""Where the docker driver keeps a task's secrets and configs on the host, and how it mounts them.

A task with secrets or configs gets ``<root>/<node id>/<task id>/`` holding ``secrets/<n>``
and ``configs/<n>`` (``n``: the reference's index in the task's spec), every directory mode
0700 and owned by the agent. The root is ``/run/shoal`` when /run is a memory filesystem, else
``/dev/shm/shoal``: a secret never touches a disk. As in Docker Swarm, each file is
bind-mounted read-only: a secret at ``/run/secrets/<target>`` (or at its target when that is
absolute), a config at its target. Removing the task overwrites its secret files, then removes
its directory.
"""

from __future__ import annotations

import contextlib
import logging
import os
import posixpath
import shutil
import stat
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any

from agent.model import Assignment, is_id
from agent.model.errors import TaskRejected
from agent.model.spec import ConfigRef, SecretRef

__all__ = [
    "SECRETS_DIR",
    "TaskDirs",
    "config_target",
    "file_mounts",
    "memory_root",
    "secret_target",
]

log = logging.getLogger("shoal.worker.docker")

SECRETS_DIR = "/run/secrets"
_SECRETS = "secrets"
_CONFIGS = "configs"


def secret_target(ref: SecretRef) -> str:
    """The path of a secret inside the container."""
    return posixpath.normpath(posixpath.join(SECRETS_DIR, ref.target or ref.source))


def config_target(ref: ConfigRef) -> str:
    """The path of a config inside the container."""
    return posixpath.normpath(posixpath.join("/", ref.target or ref.source))


def file_mounts(a: Assignment, task_dir: str) -> list[dict[str, Any]]:
    """Docker ``Mounts`` entries giving ``a`` its secrets and configs from ``task_dir``."""
    c = a.spec.container
    pairs = [
        (posixpath.join(task_dir, _SECRETS, str(i)), secret_target(ref))
        for i, ref in enumerate(c.secrets)
    ] + [
        (posixpath.join(task_dir, _CONFIGS, str(i)), config_target(ref))
        for i, ref in enumerate(c.configs)
    ]
    return [
        {
            "Type": "bind",
            "Source": source,
            "Target": target,
            "ReadOnly": True,
            "BindOptions": {"Propagation": "rprivate"},
        }
        for source, target in pairs
    ]


def memory_root(mounts: str = "/proc/self/mounts") -> Path | None:
    """``/run/shoal`` if /run is a tmpfs, else ``/dev/shm/shoal``; None without either."""
    try:
        lines = Path(mounts).read_text().splitlines()
    except OSError:
        lines = []
    types: dict[str, str] = {}
    for line in lines:
        fields = line.split()
        if len(fields) >= 3:
            types[fields[1]] = fields[2]  # the last mount on a path is the one seen
    if types.get("/run") == "tmpfs":
        return Path("/run/shoal")
    if types.get("/dev/shm") == "tmpfs" or (not types and os.path.isdir("/dev/shm")):
        return Path("/dev/shm/shoal")
    return None


def _numeric_id(value: str, what: str, name: str) -> int:
    if value == "":
        return 0
    if not value.isdigit() or not value.isascii():
        raise TaskRejected(f"{name}: {what} {value!r} is not a number (give a numeric {what})")
    return int(value)


def _owned_dir(path: Path) -> None:
    """Make ``path`` a directory of this agent with mode 0700 (refusing anyone else's)."""
    with contextlib.suppress(FileExistsError):
        os.mkdir(path, 0o700)
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid():
        raise TaskRejected(
            f"{path} is not a directory owned by shoal's agent (uid {os.geteuid()}), so it "
            "cannot hold secrets; remove it"
        )
    if stat.S_IMODE(st.st_mode) != 0o700:
        os.chmod(path, 0o700)


class TaskDirs:
    """The per-task directories under one root (by default :func:`memory_root`)."""

    def __init__(self, root: Path | None = None) -> None:
        self._root = root
        self._resolved = root is not None

    @property
    def root(self) -> Path | None:
        if not self._resolved:
            self._root, self._resolved = memory_root(), True
        return self._root

    def task_dir(self, node_id: str, task_id: str) -> Path:
        root = self.root
        if root is None:
            raise TaskRejected(
                "this node has no memory filesystem (tmpfs) at /run or /dev/shm to hold "
                "secrets and configs"
            )
        if not (is_id(node_id) and is_id(task_id)):
            raise TaskRejected(f"node id {node_id!r} or task id {task_id!r} is not an id")
        return root / node_id / task_id

    def write(
        self,
        a: Assignment,
        secrets: Sequence[tuple[SecretRef, bytes]],
        configs: Sequence[tuple[ConfigRef, bytes]],
    ) -> Path:
        """Write ``a``'s files (in spec order) into its directory; TaskRejected on failure.

        Each file is replaced atomically, so a container still running from an earlier start
        keeps reading what it read.
        """
        plan: list[tuple[str, int, bytes, int, int, int]] = []
        kinds: list[tuple[str, Sequence[tuple[SecretRef | ConfigRef, bytes]]]] = [
            (_SECRETS, secrets),
            (_CONFIGS, configs),
        ]
        for kind, items in kinds:
            for i, (ref, data) in enumerate(items):
                name = f"{kind[:-1]} {ref.source}"
                uid = _numeric_id(ref.uid, "uid", name)
                gid = _numeric_id(ref.gid, "gid", name)
                plan.append((kind, i, data, uid, gid, ref.mode))
        task_dir = self.task_dir(a.node_id, a.task_id)
        try:
            for path in (task_dir.parent.parent, task_dir.parent, task_dir):
                _owned_dir(path)
            for kind in {k for k, *_ in plan}:
                _owned_dir(task_dir / kind)
            for kind, i, data, uid, gid, mode in plan:
                _write_file(task_dir / kind / str(i), data, uid, gid, mode)
        except PermissionError as exc:
            raise TaskRejected(
                f"cannot write the secrets and configs of task {a.task_id} in {task_dir}: "
                f"{exc.strerror or exc} (give them to the agent's own uid and gid, or run the "
                "agent as root)"
            ) from exc
        except OSError as exc:
            raise TaskRejected(
                f"cannot write the secrets and configs of task {a.task_id} in {task_dir}: "
                f"{exc.strerror or exc}"
            ) from exc
        return task_dir

    def remove(self, node_id: str, task_id: str) -> None:
        """Overwrite the task's secret files, then remove its directory; log what fails."""
        root = self.root
        if root is None or not (is_id(node_id) and is_id(task_id)):
            return
        task_dir = root / node_id / task_id
        try:
            if not task_dir.is_dir() or task_dir.is_symlink():
                return
            _shred_files(task_dir / _SECRETS)
            shutil.rmtree(task_dir)
        except OSError as exc:
            log.error("cannot remove %s (secrets of task %s): %s", task_dir, task_id, exc)
            return
        with contextlib.suppress(OSError):  # only once the node has no task left here
            task_dir.parent.rmdir()

    def sweep(self, node_id: str, keep: Collection[str]) -> None:
        """Remove the directories of this node's tasks whose ids are not in ``keep``."""
        root = self.root
        if root is None or not is_id(node_id):
            return
        node_dir = root / node_id
        try:
            found = [p.name for p in node_dir.iterdir()] if node_dir.is_dir() else []
        except OSError as exc:
            log.error("cannot list %s: %s", node_dir, exc)
            return
        for task_id in found:
            if task_id not in keep:
                log.info("removing the files of task %s, which this node no longer has", task_id)
                self.remove(node_id, task_id)
        with contextlib.suppress(OSError):
            node_dir.rmdir()


def _write_file(path: Path, data: bytes, uid: int, gid: int, mode: int) -> None:
    tmp = path.with_name(f".{path.name}.new")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        if os.geteuid() == 0 or (uid, gid) != (os.geteuid(), os.getegid()):
            os.fchown(fd, uid, gid)
        os.fchmod(fd, mode)
    except BaseException:
        os.close(fd)
        os.unlink(tmp)
        raise
    os.close(fd)
    os.replace(tmp, path)


def _shred_files(directory: Path) -> None:
    """Overwrite every regular file in ``directory`` with zeros (a secret's last trace)."""
    if not directory.is_dir():
        return
    for path in directory.iterdir():
        try:
            st = os.lstat(path)
            if not stat.S_ISREG(st.st_mode) or not st.st_size:
                continue
            fd = os.open(path, os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:
            continue
        try:
            view = memoryview(bytes(st.st_size))
            while view:
                view = view[os.write(fd, view) :]
        except OSError:
            pass
        finally:
            os.close(fd)
