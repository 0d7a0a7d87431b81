"""The leader's components, started together when a manager becomes leader and stopped
together when it is not any more. They never call each other: the store is the bus."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

from agent.manager.cluster_monitor import ClusterMonitor, RaftState
from agent.manager.dispatcher import Dispatcher, StatusLog
from agent.manager.eventlog import EventLog, EventPublisher
from agent.manager.homeassistant_loop import DiscoveryPublisher
from agent.manager.monitor import Monitor
from agent.manager.raftdriver import RaftDriver
from agent.manager.reconcile.allocator_loop import AllocatorLoop
from agent.manager.reconcile.orchestrator_loop import OrchestratorLoop
from agent.manager.reconcile.outage import FleetWatch
from agent.manager.reconcile.scheduler_loop import SchedulerLoop
from agent.manager.reconcile.updater_loop import UpdaterLoop
from agent.manager.store import Store
from broker.session import Session
from broker.topics import Topics

__all__ = ["LeaderComponents"]

log = logging.getLogger("shoal.leader")


class LeaderComponents:
    def __init__(
        self,
        *,
        store: Store,
        driver: RaftDriver,
        session: Session,
        topics: Topics,
        statuses: StatusLog,
        cluster_id: str,
        fleet: FleetWatch | None = None,
        events: EventLog | None = None,
        clock: Callable[[], float] = time.time,
        broker_addresses: tuple[str, ...] = (),
        version: str = "",
    ) -> None:
        self.store = store
        self.driver = driver
        self.clock = clock
        self.fleet = fleet or FleetWatch()
        self.orchestrator = OrchestratorLoop(
            store, clock=clock, fleet=self.fleet, leader_id=driver.id
        )
        self.scheduler = SchedulerLoop(store, clock=clock)
        self.allocator = AllocatorLoop(store, session, topics)
        self.dispatcher = Dispatcher(store, session, topics, statuses, cluster_id=cluster_id)
        self.updater = UpdaterLoop(store, clock=clock)
        self.monitor = Monitor(store, session, topics)
        self.discovery = DiscoveryPublisher(store, session, topics, version=version)
        self.events = EventPublisher(events or EventLog(store), session, topics)
        self.cluster_monitor = ClusterMonitor(
            store, session, topics, self.raft_state, broker_addresses=broker_addresses
        )
        self._task: asyncio.Task[None] | None = None
        self.watching = False  # serving, and the fleet watch started for this leadership

    def raft_state(self) -> RaftState:
        core = self.driver.core
        return RaftState(
            leader=self.driver.leader_id,
            term=core.term,
            commit_index=core.log.committed,
            applied_index=self.store.applied,
            voters=tuple(self.driver.voters),
        )

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        if self.running:
            return
        self._task = asyncio.get_running_loop().create_task(self._run(), name="shoal-leader")

    async def stop(self) -> None:
        task, self._task = self._task, None
        self.watching = False
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def _run(self) -> None:
        # act only once serving: an entry of this term committed and everything before it
        # (an earlier leader's last writes included) applied
        while True:
            try:
                await self.driver.wait_serving(timeout=5.0)
                break
            except Exception as exc:  # not leader yet, a slow quorum: try again until cancelled
                log.debug("leader components wait for the store: %s", exc)
                await asyncio.sleep(0.2)
        log.info("leader components starting")
        self.fleet.leading(self.clock())  # every node gets the grace period to report back
        self.watching = True
        parts: list[Any] = [
            self.orchestrator,
            self.allocator,
            self.scheduler,
            self.dispatcher,
            self.updater,
            self.monitor,
            self.cluster_monitor,
            self.events,
            self.discovery,
        ]
        while True:
            try:
                async with asyncio.TaskGroup() as tg:
                    for part in parts:
                        tg.create_task(part.run(), name=f"shoal-{type(part).__name__.lower()}")
            except* Exception as group:
                for failure in group.exceptions:
                    log.critical(
                        "a leader component failed: %r; restarting them",
                        failure,
                        exc_info=failure,
                    )
            await asyncio.sleep(1.0)
