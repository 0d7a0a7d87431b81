"""The node daemon: one MQTT session with the node's certificate, certificate renewal
(agent/renewal.py), the local control socket (its commands routed by agent/model/registry.py),
autolock (agent/autolock.py), and — on managers — the manager role and the embedded broker."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import io
import logging
import os
import random
import signal
from typing import TYPE_CHECKING, Any

from agent import __version__
from agent.autolock import UnlockKey
from agent.control import ControlServer
from agent.model.errors import ShoalError
from agent.model.registry import COMMANDS, node_handlers
from agent.paths import DataDir, NodeConfig
from agent.removal import REMOVED_FILE, Removal, load_removal, remove_tasks, save_removal
from agent.renewal import Renewal
from agent.stopping import STOP_GRACE, StopSignals
from broker.envelope import Envelope, encode
from broker.errors import BrokerError
from broker.mosquitto_conf import ListenSpec
from broker.session import Session, SessionConfig, Will, keepalive_for
from broker.supervisor import Mosquitto
from broker.tls import REVOKED, client_context

if TYPE_CHECKING:
    from agent.natsbroker import LocalNats
from broker.topics import Topics
from certs.certinfo import read_cert_info

__all__ = ["STOP_GRACE", "Daemon", "connect_host"]

log = logging.getLogger("shoal.daemon")


def connect_host(listen_host: str) -> str:
    return "127.0.0.1" if listen_host in ("0.0.0.0", "", "::") else listen_host


def _halts_manager(exc: BaseException | None) -> bool:
    from agent.manager.raftdriver import ManagerHalted

    return isinstance(exc, ManagerHalted)


def _dump_tasks() -> None:
    """kill -USR2 <daemon pid>: write every asyncio task's stack to the log."""
    for task in asyncio.all_tasks():
        buf = io.StringIO()
        task.print_stack(file=buf)
        log.warning("task %s:\n%s", task.get_name(), buf.getvalue())


class Daemon:
    def __init__(self, data: DataDir, *, rng: random.Random | None = None) -> None:
        self.data = data
        self.node: NodeConfig = data.load_node()
        self.topics = Topics(self.node.cluster_id)
        self.rng = rng or random.Random()
        self.broker: Mosquitto | LocalNats | None = None
        self.enroll_endpoint: Any = None
        self.manager: Any = None
        self.driver: Any = None
        self._role_change: asyncio.Task[None] | None = None
        self._side_tasks: set[asyncio.Task[None]] = set()
        self._manager_tasks: list[asyncio.Task[Any]] = []
        self._exit_code = 0
        self._manager_error: str | None = None
        self.lock = UnlockKey(data)
        self._broker_host: Any = None
        self.session = self._make_session()
        self.renewal = Renewal(
            data, self.session, self.topics, self.node.node_id, self.rng, lambda: self.lock.key
        )
        self.agent = self._make_agent()
        from agent.logs import NodeLogs

        self.logs = NodeLogs(self.session, self.topics, self.node.node_id, self.agent.executor)
        self.control = ControlServer(data.socket, self.dispatch)
        self._handlers = node_handlers(self)
        self._stop = asyncio.Event()
        self._leaving = False
        self.removed: Removal | None = load_removal(data.root / REMOVED_FILE)
        self._removal: asyncio.Task[None] | None = None
        self._agent_task: asyncio.Task[None] | None = None
        self.session.on_revoked(self._on_revoked)
        self.metrics: Any = None
        if self.node.metrics_listen:
            from agent.metrics import for_daemon

            self.metrics = for_daemon(self)

    def _make_agent(self) -> Any:
        from agent.worker.node import NodeAgent, make_driver
        from agent.worker.taskfiles import load_node_key

        state = self.data.root / "worker"
        return NodeAgent(
            node_id=self.node.node_id,
            cluster_id=self.node.cluster_id,
            hostname=self.node.hostname,
            role=self.node.role,
            session=self.session,
            state_dir=state,
            driver=make_driver(self.node.driver, state),
            heartbeat=self.node.heartbeat,
            data_path_addr=self.node.data_path_addr or None,
            behind_nat=self.node.behind_nat,
            usage_interval=self.node.usage_interval,
            usage_path=self.data.root,
            key_loader=lambda: load_node_key(self.data.node_key, self.lock.key),
        )

    def _state_payload(self, status: str) -> bytes:
        body = {"status": status, "hostname": self.node.hostname, "role": self.node.role}
        return encode(Envelope(type="state", sender=self.node.node_id, seq=0, body=body))

    def _connect_timeout(self) -> float:
        """An attempt made while the broker hung may never complete: give up on it soon
        enough to try again within a couple of keepalives (10 s at most). A NATS server
        answers a CONNECT once JetStream has loaded the session, which takes longer."""
        timeout = min(10.0, max(5.0, 2.0 * keepalive_for(self.node.heartbeat)))
        return 20.0 if self.node.broker_backend == "nats" else timeout

    def _make_session(self) -> Session:
        d = self.data
        session = Session(
            SessionConfig(
                host=self.node.broker_host,
                port=self.node.broker_port,
                addresses=self.node.broker_addresses,
                client_id=self.node.node_id,
                sender=self.node.node_id,
                tls=lambda: client_context(
                    d.ca_cert, d.node_cert, d.node_key, key_password=self.lock.key
                ),
                will=Will(self.topics.node_state(self.node.node_id), self._state_payload("down")),
                clean_session=True,
                keepalive=keepalive_for(self.node.heartbeat),
                connect_timeout=self._connect_timeout(),
                rng=self.rng,
            )
        )
        session.on(self.topics.node_resp(self.node.node_id), self._on_unsolicited)

        async def announce() -> None:
            await session.publish(
                self.topics.node_state(self.node.node_id), self._state_payload("ready"), retain=True
            )

        session.on_connect(announce)
        return session

    async def _on_unsolicited(self, topic: str, env: Envelope) -> None:
        if self.logs.handles(env.type):
            self.logs.on_message(env)
            return
        if env.type == "ack":
            self.agent.managers_answered()
            return
        role = env.body.get("role") if isinstance(env.body, dict) else None
        if env.type == "role" and role in ("manager", "worker"):
            if role != self.node.role and self._role_change is None:
                self._role_change = asyncio.create_task(self._change_role(str(role)))
            return
        self.session.rejections.reject(topic, f"unexpected {env.type!r} message")

    async def _change_role(self, role: str) -> None:
        """Promotion or demotion: a certificate with the new role, then start or stop the
        manager role in this process. The node's id and its other work are unchanged."""
        try:
            if role == "worker":
                await self._stop_manager()
                self.lock.key = None  # autolock is for managers
            await self.renewal.renew()
            ident = read_cert_info(self.data.node_cert)
            if ident.role != f"shoal-{role}":
                raise ShoalError(f"the renewed certificate says {ident.role}")
            self.node = dataclasses.replace(self.node, role=role)
            self.data.save_node(self.node)
            if role == "manager":
                await self._start_manager()
                self._start_manager_tasks()
                self.session.reconnect()  # subscribe to the manager topics
            log.info("this node is now a %s", role)
        except (ShoalError, BrokerError) as exc:
            log.error("could not become a %s: %s", role, exc)
        finally:
            self._role_change = None

    def _start_manager_tasks(self) -> None:
        if self.driver is None:
            return  # the manager role was refused (see _manager_failed)
        for coro in (
            self.manager.events.run(),  # first: it sees the entries the driver replays
            self.driver.run(),
            self.manager.watch_forever(),
            self.manager.refresh_crl_forever(),
            self.manager.liveness_forever(),
            *self._latency_watch(),
        ):
            task = asyncio.create_task(coro)
            task.add_done_callback(self._critical_done)
            self._manager_tasks.append(task)

    def _latency_watch(self) -> list[Any]:
        if self.metrics is None:
            return []
        driver = self.driver
        return [self.metrics.latencies.watch(self.manager.store, lambda: driver.is_leader)]

    def _critical_done(self, task: asyncio.Task[Any]) -> None:
        if task.cancelled():
            return
        exc = task.exception()
        if _halts_manager(exc) and task in self._manager_tasks:
            from agent.manager.wal.errors import REJOIN

            self._manager_failed(f"{exc} (raft state in {self.data.raft}); {REJOIN}")
            halt = asyncio.get_running_loop().create_task(self._halt_manager())
            self._side_tasks.add(halt)
            halt.add_done_callback(self._side_tasks.discard)
            return
        if exc is not None:
            log.critical(
                "the manager stopped: %s; exiting so the node restarts clean", exc, exc_info=exc
            )
            self._exit_code = 1
            self._stop.set()

    def _manager_failed(self, reason: str) -> None:
        """The manager role cannot run on this node's state: it stays stopped, the rest of the
        node (its broker, its tasks) goes on, and `shoal info` says why (last_error)."""
        self._manager_error = (
            f"the manager role is stopped: {reason} (this node: {self.node.node_id})"
        )
        log.error("%s", self._manager_error)

    async def _halt_manager(self) -> None:
        """Stop the manager role and keep its state on disk as it is, for the operator."""
        tasks, self._manager_tasks = self._manager_tasks, []
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        if self.driver is not None:
            close = getattr(self.driver.storage, "close", None)
            if close is not None:
                close()
        if self.manager is not None:
            self.manager.detach()
        self.manager = None
        self.driver = None

    async def _stop_manager(self) -> None:
        """Demotion: stop the manager role and delete its state."""
        await self._halt_manager()
        import shutil

        shutil.rmtree(self.data.manager, ignore_errors=True)

    # the embedded broker and the manager role ----------------------------------------
    async def _start_broker(self) -> None:
        """The embedded broker needs no unlocking: it starts first, so the fleet stays
        connected while a locked manager waits for its key."""
        if not self.node.embedded_broker or self.broker is not None:
            return
        if self.node.broker_backend == "nats":
            from agent.natsbroker import LocalNats

            self.broker = LocalNats(self.data, self.node)
            self._broker_host = self.broker.host
            await self.broker.start()
            return
        from agent.manager.broker_host import BrokerHost

        listen = ListenSpec(self.node.listen_host, self.node.broker_port, self.node.enroll_port)
        self._broker_host = BrokerHost(self.data.broker, self.node.cluster_id, listen)
        self.broker = Mosquitto(
            self._broker_host.files,
            connect_host=connect_host(self.node.listen_host),
            ports=(self.node.broker_port, self.node.enroll_port),
        )
        await self.broker.start()

    async def _start_manager(self) -> None:
        from agent.manager.manager import open_manager
        from agent.manager.raft import RaftError

        advertise = self.node.advertise_host or self.node.broker_host
        try:
            self.manager = open_manager(
                node_id=self.node.node_id,
                work_dir=self.data.manager,
                raft_dir=self.data.raft,
                unlock_key=self.lock.key,
                session=self.session,
                topics=self.topics,
                rng=self.rng,
                broker_host=self._broker_host,
                reload_broker=self.broker.reload if self.broker else None,
                join_address=f"{advertise}:{self.node.broker_port}",
                kick_address=(self.node.broker_host, self.node.broker_port),
                cluster_port=self.node.broker_port,
                version=__version__,
            )
        except RaftError as exc:  # damaged or lost raft state: refuse, keep it for the operator
            self._manager_failed(str(exc))
            return
        self.manager.on_unlock_key = self.lock.changed
        self.driver = self.manager.driver
        if self.node.broker_backend == "nats" and self.enroll_endpoint is None:
            from agent.natsbroker import enroll_endpoint

            self.enroll_endpoint = enroll_endpoint(self.data, self.node, self.session)
            if self.enroll_endpoint is not None:
                await self.enroll_endpoint.start()

    # control commands ----------------------------------------------------------------
    def _need_manager(self) -> Any:
        if self.manager is None and self._manager_error is not None:
            raise ShoalError(f"{self._manager_error}")
        if self.manager is None:
            raise ShoalError(
                "This node is not a swarm manager. Worker nodes can't be used to view or modify"
                " cluster state. Please run this command on a manager node."
            )
        return self.manager

    async def dispatch(self, cmd: str, args: dict[str, Any]) -> Any:
        """Answer a control socket command where the registry says it runs."""
        command = COMMANDS.get(cmd)
        if command is None or not command.socket:
            command = None
        if self._locked() and not (command is not None and command.when_locked):
            raise ShoalError(
                "Swarm is encrypted and needs to be unlocked before it can be used."
                " Please use `shoal swarm unlock` to unlock it."
            )
        if command is None:
            raise ShoalError(f"unknown command {cmd!r}")
        handler = self._handlers.get(cmd)
        if handler is not None:
            return await handler(args)
        return await self._need_manager().command(cmd, args)

    async def _info(self, args: dict[str, Any]) -> dict[str, Any]:
        from agent.nodeinfo import node_info

        return node_info(self)

    async def _system_df(self, args: dict[str, Any]) -> dict[str, Any]:
        from agent.nodeinfo import disk_usage

        return disk_usage(self)

    def _event_counts(self) -> dict[str, int | None]:
        """Events kept for `shoal events`, and those this leader published or dropped."""
        m = self.manager
        return {
            "events_kept": len(m.events.recent) if m else None,
            "events_published": m.leader.events.published if m else None,
            "events_dropped": m.leader.events.dropped if m else None,
        }

    async def _cmd_unlock(self, args: dict[str, Any]) -> dict[str, Any]:
        self.lock.unlock(self.node.role, str(args.get("key", "")))
        return {"unlocked": True}

    async def _force_new_cluster(self, args: dict[str, Any]) -> dict[str, Any]:
        from agent.forcenew import force_new_cluster

        return await force_new_cluster(self, args)

    async def _cmd_renew(self, args: dict[str, Any]) -> dict[str, Any]:
        await self.renewal.renew()
        return {"ok": True}

    async def _service_logs(self, args: dict[str, Any]) -> Any:
        """A batch of lines, or with ``follow`` an async iterator of batches (the control
        socket streams them until the follower goes away)."""
        manager = self._need_manager()
        if args.get("follow"):
            return manager.logs.follow(manager.store.view, args)
        return await manager.logs.once(manager.store.view(), args)

    async def _events(self, args: dict[str, Any]) -> Any:
        """`shoal events`: an async iterator of batches of events (the control socket streams
        them until the range ends or the caller goes away)."""
        return self._need_manager().events.follow(args)

    async def _node_ls(self, args: dict[str, Any]) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = await self._need_manager().command("node-ls", args)
        for n in result:
            n["self"] = n["id"] == self.node.node_id
        return result

    async def _node_demote(self, args: dict[str, Any]) -> str:
        if self._is_self(args.get("node")):
            return await self._demote_self(args)
        return str(await self._need_manager().command("node-demote", args))

    def preset_unlock_key(self, key: str) -> None:
        """For `swarm init --autolock --foreground`: the key is known at start."""
        self.lock.key = key

    def _locked(self) -> bool:
        return self.lock.locked(self.node.role)

    # leaving the swarm ---------------------------------------------------------------
    async def _leave_prepare(self, args: dict[str, Any]) -> dict[str, Any]:
        if self.node.embedded_broker and self.manager is not None:
            from agent.manager.store import Node

            view = self.manager.store.view()
            others = [
                n.id for n in view.list(Node) if n.id != self.node.node_id and n.status == "ready"
            ]
            if others:
                raise ShoalError(
                    f"this node runs the swarm's embedded broker, which {len(others)} other"
                    " node(s) depend on: remove them first (`shoal node rm --force NODE`)"
                )
        if self.manager is not None:
            try:
                await self._leave_raft()
            except ShoalError as exc:
                if not args.get("force"):
                    raise
                return {"ok": False, "warning": str(exc)}
        return {"ok": True}

    async def _leave(self, args: dict[str, Any]) -> dict[str, Any]:
        if self.removed is None:  # a removed node has removed its tasks already
            await self._remove_tasks()
        self._leaving = True
        self._stop.set()
        return {"node_id": self.node.node_id}

    async def _leave_raft(self, timeout: float = 10.0) -> None:
        """Leave the managers' Raft group. Done when this manager has applied its own removal:
        the leader's answer may never come back, as the broker stops letting this node read
        the managers' topics as soon as the swarm has forgotten it."""
        pending = asyncio.ensure_future(
            self.manager.command("manager-leave", {"node": self.node.node_id})
        )
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline and self.node.node_id in self.driver.voters:
            if pending.done() and (
                pending.cancelled() or pending.exception() is not None or pending.result() == "last"
            ):
                break
            await asyncio.sleep(0.05)
        if self.node.node_id in self.driver.voters and len(self.driver.voters) > 1:
            pending.cancel()
            why = ""
            if pending.done() and not pending.cancelled() and pending.exception() is not None:
                why = f": {pending.exception()}"
            raise ShoalError(f"could not leave the managers' Raft group{why}; try again")
        pending.cancel()

    async def _remove_tasks(self, timeout: float = 30.0) -> None:
        """Leaving the swarm: stop and remove this node's tasks first, like Docker does.
        Assignment sets that arrive meanwhile are ignored: nothing starts again."""
        self.agent.leaving = True
        await self.agent.executor.set_assignments([])
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.agent.executor.status() and loop.time() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.1)  # the executor has no "all gone" event; poll it briefly

    # removal from the swarm (see agent.removal) ---------------------------------------
    def _on_revoked(self) -> None:
        if self.removed is None and self._removal is None:
            self._removal = asyncio.create_task(self._leave_after_removal())

    async def _leave_after_removal(self) -> None:
        """The swarm removed this node: its tasks go, then its networking (the agent's end,
        as when leaving), and the session stops trying a broker that refuses it for good."""
        removal = await remove_tasks(self.agent, "its certificate is revoked", self.removed)
        agent_task, self._agent_task = self._agent_task, None
        if agent_task is not None:
            agent_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await agent_task
        await self.session.close()
        save_removal(self.data.root / REMOVED_FILE, removal)
        self.removed = removal

    def _is_self(self, ref: object) -> bool:
        if self.manager is None or not isinstance(ref, str):
            return False
        try:
            return bool(self.manager.find_node(ref).id == self.node.node_id)
        except ShoalError:
            return False

    async def _demote_self(self, args: dict[str, Any]) -> str:
        """Demoting the node the CLI runs on: once demoted it can no longer read the answer
        on the managers' topics, so done is when this node has become a worker."""
        pending = asyncio.ensure_future(self._need_manager().command("node-demote", args))
        for _ in range(300):
            if pending.done() or self.node.role == "worker":
                break
            await asyncio.sleep(0.1)
        if pending.done() and pending.exception() is not None:
            raise pending.exception()
        if self.node.role != "worker":
            raise ShoalError("the demotion did not complete within 30 s")
        pending.cancel()
        return f"Manager {self.node.node_id} demoted in the swarm."

    # lifecycle -----------------------------------------------------------------------
    def stop(self) -> None:
        self._stop.set()

    async def run(self) -> int:
        self.data.pid_file.write_text(f"{os.getpid()}\n")
        loop = asyncio.get_running_loop()
        StopSignals(self.stop, self.data.pid_file).install(loop)
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signal.SIGUSR2, _dump_tasks)
        background: list[asyncio.Task[Any]] = []
        try:
            await self.control.start()
            await self._serve_metrics()
            await self._start_broker()
            if self.node.role == "manager" and self._locked():
                log.warning("this manager is locked: run `shoal swarm unlock` to start it")
                waiter = asyncio.ensure_future(self.lock.unlocked.wait())
                stopper = asyncio.ensure_future(self._stop.wait())
                await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
                waiter.cancel()
                stopper.cancel()
                if self._stop.is_set():
                    return self._exit_code
            if self.node.role == "manager":
                await self._start_manager()
            if self.removed is None:
                self.session.start()
            else:  # removed before this start: stop what still runs here, offline
                log.warning("%s", self.removed.describe())
                self.session.last_error = REVOKED  # what the broker last said, kept
                self._removal = asyncio.create_task(self._leave_after_removal())
            self._agent_task = agent_task = asyncio.create_task(self.agent.run())
            agent_task.add_done_callback(self._critical_done)
            background.append(agent_task)
            background.append(
                asyncio.create_task(self.renewal.forever(lambda: self.removed is not None))
            )
            if self.broker is not None:
                background.append(asyncio.create_task(self.broker.supervise()))
            if self.manager is not None:
                self._start_manager_tasks()
            log.info("node %s (%s) started", self.node.node_id, self.node.role)
            await self._stop.wait()
        finally:
            await self._shutdown(background)
        return self._exit_code

    async def _serve_metrics(self) -> None:
        if self.metrics is None:
            return
        try:
            await self.metrics.serve(self.node.metrics_listen)
        except ShoalError as exc:  # the node runs on without its metrics; the log says why
            log.error("%s; no metrics are served", exc)

    async def _shutdown(self, background: list[asyncio.Task[Any]]) -> None:
        background = background + self._manager_tasks
        if self._removal is not None:
            background.append(self._removal)
        if self.session.connected:
            status = "down"
            with contextlib.suppress(BrokerError, TimeoutError):
                await asyncio.wait_for(
                    self.session.publish(
                        self.topics.node_state(self.node.node_id),
                        self._state_payload(status),
                        retain=True,
                    ),
                    3,
                )
        for task in background:
            task.cancel()
        for task in background:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self.logs.close()
        if self.metrics is not None:
            await self.metrics.close()
        await self.session.close()
        await self.control.close()
        if self.enroll_endpoint is not None:
            await self.enroll_endpoint.close()
        if self.broker is not None:
            await self.broker.stop()
        with contextlib.suppress(FileNotFoundError):
            self.data.pid_file.unlink()
        log.info("node %s stopped", self.node.node_id)
