"""Control commands enter the cluster at any manager and run on the leader: run here when
this manager leads, else forwarded over MQTT (``mgr/<leader>/req``) and sent again, with the
same request id, when the leader changes meanwhile (see agent/manager/commands.py)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from typing import Any

from agent.manager.commands import CommandRunner, new_request_id, result_of
from agent.manager.raft import NotLeader
from agent.manager.raftdriver import RaftDriver
from agent.model.errors import ShoalError
from agent.model.registry import Handler
from broker.envelope import Envelope
from broker.errors import BrokerError
from broker.session import Session, raise_for_reply
from broker.topics import Topics

__all__ = ["Forwarding"]

log = logging.getLogger("shoal.manager")

_RESEND = object()
_NOT_LEADER = "this manager is no longer the leader; try again"


class Forwarding:
    def __init__(
        self,
        *,
        driver: RaftDriver,
        session: Session,
        topics: Topics,
        runner: CommandRunner,
        commands: Mapping[str, Handler],
    ) -> None:
        self.driver = driver
        self.session = session
        self.topics = topics
        self.runner = runner
        self.commands = commands

    async def command(
        self,
        cmd: str,
        args: dict[str, Any],
        *,
        timeout: float = 15.0,
        request_id: str | None = None,
    ) -> Any:
        """Run a control command here if this is the leader, else on the leader.

        The command enters the cluster here: it gets its request id (see
        agent/manager/commands.py). While there is no leader the command waits for one; when
        the leader changes while a forwarded command is in flight, it is sent again, with the
        same request id, to the new leader, which runs it only if nobody has.
        """
        handler = self.commands.get(cmd)
        if handler is None:
            raise ShoalError(f"unknown command {cmd!r}")
        request_id = request_id or new_request_id()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            left = deadline - loop.time()
            if left <= 0:
                raise ShoalError(
                    "the swarm has no leader right now (is a majority of managers up?); try again"
                )
            if self.driver.is_leader:
                try:
                    reply = await self.runner.serve(request_id, handler, args, timeout=left)
                except NotLeader:
                    continue  # lost leadership midway: the new leader runs it (or knows it ran)
                return result_of(reply)
            leader = self.driver.leader_id
            if leader is None:
                await self.driver.leader_changed(min(left, 1.0))
                continue
            result = await self._forward(leader, cmd, args, request_id, left)
            if result is not _RESEND:
                return result

    async def _forward(
        self, leader: str, cmd: str, args: dict[str, Any], request_id: str, timeout: float
    ) -> Any:
        """Send a command to the leader; _RESEND when another leader took over meanwhile (or
        the leader said it no longer is one)."""
        request = asyncio.ensure_future(
            self.session.request(
                self.topics.mgr_req(leader),
                "control",
                {"cmd": cmd, "args": args, "request": request_id},
                timeout=timeout,
            )
        )
        try:
            while not request.done():
                changed = asyncio.ensure_future(self.driver.leader_changed(timeout))
                await asyncio.wait({request, changed}, return_when=asyncio.FIRST_COMPLETED)
                changed.cancel()
                now = self.driver.leader_id
                if not request.done() and now is not None and now != leader:
                    log.info("leader changed while %r was forwarded to %s; resending", cmd, leader)
                    return _RESEND
            body = request.result().body
            if isinstance(body, dict) and body.get("retry") is True:
                if self.driver.leader_id == leader:
                    await self.driver.leader_changed(min(timeout, 1.0))
                return _RESEND
            return raise_for_reply(request.result()).get("result")
        except BrokerError as exc:
            raise ShoalError(str(exc)) from None
        finally:
            request.cancel()

    async def on_forwarded(self, topic: str, env: Envelope) -> None:
        """On the leader: run a command another manager forwarded, and answer it."""
        body = env.body if isinstance(env.body, dict) else {}
        cmd, args = body.get("cmd"), body.get("args")
        request_id = body.get("request")
        if (
            env.type != "control"
            or not isinstance(cmd, str)
            or not isinstance(args, dict)
            or not isinstance(request_id, str | None)
        ):
            self.session.rejections.reject(topic, "malformed forwarded command")
            return
        handler = self.commands.get(cmd)
        reply: dict[str, Any]
        if handler is None:
            reply = {"ok": False, "error": f"unknown command {cmd!r}"}
        else:
            try:
                if not self.driver.is_leader:
                    raise NotLeader(self.driver.leader_id)
                reply = await self.runner.serve(request_id or new_request_id(), handler, args)
            except NotLeader:
                reply = {"ok": False, "error": _NOT_LEADER, "retry": True}
        with contextlib.suppress(BrokerError):
            await self.session.send(
                self.topics.mgr_req(env.sender), "control-reply", reply, re=env.seq
            )
