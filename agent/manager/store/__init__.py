"""The replicated store: typed objects, transactions through Raft, views and watches."""

from agent.manager.store.objects import KINDS, Client, Cluster, Node, StoreError, StoreObject
from agent.manager.store.store import Commit, Conflict, Event, Store, Tx, View, initial_snapshot

__all__ = [
    "KINDS",
    "Client",
    "Cluster",
    "Commit",
    "Conflict",
    "Event",
    "Node",
    "Store",
    "StoreError",
    "StoreObject",
    "Tx",
    "View",
    "initial_snapshot",
]
