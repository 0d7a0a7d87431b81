"""A reply is matched to a pending request only when it arrives on a topic that can carry
the answer: a node cannot answer, on its own status topic, a request a manager sent elsewhere."""

from __future__ import annotations

import asyncio
import ssl

import pytest

from broker.envelope import MAX_MESSAGE_BYTES, Envelope, encode
from broker.errors import MessageTooLarge, NotConnected
from broker.session import Session, SessionConfig
from broker.topics import Topics, answers, enroll_req, enroll_resp

T = Topics("c1")


@pytest.mark.parametrize(
    ("request_topic", "reply_topic", "ok"),
    [
        (T.mgr_req("leader"), T.mgr_req("me"), True),  # a forwarded command's answer
        (T.node_resp("n1"), T.node_req("n1"), True),  # a node's logs, asked by a manager
        (T.node_req("n1"), T.node_resp("n1"), True),  # a renewal's answer to the node
        (enroll_req("j1"), enroll_resp("j1"), True),
        (T.mgr_req("leader"), T.node_status("w1"), False),
        (T.mgr_req("leader"), T.node_req("w1"), False),
        (T.node_resp("n1"), T.node_req("w2"), False),  # another node cannot answer for n1
        (T.node_resp("n1"), T.node_status("n1"), False),
        (enroll_req("j1"), enroll_resp("j2"), False),
        (T.mgr_req("leader"), "", False),
    ],
)
def test_which_topics_may_carry_an_answer(request_topic: str, reply_topic: str, ok: bool) -> None:
    assert answers(request_topic, reply_topic) is ok


def _session() -> Session:
    return Session(
        SessionConfig(
            host="127.0.0.1", port=1, client_id="me", sender="me", tls=ssl.create_default_context
        )
    )


async def test_a_forged_answer_on_a_status_topic_is_rejected_and_the_real_one_is_taken() -> None:
    s = _session()
    seen: list[Envelope] = []

    async def handler(topic: str, env: Envelope) -> None:
        seen.append(env)

    s.on(T.all_nodes("status"), handler)
    s.on(T.mgr_req("me"), handler)
    status_raw, req_raw = s._subs[0][2], s._subs[1][2]
    sent = asyncio.Event()

    async def publish(topic: str, payload: bytes, **kw: object) -> None:
        sent.set()

    s.publish = publish  # type: ignore[method-assign]
    fut = asyncio.ensure_future(s.request(T.mgr_req("leader"), "control", {}, timeout=5))
    await sent.wait()  # the request (seq 1) is out
    forged = Envelope("control-reply", "w1", 1, {"ok": True, "result": "forged"}, re=1)
    await status_raw(T.node_status("w1"), encode(forged))
    await asyncio.wait({fut}, timeout=0.2)
    assert not fut.done() and not seen
    assert s.rejections.counts["an answer on a topic that cannot carry it"] == 1

    real = Envelope("control-reply", "leader", 9, {"ok": True, "result": "real"}, re=1)
    await req_raw(T.mgr_req("me"), encode(real))
    assert (await fut).body["result"] == "real"


async def test_a_message_over_the_brokers_limit_is_refused_before_it_is_sent() -> None:
    """The broker ends the connection of a client that sends an oversize packet: the session
    refuses such a message itself (here with no connection at all: nothing is attempted)."""
    s = _session()
    with pytest.raises(MessageTooLarge, match="over the 4,194,304-byte limit"):
        await s.publish(T.node_assign("n1"), b"x" * (MAX_MESSAGE_BYTES + 1), timeout=0.1)
    with pytest.raises(NotConnected):  # a message at the limit goes on to be sent
        await s.publish(T.node_assign("n1"), b"x" * MAX_MESSAGE_BYTES, timeout=0.1)
