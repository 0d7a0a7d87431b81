"""The ``docker`` driver: tasks as containers of Docker Engine (or Podman's compatible socket).

The engine is found the way the docker CLI finds it (``DOCKER_HOST``, else the usual unix
sockets). aiodocker (and with it aiohttp) is imported on first use, so a node that never runs a
container never pays for it. Secrets and configs become read-only files bind-mounted from the
node's memory filesystem (see :mod:`agent.worker.docker_files`), which needs a local engine.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
from collections.abc import AsyncIterator, Collection, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from agent.model import Assignment, Health
from agent.model.errors import DriverError, TaskRejected
from agent.worker.docker_config import DEFAULT_STOP_SIGNAL, container_config, host_ports
from agent.worker.docker_files import TaskDirs, config_target, secret_target
from agent.worker.driver import (
    LABEL_CLUSTER,
    LABEL_NODE,
    LABEL_TASK_ID,
    Observation,
    Owned,
    TaskRef,
    owned_from_labels,
)
from agent.worker.taskfiles import NO_FILES, TaskFiles
from agent.worker.usage import TaskCounters, docker_counters

if TYPE_CHECKING:
    import aiodocker
    from aiodocker.containers import DockerContainer

__all__ = ["DockerDriver"]

log = logging.getLogger("shoal.worker.docker")

_PORT_IN_USE = re.compile(r"port is already allocated|address already in use")
_HEALTH: dict[str, Health] = {
    "starting": "starting",
    "healthy": "healthy",
    "unhealthy": "unhealthy",
}


class ContainerNetwork(Protocol):
    async def container_network(self, a: Assignment) -> str | None: ...

    def attach_container(self, task_id: str, pid: int) -> None: ...


class DockerDriver:
    name = "docker"

    def __init__(
        self,
        url: str | None = None,
        *,
        pull_timeout: float = 300.0,
        kill_timeout: float = 30.0,
        files_root: Path | None = None,
    ) -> None:
        """``files_root`` holds the tasks' secrets and configs (default: see ``memory_root``)."""
        self._url = url
        self._dirs = TaskDirs(files_root)
        self._docker: aiodocker.Docker | None = None
        self._pull_timeout = pull_timeout
        self._kill_timeout = kill_timeout
        # Set by the node agent: wires containers of tasks that join networks into them.
        self.network: ContainerNetwork | None = None
        # The container each task was started in here, so following a task just started
        # costs no listing of the engine's containers (a lookup by label is the engine's
        # dearest read, and it slows the starts beside it).
        self._started: dict[str, str] = {}
        # One look at an image for all the tasks preparing at once (a service's replicas).
        self._image_checks: dict[str, asyncio.Future[None]] = {}

    def _client(self) -> aiodocker.Docker:
        if self._docker is None:
            import aiodocker

            try:
                self._docker = aiodocker.Docker(url=self._url)
            except (ValueError, OSError) as exc:
                raise DriverError(
                    f"cannot find Docker Engine: {exc}; set DOCKER_HOST or start dockerd"
                ) from exc
        return self._docker

    async def engine_info(self) -> dict[str, Any]:
        """The engine's name, version and labels, for the node's description."""
        import aiodocker

        try:
            v = await self._client().version()
            info = await self._client().system.info()
        except (aiodocker.DockerError, OSError, DriverError) as exc:
            return {"driver": self.name, "error": str(exc)}
        name = "podman" if "podman" in str(v.get("Components", "")).lower() else "docker"
        labels: dict[str, str] = {}
        for item in info.get("Labels") or []:
            key, _, value = str(item).partition("=")
            labels[key] = value
        return {
            "driver": self.name,
            "name": name,
            "version": str(v.get("Version", "")),
            "labels": labels,
        }

    @property
    def _local_engine(self) -> bool:
        return self._client().docker_host.startswith("unix://")

    # -- prepare / start ------------------------------------------------------------------

    async def prepare(self, a: Assignment, files: TaskFiles = NO_FILES) -> None:
        c = a.spec.container
        for m in c.mounts:
            if m.type == "bind":
                if not m.source:
                    raise TaskRejected(f"bind mount at {m.target} has no source path")
                if self._local_engine and not os.path.exists(m.source):
                    raise TaskRejected(
                        f"bind mount source {m.source} (for {m.target}) does not exist on this "
                        "node; create it or fix the service's mount"
                    )
        for d in c.devices:
            if self._local_engine and not os.path.exists(d.path_on_host):
                raise TaskRejected(f"device {d.path_on_host} does not exist on this node")
        await self._ensure_image(c.image)
        if c.secrets or c.configs:
            await self._write_files(a, files)

    async def _write_files(self, a: Assignment, files: TaskFiles) -> None:
        if not self._local_engine:
            raise TaskRejected(
                f"task {a.task_id} uses secrets or configs, which need Docker Engine on this "
                f"node itself (DOCKER_HOST is {self._client().docker_host})"
            )
        c = a.spec.container
        targets = [m.target for m in c.mounts]
        targets += [secret_target(r) for r in c.secrets] + [config_target(r) for r in c.configs]
        twice = sorted({t for t in targets if targets.count(t) > 1})
        if twice:
            raise TaskRejected(f"task {a.task_id} mounts more than one file at {', '.join(twice)}")
        configs = files.config_data(a)
        secrets = await asyncio.to_thread(files.open_secrets, a) if c.secrets else []
        self._dirs.write(a, secrets, configs)  # no await: a cancelled prepare leaves no files

    async def _ensure_image(self, image: str) -> None:
        """Present, or pulled; tasks preparing at once with the same image share one check."""
        check = self._image_checks.get(image)
        if check is None:
            check = asyncio.ensure_future(self._check_image(image))
            self._image_checks[image] = check
            check.add_done_callback(lambda _: self._image_checks.pop(image, None))
        await asyncio.shield(check)

    async def _check_image(self, image: str) -> None:
        import aiohttp
        from aiodocker.exceptions import DockerError

        docker = self._client()
        with _translate(f"inspect image {image}"):
            try:
                await docker.images.inspect(image)
                return
            except DockerError as exc:
                if exc.status != 404:
                    raise
        log.info("image %s is not present on this node; pulling it", image)
        try:
            await asyncio.wait_for(docker.images.pull(image), self._pull_timeout)
        except DockerError as exc:
            reason = exc.message
        except TimeoutError:
            reason = f"the pull did not finish in {self._pull_timeout:g} s"
        except (OSError, aiohttp.ClientError) as exc:
            reason = str(exc) or type(exc).__name__
        else:
            return
        raise TaskRejected(
            f"image {image} is not present on this node and cannot be pulled: {reason}"
        )

    async def start(self, a: Assignment) -> str:
        from aiodocker.exceptions import DockerError

        docker = self._client()
        c = a.spec.container
        files_dir = (
            str(self._dirs.task_dir(a.node_id, a.task_id)) if c.secrets or c.configs else None
        )
        resolv = await self.network.container_network(a) if self.network is not None else None
        config = container_config(a, files_dir, resolv)
        name = a.container_name
        container = None
        with _translate(f"create container {name}"):
            for attempt in range(2):
                try:
                    container = await docker.containers.create(config, name=name)
                    break
                except DockerError as exc:
                    if exc.status == 409 and attempt == 0:
                        existing = await self._existing(name, a)
                        if existing is not None:
                            self._started[a.task_id] = existing
                            return existing
                        continue
                    if exc.status == 404 or "bind source path does not exist" in exc.message:
                        raise TaskRejected(
                            f"cannot create container {name}: {exc.message}"
                        ) from exc
                    raise
        if container is None:
            raise DriverError(f"cannot create container {name}: the name stays in use")
        try:
            with _translate(f"start container {name}"):
                await container.start()
        except DriverError as exc:
            with contextlib.suppress(DriverError):
                with _translate(f"remove container {name}"):
                    await container.delete(force=True, v=True)
            raise _start_error(a, name, exc) from exc.__cause__
        self._started[a.task_id] = container.id
        if resolv is not None:
            await self._observe(container)  # wires the container into its networks
        return container.id

    async def _existing(self, name: str, a: Assignment) -> str | None:
        """A container named like ``a`` exists: reuse it if it runs ``a``, else clear it."""
        from aiodocker.exceptions import DockerError

        docker = self._client()
        try:
            info = await docker.containers.get(name)
        except DockerError as exc:
            if exc.status == 404:
                return None
            raise
        labels = info["Config"].get("Labels") or {}
        mine = (labels.get(LABEL_TASK_ID), labels.get(LABEL_CLUSTER), labels.get(LABEL_NODE))
        if mine != (a.task_id, a.cluster_id, a.node_id):
            raise DriverError(
                f"a container named {name} exists that is not task {a.task_id} of this node; "
                "shoal leaves it alone: remove or rename it"
            )
        if info["State"].get("Running"):
            return str(info["Id"])
        await info.delete(force=True, v=True)
        return None

    # -- observe ---------------------------------------------------------------------------

    async def _find(self, ref: TaskRef) -> DockerContainer | None:
        docker = self._client()
        filters = {
            "label": [
                f"{LABEL_TASK_ID}={ref.task_id}",
                f"{LABEL_CLUSTER}={ref.cluster_id}",
                f"{LABEL_NODE}={ref.node_id}",
            ]
        }
        with _translate(f"find the container of task {ref.task_id}"):
            found = await docker.containers.list(all=True, filters=json.dumps(filters))
        if not found:
            return None
        running = [c for c in found if c["State"] == "running"]
        return (running or found)[0]

    async def _follow(self, ref: TaskRef) -> DockerContainer | None:
        """The task's container: the one started here, else the one its labels name."""
        known = self._started.get(ref.task_id)
        if known is not None:
            return self._client().containers.container(known)
        return await self._find(ref)

    async def inspect(self, a: TaskRef) -> Observation:
        container = await self._follow(a)
        if container is None:
            return Observation("missing")
        obs = await self._observe(container)
        if obs.state == "missing" and a.task_id in self._started:
            del self._started[a.task_id]  # gone: look again by label
            return await self.inspect(a)
        return obs

    async def _observe(self, container: DockerContainer) -> Observation:
        from aiodocker.exceptions import DockerError

        with _translate("inspect a container"):
            try:
                info = await container.show()
            except DockerError as exc:
                if exc.status == 404:
                    return Observation("missing")
                raise
        state: dict[str, Any] = info.get("State") or {}
        health = _HEALTH.get(str((state.get("Health") or {}).get("Status", "")))
        status = state.get("Status", "")
        pid = state.get("Pid")
        if status == "running" and self.network is not None and isinstance(pid, int) and pid > 0:
            if (info.get("HostConfig") or {}).get("NetworkMode") == "none":
                task_id = ((info.get("Config") or {}).get("Labels") or {}).get(LABEL_TASK_ID)
                if task_id:
                    self.network.attach_container(str(task_id), pid)
        if status in ("running", "paused", "restarting"):
            return Observation("running", container.id, health=health)
        if status == "created":
            return Observation("missing", container.id)
        error = str(state.get("Error") or "")
        if state.get("OOMKilled"):
            error = "out of memory (OOM killed)" + (f": {error}" if error else "")
        code = state.get("ExitCode")
        return Observation(
            "exited",
            container.id,
            exit_code=int(code) if isinstance(code, int) else None,
            health=health,
            error=error,
        )

    async def wait(self, a: TaskRef) -> Observation:
        from aiodocker.exceptions import DockerError

        container = await self._follow(a)
        if container is None:
            return Observation("missing")
        with _translate(f"wait for the container of task {a.task_id}"):
            try:
                await container.wait(condition="not-running")
            except DockerError as exc:
                if exc.status != 404:
                    raise
        obs = await self._observe(container)
        if obs.state == "missing":
            self._started.pop(a.task_id, None)
        return obs

    # -- stop / remove ---------------------------------------------------------------------

    async def stop(self, a: TaskRef, grace: float) -> None:
        from aiodocker.exceptions import DockerError

        container = await self._find(a)
        if container is None or container["State"] != "running":
            return
        with _translate(f"stop the container of task {a.task_id}"):
            try:
                info = await container.show()
                signal = (info.get("Config") or {}).get("StopSignal") or DEFAULT_STOP_SIGNAL
                await container.kill(signal=signal)
                try:
                    await asyncio.wait_for(container.wait(condition="not-running"), grace)
                    return
                except TimeoutError:
                    pass
                await container.kill(signal="SIGKILL")
                await asyncio.wait_for(container.wait(condition="not-running"), self._kill_timeout)
            except DockerError as exc:
                if exc.status not in (404, 409):  # gone, or not running any more
                    raise

    async def remove(self, a: TaskRef) -> None:
        from aiodocker.exceptions import DockerError

        docker = self._client()
        filters = {
            "label": [
                f"{LABEL_TASK_ID}={a.task_id}",
                f"{LABEL_CLUSTER}={a.cluster_id}",
                f"{LABEL_NODE}={a.node_id}",
            ]
        }
        with _translate(f"remove the container of task {a.task_id}"):
            for container in await docker.containers.list(all=True, filters=json.dumps(filters)):
                try:
                    await container.delete(force=True, v=True)
                except DockerError as exc:
                    if exc.status not in (404, 409):  # gone, or removal already in progress
                        raise
        self._started.pop(a.task_id, None)
        self._dirs.remove(a.node_id, a.task_id)

    async def adopt(self) -> list[Owned]:
        docker = self._client()
        filters = {"label": [LABEL_TASK_ID]}
        with _translate("list shoal's containers"):
            found = await docker.containers.list(all=True, filters=json.dumps(filters))
        owned: list[Owned] = []
        for container in found:
            item = owned_from_labels(container["Labels"] or {}, container.id)
            if item is None:
                log.warning("container %s has malformed shoal labels; ignoring it", container.id)
                continue
            owned.append(item)
            on_networks = (container["HostConfig"] or {}).get("NetworkMode") == "none"
            if self.network is not None and on_networks and container["State"] == "running":
                with contextlib.suppress(DriverError):
                    await self._observe(container)  # gives the network its namespace (pid)
        return owned

    async def sweep(self, node_id: str, keep: Collection[str]) -> None:
        self._dirs.sweep(node_id, keep)

    async def logs(
        self, a: TaskRef, *, tail: int | None = None, follow: bool = False, since: int = 0
    ) -> AsyncIterator[bytes]:
        container = await self._find(a)
        if container is None:
            return
        params: dict[str, Any] = {"tail": "all" if tail is None else str(tail), "timestamps": True}
        if since:
            params["since"] = str(since // 1_000_000_000)  # whole seconds: the caller filters
        with _translate(f"read the logs of task {a.task_id}"):
            if follow:
                async for piece in container.log(stdout=True, stderr=True, follow=True, **params):
                    yield piece.encode()
            else:
                for piece in await container.log(stdout=True, stderr=True, **params):
                    yield piece.encode()

    async def usage(self, refs: Iterable[TaskRef]) -> dict[str, TaskCounters]:
        """Each running task's counters from the engine's stats, one read per container
        (``stream=false``, ``one-shot``: no second sample is waited for; the caller takes
        the CPU delta between its own samples)."""
        out: dict[str, TaskCounters] = {}
        for ref in refs:
            container_id = self._started.get(ref.task_id)
            if container_id is None:
                container = await self._find(ref)
                if container is None:
                    continue
                container_id = container.id
            try:
                with _translate(f"read the stats of task {ref.task_id}"):
                    stats = await self._client()._query_json(
                        f"containers/{container_id}/stats",
                        params={"stream": "false", "one-shot": "true"},
                        timeout=10,
                    )
            except DriverError as exc:
                log.debug("no usage for task %s: %s", ref.task_id, exc)
                continue
            counters = docker_counters(stats)
            if counters is not None:
                out[ref.task_id] = counters
        return out

    async def close(self) -> None:
        if self._docker is not None:
            docker, self._docker = self._docker, None
            await docker.close()


@contextlib.contextmanager
def _translate(what: str) -> Iterator[None]:
    """Turn the engine's and aiohttp's exceptions into :class:`DriverError`."""
    import aiohttp
    from aiodocker.exceptions import DockerError

    try:
        yield
    except DockerError as exc:
        raise DriverError(f"cannot {what}: {exc.message}") from exc
    except (OSError, aiohttp.ClientError) as exc:
        raise DriverError(f"cannot {what}: Docker Engine is unreachable ({exc})") from exc
    except TimeoutError as exc:
        raise DriverError(f"cannot {what}: Docker Engine did not answer in time") from exc


def _start_error(a: Assignment, name: str, exc: DriverError) -> DriverError:
    cause = exc.__cause__
    message = getattr(cause, "message", None) or str(exc)
    if _PORT_IN_USE.search(message):
        ports = host_ports(a)
        named = [p for p in ports if p.published and re.search(rf":{p.published}\b", message)]
        shown = ", ".join(f"{p.published}/{p.protocol}" for p in (named or ports))
        return DriverError(
            f"host port {shown} is already in use on this node, so task {a.task_id} cannot "
            f"publish it ({message})"
        )
    return DriverError(f"cannot start container {name}: {message}")
