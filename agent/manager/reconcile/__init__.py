"""Reconciliation on the leader: pure cores that plan, and the loops that run them.

Each ``<thing>.py`` is a pure core (no I/O, no asyncio: store objects in, a plan out) and each
``<thing>_loop.py`` runs it on :class:`~agent.manager.reconcile.reconciler.Reconciler`, the one
shell that wakes on commits, debounces and retries: the allocator (addresses, ports, the routing
tables of :mod:`~agent.manager.reconcile.routes`), the scheduler (placement), the orchestrator
(replicas, restarts, the outage hold of :mod:`~agent.manager.reconcile.outage`) and the updater
(rolling updates and rollbacks). Nothing here imports the rest of the manager: the control API
and the manager's wiring import it.
"""
