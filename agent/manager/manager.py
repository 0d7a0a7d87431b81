"""The manager role: builds the manager's components on top of the replicated store and
wires them to the node's MQTT session.

Every manager runs the Raft driver and applies the store. Only the leader acts on requests
from nodes (enrollment and renewal in ca_server.py, node state in nodes.py); a manager that is
not the leader forwards control commands to the leader over MQTT (forwarding.py), so the CLI
sees no difference. What each command is and which component answers it is in
agent/model/registry.py.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from agent.manager.broker_host import BrokerHost
from agent.manager.broker_sync import BrokerSync
from agent.manager.ca_server import CAServer
from agent.manager.commands import CommandRunner
from agent.manager.control.inspect import InspectAPI
from agent.manager.control.networks import NetworksAPI
from agent.manager.control.secrets import SecretsAPI
from agent.manager.control.services import ControlAPI
from agent.manager.control.stacks import StackAPI
from agent.manager.dispatcher import StatusLog
from agent.manager.eventlog import EventLog
from agent.manager.forwarding import Forwarding
from agent.manager.keys import DataKeyFile
from agent.manager.leader_components import LeaderComponents
from agent.manager.logstore import open_log
from agent.manager.nodes import Nodes
from agent.manager.raft import RaftError
from agent.manager.raftdriver import RaftDriver
from agent.manager.reconcile.outage import FleetWatch
from agent.manager.revocation import Revocation
from agent.manager.stack_topics import StackTopics
from agent.manager.store import Cluster, Event, Node, Store
from agent.manager.swarm import Swarm
from agent.manager.tasklogs import TaskLogs
from agent.model.errors import ShoalError
from agent.model.registry import leader_handlers
from broker.session import Session
from broker.topics import ENROLL_REQ_FILTER, Topics
from certs import CertError

__all__ = ["Manager", "open_manager"]

log = logging.getLogger("shoal.manager")


class Manager:
    def __init__(
        self,
        *,
        node_id: str,
        work_dir: Path,
        store: Store,
        driver: RaftDriver,
        session: Session,
        topics: Topics,
        broker_host: BrokerHost | None,
        reload_broker: Callable[[], None] | None,
        join_address: str,
        kick_address: tuple[str, int],
        cluster_port: int,
        version: str = "",
    ) -> None:
        self.node_id = node_id
        self.store = store
        self.driver = driver
        self.session = session
        self.topics = topics
        self._tasks: set[asyncio.Task[None]] = set()
        self.statuses = StatusLog(session)
        self.runner = CommandRunner(store, driver)
        self.fleet = FleetWatch()
        self.events = EventLog(store)
        self.leader = LeaderComponents(
            store=store,
            driver=driver,
            session=session,
            topics=topics,
            statuses=self.statuses,
            cluster_id=topics.cluster_id,
            fleet=self.fleet,
            events=self.events,
            broker_addresses=(f"mqtts://{join_address}",),
            version=version,
        )
        self.on_unlock_key: Callable[[str], None] | None = None
        self._build_ca(broker_host, reload_broker, work_dir, kick_address, cluster_port)
        self.nodes = Nodes(
            node_id=node_id,
            store=store,
            driver=driver,
            session=session,
            topics=topics,
            statuses=self.statuses,
            fleet=self.fleet,
            leader=self.leader,
            broker=self.broker,
            revocation=self.revocation,
            command=self.command,
        )
        self.swarm = Swarm(store=store, join_address=join_address)
        self.services = ControlAPI(store)
        self.logs = TaskLogs(session, topics, node_id)
        self.stacks = StackAPI(store)
        self.commands = leader_handlers(
            {
                "ca": self.ca,
                "nodes": self.nodes,
                "swarm": self.swarm,
                "services": self.services,
                "secrets": SecretsAPI(store),
                "inspect": InspectAPI(
                    store, leadership=lambda: (driver.leader_id, tuple(driver.voters))
                ),
                "networks": NetworksAPI(store),
                "stacks": self.stacks,
            }
        )
        self.forwarding = Forwarding(
            driver=driver,
            session=session,
            topics=topics,
            runner=self.runner,
            commands=self.commands,
        )
        self._subscribe()

    def _build_ca(
        self,
        broker_host: BrokerHost | None,
        reload_broker: Callable[[], None] | None,
        work_dir: Path,
        kick_address: tuple[str, int],
        cluster_port: int,
    ) -> None:
        """The broker's files, revocation and the CA server, which the nodes rely on."""
        node_id, store, driver = self.node_id, self.store, self.driver
        session, topics = self.session, self.topics
        self.broker = BrokerSync(
            node_id=node_id,
            store=store,
            session=session,
            topics=topics,
            broker_host=broker_host,
            reload_broker=reload_broker,
        )
        self.revocation = Revocation(
            node_id=node_id,
            work_dir=work_dir,
            store=store,
            kick_address=kick_address,
            broker=self.broker,
        )
        self.broker.relogin = self.revocation.take_over
        self.ca = CAServer(
            store=store,
            driver=driver,
            session=session,
            topics=topics,
            cluster_port=cluster_port,
            broker=self.broker,
            revocation=self.revocation,
        )

    def _subscribe(self) -> None:
        """Hand the manager's topics to the components that answer them."""
        session, topics = self.session, self.topics
        stack_topics = StackTopics(
            store=self.store,
            driver=self.driver,
            session=session,
            topics=topics,
            stacks=self.stacks,
            spawn=self._spawn,
        )
        session.on(topics.all_nodes("status"), self.statuses.on_status)
        session.on(ENROLL_REQ_FILTER, self.ca.on_enroll, spawn=True)
        session.on(topics.all_nodes("state"), self.nodes.on_node_state, spawn=True)
        session.on(topics.all_nodes("req"), self.ca.on_node_request, spawn=True)
        session.on(topics.mgr_req(self.node_id), self.forwarding.on_forwarded, spawn=True)
        self.logs.subscribe()
        session.on_raw(topics.mon("broker"), self.broker.on_announced)
        session.on_raw(topics.stack_ctl_filter, stack_topics.on_stack_ctl)
        self.leader.discovery.subscribe()
        session.on_connect(self._session_back)
        session.on_disconnect(lambda: self.fleet.lost(time.time()))

    def detach(self) -> None:
        """Stop handling manager topics (on demotion)."""
        t = self.topics
        self._background(asyncio.get_running_loop().create_task(self.leader.stop()))
        self.session.off(
            t.stack_ctl_filter,
            t.all_nodes("status"),
            ENROLL_REQ_FILTER,
            t.all_nodes("state"),
            t.all_nodes("req"),
            t.mgr_req(self.node_id),
            t.mon("broker"),
            t.mgr_raft(self.node_id),
            t.logs_for(self.node_id),
            self.leader.discovery.filter,
        )

    async def command(
        self,
        cmd: str,
        args: dict[str, Any],
        *,
        timeout: float = 15.0,
        request_id: str | None = None,
    ) -> Any:
        """Run a control command on the leader (see forwarding.py)."""
        return await self.forwarding.command(cmd, args, timeout=timeout, request_id=request_id)

    def find_node(self, ref: str) -> Node:
        return self.nodes.find_node(ref)

    async def watch_forever(self) -> None:
        """Keep the broker's files and the monitoring topics in step with the store."""
        self.broker.sync()
        async with self.store.watch("node", "client", "cluster") as q:
            await self._follow_discovery(self.store.view().get(Cluster, "cluster"))
            while True:
                ev = await q.get()
                batch = [ev]
                while not q.empty():
                    batch.append(q.get_nowait())
                for e in batch:
                    if isinstance(e, Event) and e.kind == "cluster" and isinstance(e.new, Cluster):
                        self._apply_unlock_key(e.new.unlock_key)
                        await self._follow_discovery(e.new)
                if any(
                    getattr(e, "kind", "") in ("client", "cluster")
                    or (getattr(e, "kind", "") == "node" and _role_changed(e))
                    for e in batch
                ):
                    self.broker.sync()
                if self.driver.is_leader:
                    for e in batch:
                        if getattr(e, "kind", "") == "node":
                            await self.nodes.publish(e.new, e.id)  # type: ignore[arg-type,union-attr]

    async def refresh_crl_forever(self, every: float = 86400.0) -> None:
        await self.revocation.refresh_crl_forever(every)

    async def liveness_forever(self, every: float = 1.0) -> None:
        await self.nodes.liveness_forever(every)

    async def _follow_discovery(self, cluster: Cluster | None) -> None:
        if cluster is not None:
            await self.leader.discovery.follow(cluster.home_assistant_prefix)

    def _apply_unlock_key(self, key: str) -> None:
        if self.on_unlock_key is not None:
            try:
                self.on_unlock_key(key)
            except (ShoalError, CertError, OSError) as exc:
                log.error("could not rewrap this manager's keys: %s", exc)

    def on_leadership(self, leader: bool) -> None:
        loop = asyncio.get_running_loop()
        if leader:
            self._background(loop.create_task(self.nodes.take_over()))
            self.leader.start()
        else:
            self._background(loop.create_task(self.leader.stop()))

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        self._background(asyncio.get_running_loop().create_task(coro))

    def _background(self, task: asyncio.Task[None]) -> None:
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _session_back(self) -> None:
        """This manager sees the broker again: the nodes it saw go get time to report back."""
        self.fleet.back(time.time())


def open_manager(
    *,
    node_id: str,
    work_dir: Path,
    raft_dir: Path,
    unlock_key: str | None,
    session: Session,
    topics: Topics,
    rng: random.Random,
    broker_host: BrokerHost | None,
    reload_broker: Callable[[], None] | None,
    join_address: str,
    kick_address: tuple[str, int],
    cluster_port: int,
    version: str = "",
) -> Manager:
    """The manager role on this node's state: its data key (made on first start), its Raft
    log and driver, the store they apply to. A RaftError says the Raft state is refused
    (damaged or lost): it is kept on disk as it is, for the operator."""
    work_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    keyfile = DataKeyFile(work_dir / "data-key")
    data_key = keyfile.load(unlock_key) if keyfile.exists() else keyfile.create(None)
    store = Store()
    storage = open_log(raft_dir, data_key)
    try:
        driver = RaftDriver(
            node_id=node_id,
            storage=storage,
            store=store,
            session=session,
            topics=topics,
            rng=rng,
        )
    except RaftError:
        storage.close()
        raise
    manager = Manager(
        node_id=node_id,
        work_dir=work_dir,
        store=store,
        driver=driver,
        session=session,
        topics=topics,
        broker_host=broker_host,
        reload_broker=reload_broker,
        join_address=join_address,
        kick_address=kick_address,
        cluster_port=cluster_port,
        version=version,
    )
    driver.on_leadership = manager.on_leadership
    store.proposer = driver.propose
    return manager


def _role_changed(e: Any) -> bool:
    """Whether the broker's ACL must change: a node came, went or changed role (every node
    has a section of its own in the ACL)."""
    old, new = e.old, e.new
    if old is None or new is None:
        return old is not new
    return bool(old.role != new.role)
