"""The driver stops for good when the core refuses the manager's own state, instead of logging
the same error for every message: a follower whose log lost entries is told by its leader to
commit beyond its last index, and from then on it neither votes nor answers."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest

from agent.manager.raft import Message, MessageType, to_wire
from agent.manager.raft.storage import bootstrap_state
from agent.manager.raftdriver import ManagerHalted, MemoryLog, RaftDriver
from agent.manager.store import Store
from broker.envelope import Envelope, Rejections
from broker.topics import Topics


class FakeSession:
    """The part of `Session` the driver uses: handlers by topic, sends recorded."""

    def __init__(self) -> None:
        self.rejections = Rejections()
        self.handlers: dict[str, Any] = {}
        self.sent: list[dict[str, Any]] = []

    def on(self, topic: str, handler: Any, qos: int = 1) -> None:
        self.handlers[topic] = handler

    async def send(self, topic: str, type_: str, body: Any, qos: int = 1) -> None:
        self.sent.append(body)


def _driver() -> tuple[RaftDriver, FakeSession, str]:
    storage = MemoryLog()
    snap, hs = bootstrap_state(["a", "b", "c"])
    storage.apply_snapshot(snap)
    storage.set_hardstate(hs)
    session = FakeSession()
    topics = Topics("c1")
    driver = RaftDriver(
        node_id="a",
        storage=storage,
        store=Store(),
        session=session,  # type: ignore[arg-type]
        topics=topics,
        rng=random.Random(1),
        tick_interval=0.01,
    )
    return driver, session, topics.mgr_raft("a")


def _heartbeat(commit: int, term: int = 5) -> Envelope:
    msg = Message(type=MessageType.Heartbeat, to="a", frm="b", term=term, commit=commit)
    return Envelope(type="raft", sender="b", seq=1, body=to_wire(msg))


async def _halted_run(commit: int) -> tuple[RaftDriver, FakeSession, BaseException]:
    driver, session, topic = _driver()
    runner = asyncio.create_task(driver.run())
    await session.handlers[topic](topic, _heartbeat(commit))
    with pytest.raises(ManagerHalted) as info:
        await asyncio.wait_for(runner, 5)
    return driver, session, info.value


def test_a_commit_beyond_the_log_halts_the_driver_with_the_reason() -> None:
    driver, _, exc = asyncio.run(_halted_run(commit=415))
    assert "commit index 415 is beyond the last index 1" in str(exc)
    assert driver.failure == str(exc)


def test_a_halted_driver_ignores_every_later_message() -> None:
    async def scenario() -> tuple[int, int]:
        driver, session, _ = await _halted_run(commit=415)
        topic = Topics("c1").mgr_raft("a")
        sent, term = len(session.sent), driver.core.term
        for _ in range(50):  # no exception, no answer, no state change: it is stopped
            await session.handlers[topic](topic, _heartbeat(415, term=9))
        vote = Message(type=MessageType.Vote, to="a", frm="c", term=10, log_term=9, index=99)
        await session.handlers[topic](topic, Envelope("raft", "c", 2, to_wire(vote)))
        assert driver.core.term == term
        return sent, len(session.sent)

    before, after = asyncio.run(scenario())
    assert after == before


def test_a_heartbeat_within_the_log_does_not_halt() -> None:
    async def scenario() -> RaftDriver:
        driver, session, topic = _driver()
        runner = asyncio.create_task(driver.run())
        await session.handlers[topic](topic, _heartbeat(1))
        await asyncio.sleep(0.05)
        assert not runner.done()
        runner.cancel()
        return driver

    assert asyncio.run(scenario()).failure is None
