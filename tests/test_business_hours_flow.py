"""Business hours at work, in simulated time: outside them a handoff queues the conversation with one
notice saying when agents are back, the AI answers the customer's later messages while it waits, and
the notice and the AI's replies never cross (Chatwoot #5764, #9293); inside them nothing changes."""

from __future__ import annotations

import asyncio
from datetime import datetime
from zoneinfo import ZoneInfo

from chat import keys
from chat.conversations import texts
from states.business_hours import parse_hours
from tests.wsclient import ToolCall

HOURS = parse_hours("Mon-Fri 09:00-18:00")
NO_TIMERS = {"ai_idle_nudge_s": 0, "ai_idle_close_s": 0, "human_idle_close_s": 0, "sla_first_response_s": 0}


def shanghai_ms(*args: int) -> int:
    return int(datetime(*args, tzinfo=ZoneInfo("Asia/Shanghai")).timestamp() * 1000)


async def start(h):
    ws = await h.connect("cust-1")
    cid = (await ws.ok("conversation.start"))["conversation"]["id"]
    return ws, cid


async def stored(h, cid):
    return [(m.sender_type, m.content) for m in await h.app[keys.STORE].messages.list_of(cid)]


async def test_off_hours_handoff_says_when_agents_are_back_and_the_ai_answers_while_it_waits(
        harness_factory, sim_clock):
    sim_clock.ms = shanghai_ms(2027, 1, 2, 20, 0)  # a Saturday evening
    h = await harness_factory(business_hours=HOURS, **NO_TIMERS)
    ws, cid = await start(h)
    await ws.ok("message.send", conversation_id=cid, client_msg_id="1", content="转人工")
    await h.drain_ai()
    assert (await h.repository.get(cid)).state == "handoff"
    notice = texts.OUT_OF_HOURS.format(zh="1月4日（周一）09:00", en="Mon Jan 4, 09:00 (Asia/Shanghai)")
    assert await stored(h, cid) == [("customer", "转人工"), ("system", notice)]  # one notice, no AI reply to it
    assert h.provider.calls == []

    await ws.ok("message.send", conversation_id=cid, client_msg_id="2", content="where is my parcel?")
    await h.drain_ai()
    assert await stored(h, cid) == [("customer", "转人工"), ("system", notice),
                                    ("customer", "where is my parcel?"), ("ai", "Hello, world")]
    c = await h.repository.get(cid)
    assert (c.state, c.version) == ("handoff", 1)  # still waiting in the queue, unmoved
    assert [q[0] for q in await h.app[keys.STORE].conversations.handoff_queue()] == [cid]


async def test_an_ai_handoff_off_hours_gives_the_same_single_notice(harness_factory, provider, sim_clock):
    sim_clock.ms = shanghai_ms(2027, 1, 4, 8, 0)  # Monday, an hour before opening
    provider.chunks = [ToolCall("transfer_to_human", {"reason": "refund"})]
    h = await harness_factory(business_hours=HOURS, **NO_TIMERS)
    ws, cid = await start(h)
    await ws.ok("message.send", conversation_id=cid, client_msg_id="1", content="refund please")
    await h.drain_ai()
    notice = texts.OUT_OF_HOURS.format(zh="1月4日（周一）09:00", en="Mon Jan 4, 09:00 (Asia/Shanghai)")
    assert await stored(h, cid) == [("customer", "refund please"), ("system", notice)]


async def test_an_ai_handoff_while_it_already_waits_ends_the_streamed_reply(harness_factory, provider, sim_clock):
    """The AI answering a conversation that waits off hours asks for a human again: the conversation cannot
    move (it is in handoff already), and its stream still ends with ai.interrupted, nothing stored; it was
    left live, a partial reply stuck in every widget for the stream's lifetime."""
    sim_clock.ms = shanghai_ms(2027, 1, 2, 20, 0)  # a Saturday evening
    h = await harness_factory(business_hours=HOURS, **NO_TIMERS)
    ws, cid = await start(h)
    await ws.ok("message.send", conversation_id=cid, client_msg_id="1", content="转人工")
    await h.drain_ai()
    provider.chunks = ["Let me get a person. ", ToolCall("transfer_to_human", {"reason": "wants human"})]
    await ws.ok("message.send", conversation_id=cid, client_msg_id="2", content="a person please")
    await h.drain_ai()
    delta = await ws.event("ai.delta")
    ended = await ws.event("ai.interrupted")
    assert ended["data"] == {"conversation_id": cid, "turn_id": delta["data"]["turn_id"], "reason": "handoff"}
    resumed = await ws.ok("conversation.resume", conversation_id=cid)
    assert resumed["ai_stream"] is None
    assert [s for s, _ in await stored(h, cid)] == ["customer", "system", "customer"]


async def test_in_business_hours_the_ai_stays_quiet_while_a_conversation_waits(harness_factory, sim_clock):
    sim_clock.ms = shanghai_ms(2027, 1, 4, 10, 0)  # Monday morning
    h = await harness_factory(business_hours=HOURS, **NO_TIMERS)
    ws, cid = await start(h)
    await ws.ok("message.send", conversation_id=cid, client_msg_id="1", content="转人工")
    await ws.ok("message.send", conversation_id=cid, client_msg_id="2", content="hello?")
    await h.drain_ai()
    assert await stored(h, cid) == [("customer", "转人工"), ("system", texts.HANDOFF), ("customer", "hello?")]
    assert h.provider.calls == []


async def test_once_agents_are_expected_the_ai_stops_answering_the_waiting_conversation(harness_factory, sim_clock):
    sim_clock.ms = shanghai_ms(2027, 1, 3, 23, 0)  # Sunday night
    h = await harness_factory(business_hours=HOURS, **NO_TIMERS)
    ws, cid = await start(h)
    await ws.ok("message.send", conversation_id=cid, client_msg_id="1", content="转人工")
    sim_clock.ms = shanghai_ms(2027, 1, 4, 9, 30)  # Monday: agents are in
    await ws.ok("message.send", conversation_id=cid, client_msg_id="2", content="anyone?")
    await h.drain_ai()
    assert [s for s, _ in await stored(h, cid)] == ["customer", "system", "customer"]
    assert h.provider.calls == []


async def test_an_agent_claim_off_hours_ends_the_ai_answers(harness_factory, sim_clock):
    sim_clock.ms = shanghai_ms(2027, 1, 2, 20, 0)
    h = await harness_factory(business_hours=HOURS, **NO_TIMERS)
    ws, cid = await start(h)
    await ws.ok("message.send", conversation_id=cid, client_msg_id="1", content="转人工")
    agent = await h.connect("agent-1", role="agent")
    await agent.ok("conversation.claim", conversation_id=cid)
    await ws.ok("message.send", conversation_id=cid, client_msg_id="2", content="thanks")
    await h.drain_ai()
    assert [s for s, _ in await stored(h, cid)] == ["customer", "system", "system", "customer"]
    assert h.provider.calls == []


async def test_a_claim_while_the_ai_answers_a_waiting_conversation_interrupts_the_reply(harness_factory, sim_clock):
    from tests.test_ai_stream import CHUNKS, StepProvider, deltas_until

    sim_clock.ms = shanghai_ms(2027, 1, 2, 20, 0)
    provider = StepProvider(list(CHUNKS))
    h = await harness_factory(provider_=provider, business_hours=HOURS, **NO_TIMERS)
    ws, cid = await start(h)
    await ws.ok("message.send", conversation_id=cid, client_msg_id="1", content="转人工")
    await ws.ok("message.send", conversation_id=cid, client_msg_id="2", content="my parcel?")
    provider.allow(1)
    first = await deltas_until(ws, 1)
    agent = await h.connect("agent-1", role="agent")
    await agent.ok("conversation.claim", conversation_id=cid)  # handoff -> human while the AI writes
    interrupted = await ws.event("ai.interrupted")
    assert interrupted["data"]["turn_id"] == first[0]["turn_id"]
    provider.allow(len(CHUNKS))
    await h.drain_ai()
    assert "ai" not in [s for s, _ in await stored(h, cid)]


async def test_a_stream_emptied_from_redis_while_it_waits_off_hours_is_told_and_answered_again(
        harness_factory, provider, sim_clock):
    """The AI answers in handoff off hours; its stream vanished (Redis emptied) mid-reply: only a conversation
    in `ai` was answered again, this one kept a half reply and no answer."""
    sim_clock.ms = shanghai_ms(2027, 1, 2, 20, 0)  # a Saturday evening
    h = await harness_factory(business_hours=HOURS, **NO_TIMERS)
    ws, cid = await start(h)
    await ws.ok("message.send", conversation_id=cid, client_msg_id="1", content="转人工")
    await h.drain_ai()
    provider.gate = asyncio.Event()
    await ws.ok("message.send", conversation_id=cid, client_msg_id="2", content="where is my parcel?")
    first = await ws.event("ai.delta")
    await h.app[keys.REDIS].delete(h.app[keys.AI_RUNNER].streams.key(cid))
    provider.gate.set()
    await h.drain_ai()
    ended = await ws.event("ai.interrupted")
    assert ended["data"] == {"conversation_id": cid, "turn_id": first["data"]["turn_id"], "reason": "superseded"}
    assert [s for s, _ in await stored(h, cid)] == ["customer", "system", "customer", "ai"]
