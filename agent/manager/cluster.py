"""What the manager's components all read: the cluster record (its CA, the certificates'
lifetime), whether this manager may act as the leader now, and how a stored object changes."""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from typing import Any

from agent.manager.raft import RaftError
from agent.manager.raftdriver import RaftDriver
from agent.manager.store import Cluster, Store
from agent.model.errors import ShoalError
from certs import ClusterCA, load_cert, load_private_key

__all__ = ["cluster_ca", "cluster_of", "lifetime", "replace", "serving"]


def cluster_of(store: Store) -> Cluster:
    c = store.view().get(Cluster, "cluster")
    if c is None:
        raise ShoalError("this manager has not received the cluster state yet")
    return c


def cluster_ca(store: Store) -> ClusterCA:
    c = cluster_of(store)
    return ClusterCA(load_cert(c.ca_cert), load_private_key(c.ca_key))


def lifetime(store: Store) -> timedelta:
    return timedelta(seconds=cluster_of(store).cert_lifetime_s)


async def serving(driver: RaftDriver) -> bool:
    """Whether this manager may act as the leader: it is the leader and has applied
    everything committed (a new leader is waited for a little while it catches up)."""
    try:
        await driver.wait_serving(5.0)
        return True
    except RaftError:
        return False


def replace(obj: Any, **changes: Any) -> Any:
    return dataclasses.replace(obj, **changes)
