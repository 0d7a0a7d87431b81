"""Control commands on the leader: each request runs once, however often it is delivered.

A control command gets a request id where it enters the cluster (the manager the CLI talks
to); forwarding and every resend after a leader change keep it. The leader answers a request
only while it is *serving* (an entry of its term committed and everything before it applied),
so it sees every write an earlier leader made. Then:

- a request the store's request table has answered gets that first answer again;
- a request whose writes an earlier leader applied but did not answer (it died in between)
  gets an error saying so, and is not applied a second time;
- a request already running here is waited for, not run twice;
- otherwise it runs as a new attempt: its transactions carry (request id, attempt id), which
  the store uses at apply to refuse the writes of any other attempt, and its reply is
  recorded (with its last write when the handler says so, else in an entry of its own).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

from agent.manager.raft import NotLeader, RaftError
from agent.manager.raftdriver import RaftDriver
from agent.manager.store import WRITE_ERRORS, AlreadyApplied, RequestRecord, Store, current_request
from agent.model.errors import ShoalError
from certs import CertError

__all__ = ["UNANSWERED", "CommandRunner", "Handler", "new_request_id", "result_of"]

# a reply that could not be written, or that msgpack cannot pack
_NOT_RECORDED: tuple[type[Exception], ...] = (*WRITE_ERRORS, TypeError)
log = logging.getLogger("shoal.commands")

Handler = Callable[[dict[str, Any]], Awaitable[Any]]

UNANSWERED = (
    "this command was applied by an earlier leader, which stopped before it answered; it was"
    " not applied again: check its outcome (e.g. `shoal service ls`) before trying again"
)


def new_request_id() -> str:
    return secrets.token_hex(12)


def result_of(reply: dict[str, Any]) -> Any:
    """The result of a reply, or its error as a ShoalError."""
    if reply.get("ok") is not True:
        raise ShoalError(str(reply.get("error") or "the command was refused"))
    return reply.get("result")


class CommandRunner:
    def __init__(self, store: Store, driver: RaftDriver) -> None:
        self.store = store
        self.driver = driver
        self._running: dict[str, asyncio.Task[dict[str, Any]]] = {}

    async def serve(
        self, request_id: str, handler: Handler, args: dict[str, Any], *, timeout: float = 5.0
    ) -> dict[str, Any]:
        """Run a request here, the leader, once: its reply ({"ok": ..., "result"/"error"}).
        NotLeader when this manager is not (or stops being) the leader meanwhile."""
        try:
            await self.driver.wait_serving(timeout)
        except NotLeader:
            raise
        except RaftError as exc:
            return {"ok": False, "error": str(exc)}
        run = self._running.get(request_id)  # running here: wait for it, even once it wrote
        if run is None:
            row = self.store.requests.get(request_id)
            if row is not None:
                return _replay(row)
            run = asyncio.get_running_loop().create_task(self._run(request_id, handler, args))
            self._running[request_id] = run
            run.add_done_callback(lambda _: self._running.pop(request_id, None))
        return await asyncio.shield(run)

    async def _run(self, request_id: str, handler: Handler, args: dict[str, Any]) -> dict[str, Any]:
        attempt = (request_id, secrets.token_hex(8))
        current_request.set(attempt)  # this task's own context: its writes carry the tag
        try:
            reply: dict[str, Any] = {"ok": True, "result": await handler(args)}
        except AlreadyApplied:
            row = self.store.requests.get(request_id)
            return _replay(row) if row is not None else {"ok": False, "error": UNANSWERED}
        except NotLeader:
            raise
        except (ShoalError, CertError) as exc:
            reply = {"ok": False, "error": str(exc)}
        row = self.store.requests.get(request_id)
        if row is not None and row.attempt == attempt[1] and row.reply is None:
            try:
                await self.store.answer(attempt, reply)
            except _NOT_RECORDED as exc:
                # the writes stand; a resend of this request is told it was applied
                log.warning("the reply to request %s was not recorded: %s", request_id, exc)
        return reply


def _replay(row: RequestRecord) -> dict[str, Any]:
    return row.reply if row.reply is not None else {"ok": False, "error": UNANSWERED}
