"""The secrets and configs one task gets as files, handed to its driver at ``prepare``.

Managers send, next to a node's tasks, each secret its running tasks use, sealed to this node's
key, and each config in clear (:class:`~agent.model.SecretBlob`,
:class:`~agent.model.ConfigBlob`). The node keeps only the sealed blobs; a secret is
opened when a task that uses it is prepared, with the key ``key_loader`` returns. Nothing here
imports ``cryptography`` before a secret is opened, so an idle node never loads it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from agent.model import Assignment, ConfigBlob, SecretBlob
from agent.model.errors import TaskRejected, WorkerError
from agent.model.spec import ConfigRef, SecretRef

__all__ = ["NO_FILES", "KeyLoader", "TaskFiles", "load_node_key", "secret_context"]

KeyLoader = Callable[[], Any]
"""Returns the node's private key (an ECDSA P-256 key of ``cryptography``); may block."""


def secret_context(node_id: str, secret_id: str) -> bytes:
    """What a secret is sealed for: this node and this secret, so a blob fits nowhere else."""
    return b"shoal-secret:" + node_id.encode() + b":" + secret_id.encode()


R = TypeVar("R", SecretRef, ConfigRef)
B = TypeVar("B", SecretBlob, ConfigBlob)


@dataclass(frozen=True, slots=True)
class TaskFiles:
    """The blobs a task's secret and config references point at, by id, and the node's key."""

    secrets: Mapping[str, SecretBlob] = field(default_factory=dict)
    configs: Mapping[str, ConfigBlob] = field(default_factory=dict)
    key_loader: KeyLoader | None = None

    def open_secrets(self, a: Assignment) -> list[tuple[SecretRef, bytes]]:
        """Each of ``a``'s secret references with the secret's content, in spec order.

        Blocks (it reads the key and does the cryptography): run it in a thread. Raises
        :class:`TaskRejected` naming the secret when one is missing or cannot be opened.
        """
        wanted = _sent(a, "secret", a.spec.container.secrets, self.secrets, lambda r: r.secret_id)
        if not wanted:
            return []
        from certs.errors import SealError
        from certs.seal import unseal

        first = wanted[0][1].name
        if self.key_loader is None:
            raise TaskRejected(
                f"secret {first} could not be opened on this node: the node has no private key "
                "to open secrets with"
            )
        try:
            key = self.key_loader()
        except Exception as exc:  # any failure to read the key rejects the task, nothing more
            raise TaskRejected(f"secret {first} could not be opened on this node: {exc}") from exc
        opened: dict[str, bytes] = {}
        out: list[tuple[SecretRef, bytes]] = []
        for ref, blob in wanted:
            if blob.id not in opened:
                try:
                    opened[blob.id] = unseal(
                        key, blob.sealed, context=secret_context(a.node_id, blob.id)
                    )
                except SealError as exc:
                    raise TaskRejected(
                        f"secret {blob.name} could not be opened on this node: {exc}"
                    ) from exc
            out.append((ref, opened[blob.id]))
        return out

    def config_data(self, a: Assignment) -> list[tuple[ConfigRef, bytes]]:
        """Each of ``a``'s config references with the config's content, in spec order."""
        sent = _sent(a, "config", a.spec.container.configs, self.configs, lambda r: r.config_id)
        return [(ref, blob.data) for ref, blob in sent]


def _sent(
    a: Assignment, what: str, refs: Iterable[R], blobs: Mapping[str, B], key: Callable[[R], str]
) -> list[tuple[R, B]]:
    """Each reference with the blob the manager sent for it, in spec order; a reference whose
    blob was not sent rejects the task."""
    out: list[tuple[R, B]] = []
    for ref in refs:
        blob = blobs.get(key(ref))
        if blob is None:
            raise TaskRejected(
                f"{what} {ref.source} was not sent to this node with task {a.task_id}"
            )
        out.append((ref, blob))
    return out


NO_FILES = TaskFiles()


def load_node_key(path: Path, password: str | None = None) -> Any:
    """The node's private key from its PEM file; ``password`` opens an encrypted one (a locked
    manager's key is encrypted with its unlock key)."""
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    try:
        pem = Path(path).read_bytes()
    except OSError as exc:
        raise WorkerError(f"cannot read the node's key {path}: {exc.strerror or exc}") from exc
    encrypted = b"ENCRYPTED" in pem
    if encrypted and not password:
        raise WorkerError(
            f"the node's key {path} is encrypted and this node is locked: unlock it with "
            "`shoal swarm unlock`"
        )
    try:
        key = serialization.load_pem_private_key(
            pem, password=password.encode() if encrypted and password else None
        )
    except (ValueError, TypeError, UnsupportedAlgorithm):
        why = "the unlock key does not open it" if encrypted else "it is not a PEM private key"
        raise WorkerError(f"cannot read the node's key {path}: {why}") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise WorkerError(f"the node's key {path} is not an ECDSA key")
    return key
