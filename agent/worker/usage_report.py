"""The node's ``mon/node/<id>/usage`` loop: every ``interval`` seconds it reads /proc, the
data dir's filesystem and the driver's per-task counters, and publishes (retained) only when
agent/worker/usage.py says the numbers moved enough, or every 10 minutes anyway."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from agent.worker.driver import Driver, TaskRef
from agent.worker.usage import TaskCounters, UsageSampler, worth_publishing
from broker.errors import BrokerError
from broker.session import Session
from broker.topics import Topics

__all__ = ["UsageReporter"]

log = logging.getLogger("shoal.agent")


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


class UsageReporter:
    def __init__(
        self,
        *,
        session: Session,
        topics: Topics,
        node_id: str,
        driver: Driver,
        running: Callable[[], Iterable[TaskRef]],
        interval: float,
        disk_path: Path,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.session = session
        self.topic = topics.mon("node", node_id, "usage")
        self.driver = driver
        self.running = running
        self.interval = interval
        self.disk_path = disk_path
        self.clock = clock
        self.sampler = UsageSampler(cpus=os.cpu_count() or 1)
        self.last: dict[str, Any] | None = None  # the document published last
        self.published = 0
        session.on_connect(self._reconnected)

    async def _reconnected(self) -> None:
        self.last = None  # the broker may have lost the retained copy: send the next one

    async def _tasks(self) -> dict[str, TaskCounters]:
        usage = getattr(self.driver, "usage", None)
        refs = list(self.running())
        if usage is None or not refs:
            return {}
        try:
            result: dict[str, TaskCounters] = await asyncio.wait_for(usage(refs), self.interval)
            return result
        except Exception as exc:  # a slow or failing engine costs this sample its tasks only
            log.debug("no task usage this time: %s", exc)
            return {}

    def _disk(self) -> tuple[int, int] | None:
        path = self.disk_path
        while not path.exists() and path != path.parent:
            path = path.parent
        try:
            du = shutil.disk_usage(path)
        except OSError:
            return None
        return du.used, du.total

    async def sample(self) -> dict[str, Any]:
        tasks = await self._tasks()
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
        return self.sampler.sample(
            now=self.clock(),
            proc_stat=_read("/proc/stat"),
            meminfo=_read("/proc/meminfo"),
            load1=load,
            disk=self._disk(),
            tasks=tasks,
        )

    async def tick(self) -> bool:
        """One sample; True when it was published."""
        doc = await self.sample()
        if not self.session.connected or not worth_publishing(self.last, doc, doc["time"]):
            return False
        try:
            await self.session.publish(self.topic, json.dumps(doc).encode(), retain=True)
        except BrokerError as exc:
            log.debug("usage not published: %s", exc)
            return False
        self.last = doc
        self.published += 1
        return True

    async def run(self) -> None:
        if self.interval <= 0:
            return
        with contextlib.suppress(Exception):
            await self.sample()  # the first CPU reading, for the deltas of the next one
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.tick()
            except Exception:  # never let monitoring stop the node
                log.exception("usage sample failed")
