"""Stacks by topic, on the leader: an admin client publishes a Compose file on
``ctl/<admin>/stack/<stack>/deploy`` (or nothing on ``.../rm``) and reads the outcome, JSON and
retained, on ``.../result``: `shoal stack deploy|rm` without a control socket."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from agent.manager.cluster import serving
from agent.manager.control.stacks import StackAPI
from agent.manager.raftdriver import RaftDriver
from agent.manager.store import Client, ClientRole, Store
from agent.model.errors import ShoalError
from agent.model.stamps import now_text
from broker.errors import BrokerError
from broker.session import Session
from broker.topics import Topics

__all__ = ["StackTopics"]

log = logging.getLogger("shoal.manager")


class StackTopics:
    def __init__(
        self,
        *,
        store: Store,
        driver: RaftDriver,
        session: Session,
        topics: Topics,
        stacks: StackAPI,
        spawn: Callable[[Coroutine[Any, Any, None]], None],
    ) -> None:
        self.store = store
        self.driver = driver
        self.session = session
        self.topics = topics
        self.stacks = stacks
        self.spawn = spawn

    async def on_stack_ctl(self, topic: str, payload: bytes) -> None:
        parsed = Topics.parse_stack_ctl(topic)
        if parsed is None:
            self.session.rejections.reject(topic, "malformed stack control topic")
            return
        admin, stack, verb = parsed
        if verb == "result" or not self.driver.is_leader:
            return
        if verb not in ("deploy", "rm"):
            self.session.rejections.reject(topic, f"unknown stack verb {verb!r}")
            return
        client = self.store.view().get(Client, admin)
        if client is None or client.role != ClientRole.ADMIN:
            self.session.rejections.reject(topic, "stack control from a client that is not admin")
            return
        if verb == "deploy" and not payload:
            return  # a retained file being cleared
        self.spawn(self._stack_by_topic(admin, stack, verb, payload))

    async def _stack_by_topic(self, admin: str, stack: str, verb: str, payload: bytes) -> None:
        from stacks import StackError, load_stack_text
        from stacks.loader import check_size

        if not await serving(self.driver):
            return
        doc: dict[str, Any] = {
            "stack": stack,
            "verb": verb,
            "sha256": hashlib.sha256(payload).hexdigest(),
            "at": now_text(),
        }
        try:
            check_size(payload, f"{stack}.yml")  # before anything else reads it
            if verb == "deploy":
                spec = await asyncio.to_thread(  # a large file takes seconds: not on the loop
                    load_stack_text, payload, stack_name=stack, filename=f"{stack}.yml"
                )
                result = await self.stacks.deploy(spec)
                doc.update(ok=True, actions=result["actions"])
                doc["warnings"] = [w.message for w in spec.warnings]
            else:
                result = await self.stacks.rm({"stack": stack})
                doc.update(ok=True, actions=result["actions"])
            log.info("stack %s: %s by topic from %s", stack, verb, admin)
        except StackError as exc:
            doc.update(ok=False, errors=[str(e) for e in exc.errors])
        except ShoalError as exc:
            doc.update(ok=False, errors=[str(exc)])
        with contextlib.suppress(BrokerError):
            await self.session.publish(
                self.topics.stack_result(admin, stack), json.dumps(doc).encode(), retain=True
            )
