"""Autolock on this node: the swarm's unlock key as this manager knows it, whether the
manager waits for it (`shoal swarm unlock`), and rewrapping the manager's data key and TLS
key when the swarm's key changes."""

from __future__ import annotations

import asyncio
import logging

from agent.model.errors import ShoalError
from agent.paths import DataDir

__all__ = ["UnlockKey"]

log = logging.getLogger("shoal.daemon")


class UnlockKey:
    def __init__(self, data: DataDir) -> None:
        self.data = data
        self.key: str | None = None  # None: no key given (autolock off, or still locked)
        self.unlocked = asyncio.Event()

    def locked(self, role: str) -> bool:
        if role != "manager" or self.key is not None:
            return False
        from agent.manager.keys import DataKeyFile

        keyfile = DataKeyFile(self.data.manager / "data-key")
        return self.key is None and keyfile.exists() and keyfile.is_locked()

    def unlock(self, role: str, key: str) -> None:
        from agent.manager.keys import DataKeyError, DataKeyFile, read_node_key

        if not self.locked(role):
            raise ShoalError("Error: swarm is not locked")
        try:
            DataKeyFile(self.data.manager / "data-key").load(key.strip())
            read_node_key(self.data.node_key, key.strip())
        except DataKeyError:
            raise ShoalError("invalid key: this is not the swarm's unlock key") from None
        self.key = key.strip()
        self.unlocked.set()
        log.info("unlocked")

    def changed(self, new: str) -> None:
        """The swarm's unlock key changed (autolock on, off, or rotated): rewrap this
        manager's data key and TLS key with it."""
        from agent.manager.keys import DataKeyFile, read_node_key, write_node_key

        new_key = new or None
        if new_key == self.key:
            return
        keyfile = DataKeyFile(self.data.manager / "data-key")
        key = read_node_key(self.data.node_key, self.key)
        keyfile.rewrap(self.key, new_key)
        write_node_key(self.data.node_key, key, new_key)
        self.key = new_key
        log.info("autolock is %s", "on" if new_key else "off")
