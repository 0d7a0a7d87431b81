"""The engine's floor for bench/swarm_compare.py: the same containers started straight on it.

No orchestrator in between: N containers created and started through the engine's API
(aiodocker, as the docker driver talks to it; no CLI process per container, so this is the
faster floor of the two), with the very create body the docker driver builds for the
benchmark's service (agent.worker.docker_config.container_config: same image, command, env,
``--init``, stop timeout, labels, no restart policy, the engine's default network) and the
driver's start concurrency (at most START_CONCURRENCY create+start pairs at once). Timed from
the first create to the last start's answer: each container then runs.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import TYPE_CHECKING, Any

from agent.model import Assignment
from agent.model.spec import SECOND, ContainerSpec, TaskSpec
from agent.worker.docker_config import container_config
from agent.worker.executor import START_CONCURRENCY

if TYPE_CHECKING:
    import aiodocker

LABEL = "com.shoal.bench.floor"


class Floor:
    label = "floor"

    def __init__(self, image: str, command: tuple[str, ...], grace_s: int, env: str) -> None:
        self.spec = TaskSpec(
            container=ContainerSpec(
                image=image,
                args=command,
                env=(env,),
                init=True,
                stop_grace_period_ns=grace_s * SECOND,
            )
        )
        self.serial = 0

    def body(self, name: str, slot: int) -> tuple[str, dict[str, Any]]:
        self.serial += 1
        a = Assignment(
            task_id=f"floor{self.serial}",
            service_id="floor",
            service_name=name,
            slot=slot,
            node_id="floor",
            spec=self.spec,
            cluster_id="floor",
        )
        config = container_config(a)
        config["Labels"] = {**config["Labels"], LABEL: name}
        return a.container_name, config

    def create(self, name: str, n: int) -> float:
        """Seconds to start ``n`` containers named for ``name`` (and removed afterwards)."""
        return asyncio.run(self._rows(name, 0, n))

    def scale(self, name: str, n: int) -> float:
        """With ``n`` running, seconds to start ``n`` more."""
        return asyncio.run(self._rows(name, n, n))

    async def _rows(self, name: str, first: int, more: int) -> float:
        import aiodocker

        docker = aiodocker.Docker()
        try:
            if first:
                await self._start(docker, name, range(1, first + 1))
            t0 = time.monotonic()
            await self._start(docker, name, range(first + 1, first + more + 1))
            return time.monotonic() - t0
        finally:
            await self._remove(docker, name)
            await docker.close()

    async def _start(self, docker: aiodocker.Docker, name: str, slots: range) -> None:
        gate = asyncio.Semaphore(START_CONCURRENCY)

        async def one(slot: int) -> None:
            cname, config = self.body(name, slot)
            async with gate:
                container = await docker.containers.create(config, name=cname)
                await container.start()

        await asyncio.gather(*(one(slot) for slot in slots))

    async def _remove(self, docker: aiodocker.Docker, name: str) -> None:
        filters = json.dumps({"label": [f"{LABEL}={name}"]})
        found = await docker.containers.list(all=True, filters=filters)
        await asyncio.gather(*(c.delete(force=True, v=True) for c in found))

    def stop(self) -> None:
        asyncio.run(self._remove_all())

    async def _remove_all(self) -> None:
        import aiodocker

        docker = aiodocker.Docker()
        try:
            found = await docker.containers.list(all=True, filters=json.dumps({"label": [LABEL]}))
            await asyncio.gather(*(c.delete(force=True, v=True) for c in found))
        finally:
            await docker.close()
