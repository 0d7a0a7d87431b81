"""The swarm's own settings, on the leader: join tokens (`swarm join-token`), `swarm update`
(autolock, task history, node grace, Home Assistant discovery) and the unlock key
(`swarm unlock-key`)."""

from __future__ import annotations

from typing import Any

from agent.manager.cluster import cluster_ca, cluster_of, replace
from agent.manager.store import Cluster, Store, Tx
from agent.model.errors import ShoalError
from agent.model.limits import MAX_TASK_HISTORY
from broker.errors import BrokerError
from broker.topics import check_discovery_prefix
from certs import JoinToken, new_unlock_key

__all__ = ["Swarm"]


class Swarm:
    def __init__(self, *, store: Store, join_address: str) -> None:
        self.store = store
        self.join_address = join_address

    async def join_token(self, args: dict[str, Any]) -> dict[str, str]:
        role = str(args.get("role"))
        if role not in ("worker", "manager"):
            raise ShoalError(f"unknown role {role!r}: use worker or manager")
        if args.get("rotate"):
            new = str(JoinToken.new(cluster_ca(self.store).digest))

            def rotate(tx: Tx) -> None:
                c = tx.get(Cluster, "cluster")
                assert c is not None
                field = "worker_token" if role == "worker" else "manager_token"
                tx.put(replace(c, **{field: new}))

            await self.store.update(rotate)
        c = cluster_of(self.store)
        token = c.worker_token if role == "worker" else c.manager_token
        return {
            "role": role,
            "token": token,
            "command": f"shoal swarm join --token {token} mqtts://{self.join_address}",
        }

    async def update(self, args: dict[str, Any]) -> dict[str, Any]:
        autolock = args.get("autolock")
        limit = args.get("task_history_limit")
        given = (autolock, limit, args.get("node_grace"), args.get("home_assistant"))
        if all(v is None for v in given) and args.get("home_assistant_prefix") is None:
            raise ShoalError(
                "nothing to update: use --autolock=true|false, --task-history-limit N,"
                " --node-grace DURATION, --home-assistant on|off or --home-assistant-prefix PREFIX"
            )
        grace = _node_grace(args.get("node_grace"))
        discovery = _home_assistant(args.get("home_assistant"), args.get("home_assistant_prefix"))
        if limit is not None and (type(limit) is not int or not 1 <= limit <= MAX_TASK_HISTORY):
            raise ShoalError(
                f"--task-history-limit must be a whole number from 1 to {MAX_TASK_HISTORY}"
            )
        if grace is not None:
            await self._set_node_grace(grace)
        if discovery:
            _check_prefix_change(cluster_of(self.store), discovery)
            await self._set_home_assistant(discovery)
        if limit is not None:

            def set_limit(tx: Tx) -> None:
                c = tx.get(Cluster, "cluster")
                if c is not None and c.task_history_limit != limit:
                    tx.put(replace(c, task_history_limit=limit))

            await self.store.update(set_limit)
        if not isinstance(autolock, bool):
            unlock_key = cluster_of(self.store).unlock_key
            return {"autolock": bool(unlock_key), "unlock_key": "", "changed": False}
        cluster = cluster_of(self.store)
        if autolock == bool(cluster.unlock_key):
            return {"autolock": autolock, "unlock_key": cluster.unlock_key, "changed": False}
        key = new_unlock_key() if autolock else ""
        await self._set_unlock_key(key)
        return {"autolock": autolock, "unlock_key": key, "changed": True}

    async def _set_node_grace(self, seconds: int) -> None:
        def change(tx: Tx) -> None:
            c = tx.get(Cluster, "cluster")
            if c is not None and c.node_grace_s != seconds:
                tx.put(replace(c, node_grace_s=seconds))

        await self.store.update(change)

    async def _set_home_assistant(self, settings: dict[str, Any]) -> None:
        def change(tx: Tx) -> None:
            c = tx.get(Cluster, "cluster")
            if c is not None and any(getattr(c, k) != v for k, v in settings.items()):
                tx.put(replace(c, **settings))

        await self.store.update(change)

    async def unlock_key(self, args: dict[str, Any]) -> dict[str, Any]:
        cluster = cluster_of(self.store)
        if not cluster.unlock_key:
            raise ShoalError(
                "no unlock key is set: autolock is off (turn it on with"
                " `shoal swarm update --autolock=true`)"
            )
        key = cluster.unlock_key
        if args.get("rotate"):
            key = new_unlock_key()
            await self._set_unlock_key(key)
        return {"unlock_key": key}

    async def _set_unlock_key(self, key: str) -> None:
        def change(tx: Tx) -> None:
            c = tx.get(Cluster, "cluster")
            assert c is not None
            tx.put(replace(c, unlock_key=key))

        await self.store.update(change)


def _node_grace(value: Any) -> int | None:
    """Whole seconds of ``swarm update --node-grace``; None when not given."""
    if value is None:
        return None
    if not isinstance(value, int | float) or isinstance(value, bool) or not 1 <= value <= 3600:
        raise ShoalError("--node-grace must be from 1s to 1h, e.g. --node-grace 30s")
    return round(value)


def _home_assistant(on: Any, prefix: Any) -> dict[str, Any]:
    """The Cluster fields `--home-assistant on|off` and `--home-assistant-prefix` set."""
    out: dict[str, Any] = {}
    if on is not None:
        if not isinstance(on, bool):
            raise ShoalError(f"--home-assistant must be on or off, not {on!r}")
        out["home_assistant"] = on
    if prefix is not None:
        try:
            out["home_assistant_prefix"] = check_discovery_prefix(prefix)
        except BrokerError as exc:
            raise ShoalError(f"--home-assistant-prefix: {exc}") from None
    return out


def _check_prefix_change(cluster: Cluster, settings: dict[str, Any]) -> None:
    """The prefix changes only while discovery is off and stays off: the broker's ACL grants
    the configured prefix only, so entries under the old one must be cleared before, and
    none published under the new one before the broker has taken the new ACL."""
    prefix = settings.get("home_assistant_prefix", cluster.home_assistant_prefix)
    if prefix == cluster.home_assistant_prefix:
        return
    if cluster.home_assistant:
        raise ShoalError(
            "Home Assistant discovery is on: turn it off first (`shoal swarm update"
            " --home-assistant off` clears its entries under the prefix"
            f" {cluster.home_assistant_prefix}), then change the prefix"
        )
    if settings.get("home_assistant"):
        raise ShoalError(
            f"set the new prefix first (`shoal swarm update --home-assistant-prefix {prefix}`),"
            " then turn Home Assistant discovery on"
        )
