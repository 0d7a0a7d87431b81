"""The replicated store: typed objects, transactions through Raft, views and watches."""

from agent.manager.store.objects import (
    KINDS,
    Client,
    Cluster,
    Config,
    Network,
    NetworkAllocation,
    Node,
    Secret,
    Service,
    StoreError,
    StoreObject,
    Task,
)
from agent.manager.store.store import Commit, Conflict, Event, Store, Tx, View, initial_snapshot

__all__ = [
    "KINDS",
    "Client",
    "Cluster",
    "Commit",
    "Config",
    "Conflict",
    "Event",
    "Network",
    "NetworkAllocation",
    "Node",
    "Secret",
    "Service",
    "Store",
    "StoreError",
    "StoreObject",
    "Task",
    "Tx",
    "View",
    "initial_snapshot",
]
