"""Resumable AI streams (PROTOCOL 3.6, 3.7 S): a customer that reconnects to another instance mid-reply
resumes with S and then only the later deltas; a takeover mid-stream interrupts the reply, unstored."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest

from chat import keys
from chat.ai import AIError
from chat.ai_stream import APPEND_SCRIPT, STREAM_TTL_MS, AIStreams
from chat.auth import Identity
from states import redis_keys

CHUNKS = ["Once ", "upon ", "a ", "time, ", "a ", "reply ", "was ", "resumed."]


class StepProvider:
    """Yields one chunk each time the test allows one; counts the model calls."""

    name = "step"

    def __init__(self, chunks: list[str | Exception]):
        self.chunks = chunks
        self.health = {"status": "ok"}
        self.calls = 0
        self._allowed = asyncio.Semaphore(0)

    def allow(self, n: int = 1) -> None:
        for _ in range(n):
            self._allowed.release()

    async def stream(self, messages, *, tools=None):
        self.calls += 1
        for chunk in self.chunks:
            await self._allowed.acquire()
            if isinstance(chunk, Exception):
                raise chunk
            yield chunk


def streams(h) -> AIStreams:
    return h.app[keys.WS_SERVICES].streams


def is_ai_message(frame: dict) -> bool:
    return frame["data"]["message"]["sender_type"] == "ai"


async def ask(h, user: str = "cust-1"):
    ws = await h.connect(user)
    cid = (await ws.ok("conversation.start"))["conversation"]["id"]
    asked = (await ws.ok("message.send", conversation_id=cid, client_msg_id="q1", content="tell me"))["message"]
    return ws, cid, asked


async def deltas_until(ws, n: int) -> list[dict]:
    return [(await ws.event("ai.delta"))["data"] for _ in range(n)]


async def two_instances(harness_factory, mysql_database_url, provider):
    a = await harness_factory(database_url=mysql_database_url, provider_=provider, routing="manual")
    b = await harness_factory(database_url=mysql_database_url, provider_=provider, routing="manual")
    return a, b


@pytest.mark.parametrize("where", ["other", "same"])
@pytest.mark.parametrize("k", [1, 3, len(CHUNKS)])
async def test_a_customer_resuming_at_delta_k_ends_with_the_stored_reply(harness_factory, mysql_database_url, k,
                                                                        where):
    """On the other instance the deltas arrive from Redis after their append; on the turn's own instance
    they are delivered before it, and the resume's read must still see every one delivered before it."""
    provider = StepProvider(list(CHUNKS))
    a, b = await two_instances(harness_factory, mysql_database_url, provider)
    ws_a, cid, asked = await ask(a)
    provider.allow(k)
    seen = await deltas_until(ws_a, k)
    assert [d["index"] for d in seen] == list(range(k)) and len({d["turn_id"] for d in seen}) == 1
    await ws_a.close()  # the customer's connection drops; it comes back on either instance

    ws_b = await (b if where == "other" else a).connect("cust-1")
    provider.allow(len(CHUNKS) - k)  # the rest streams while the resume runs: the race it must win
    page = await ws_b.ok("conversation.resume", conversation_id=cid)
    stream = page["ai_stream"]
    early = [f for f in ws_b.events if f["type"] == "ai.delta"]  # before the reply
    if where == "other":
        assert early == []  # that instance heard nothing of the conversation before the resume subscribed
    elif stream is not None:  # the customer's socket hears its conversations: each delta before the reply is in S
        assert [f["data"]["index"] for f in early] == list(range(k, k + len(early)))
        assert all(f["data"]["index"] <= stream["index"] for f in early)
    for frame in early:
        ws_b.events.remove(frame)
    in_page = [m for m in page["messages"] if m["sender_type"] == "ai"]
    if in_page:  # the reply was stored before the resume read it: no stream then, and no delta after it
        assert stream is None and in_page[0]["content"] == "".join(CHUNKS)
        await a.drain_ai()
        assert [f for f in ws_b.events if f["type"] == "ai.delta"] == []
        return
    stored = await ws_b.event("message.created", is_ai_message)
    later = [f["data"] for f in ws_b.events if f["type"] == "ai.delta"]
    if stream is None:  # the stream ended (the reply about to be stored) before the read: no delta of it
        assert later == []
        return
    assert stream["turn_id"] == seen[0]["turn_id"] and stream["reply_to"] == asked["id"]
    assert stream["index"] >= k - 1
    assert [d["index"] for d in later] == list(range(stream["index"] + 1, len(CHUNKS)))  # no gap, no repeat
    text = stream["text"] + "".join(d["delta"] for d in later)
    assert text == stored["data"]["message"]["content"] == "".join(CHUNKS)
    await a.drain_ai()
    assert provider.calls == 1  # no second model call


async def test_a_resume_between_deltas_gets_s_and_then_each_later_delta_once(harness_factory, mysql_database_url):
    provider = StepProvider(list(CHUNKS))
    a, b = await two_instances(harness_factory, mysql_database_url, provider)
    ws_a, cid, asked = await ask(a)
    provider.allow(2)
    first = await deltas_until(ws_a, 2)
    ws_b = await b.connect("cust-1")
    page = await ws_b.ok("conversation.resume", conversation_id=cid)
    assert page["ai_stream"] == {"turn_id": first[0]["turn_id"], "reply_to": asked["id"], "index": 1,
                                 "text": "Once upon "}
    assert [m["sender_type"] for m in page["messages"]] == ["customer"]
    provider.allow(len(CHUNKS) - 2)
    stored = await ws_b.event("message.created", is_ai_message)
    later = [f["data"] for f in ws_b.events if f["type"] == "ai.delta"]
    assert [d["index"] for d in later] == list(range(2, len(CHUNKS)))
    assert page["ai_stream"]["text"] + "".join(d["delta"] for d in later) == stored["data"]["message"]["content"]
    await a.drain_ai()
    after = await ws_b.ok("conversation.resume", conversation_id=cid)
    assert after["ai_stream"] is None  # the turn is over


async def test_watch_during_a_turn_gets_s(harness_factory, mysql_database_url):
    provider = StepProvider(list(CHUNKS))
    a, b = await two_instances(harness_factory, mysql_database_url, provider)
    ws, cid, asked = await ask(a)
    provider.allow(3)
    await deltas_until(ws, 3)
    agent = await b.connect("agent-1", role="agent")
    page = await agent.ok("conversation.watch", conversation_id=cid)
    assert page["ai_stream"]["index"] == 2 and page["ai_stream"]["text"] == "Once upon a "
    provider.allow(1)
    assert (await agent.event("ai.delta"))["data"]["index"] == 3
    provider.allow(len(CHUNKS))
    await a.drain_ai()


async def test_a_takeover_mid_stream_interrupts_the_reply_and_stores_nothing(harness_factory, mysql_database_url):
    provider = StepProvider(list(CHUNKS))
    a, b = await two_instances(harness_factory, mysql_database_url, provider)
    ws, cid, asked = await ask(a)
    provider.allow(2)
    first = await deltas_until(ws, 2)
    agent = await b.connect("agent-1", role="agent")
    await agent.ok("conversation.claim", conversation_id=cid)  # on the other instance than the turn's
    interrupted = await ws.event("ai.interrupted")
    assert interrupted["data"] == {"conversation_id": cid, "turn_id": first[0]["turn_id"], "reason": "taken_over"}
    provider.allow(len(CHUNKS))  # the provider goes on; nothing of it reaches anyone
    await a.drain_ai()
    messages = await a.app[keys.STORE].messages.recent(cid, 50)
    assert "ai" not in {m.sender_type for m in messages}
    page = await ws.ok("conversation.resume", conversation_id=cid)
    assert page["ai_stream"] is None
    assert [f for f in ws.events if f["type"] == "ai.delta"] == []  # no delta after the interruption
    assert [f for f in agent.events if f["type"] == "ai.delta"] == []


async def test_a_close_mid_stream_on_the_turns_instance_interrupts_it(harness_factory):
    provider = StepProvider(list(CHUNKS))
    harness = await harness_factory(provider_=provider)
    ws, cid, _ = await ask(harness)
    provider.allow(1)
    first = await deltas_until(ws, 1)
    await ws.ok("conversation.close", conversation_id=cid)
    interrupted = await ws.event("ai.interrupted")
    assert interrupted["data"] == {"conversation_id": cid, "turn_id": first[0]["turn_id"], "reason": "closed"}
    await harness.drain_ai()
    assert "ai" not in {m.sender_type for m in await harness.app[keys.STORE].messages.recent(cid, 50)}


async def test_a_provider_failure_mid_stream_interrupts_the_reply(harness_factory):
    provider = StepProvider(["half a ", AIError("stream_error", "cut")])
    harness = await harness_factory(provider_=provider)
    ws, cid, _ = await ask(harness)
    provider.allow(2)
    first = await deltas_until(ws, 1)
    interrupted = await ws.event("ai.interrupted")
    assert interrupted["data"] == {"conversation_id": cid, "turn_id": first[0]["turn_id"], "reason": "ai_failure"}
    await harness.drain_ai()
    snapshot = await streams(harness).read(cid)
    assert snapshot.stream is None and snapshot.ended == first[0]["turn_id"]


async def test_the_stream_key_its_contents_and_ttl(harness_factory, redis):
    provider = StepProvider(list(CHUNKS))
    harness = await harness_factory(provider_=provider)
    ws, cid, asked = await ask(harness)
    provider.allow(2)
    first = await deltas_until(ws, 2)
    channel = harness.app[keys.HUB].interest.conversation(cid)
    key = f"ai:stream:{{{channel}}}"
    assert streams(harness).key(cid) == redis_keys.ai_stream(channel) == key
    assert await redis.lrange(key, 0, -1) == [first[0]["turn_id"].encode(), asked["id"].encode(), b"Once ", b"upon "]
    assert 0 < await redis.pttl(key) <= STREAM_TTL_MS
    provider.allow(len(CHUNKS))
    await harness.drain_ai()
    assert await redis.lrange(key, 0, -1) == [first[0]["turn_id"].encode()]  # ended: its deltas are not to be sent


async def test_a_delta_sent_again_after_it_ran_is_appended_and_published_once(redis):
    """A batch re-sent on a new connection after Redis ran it (the connection died before the replies came)
    runs each delta's script twice: the second finds it in place and says so, without appending or publishing
    it again; the turn goes on (a 0 would have ended it as if ended elsewhere)."""
    key, channel = "ai:stream:{test-resend}", "test-resend"
    await redis.delete(key)
    await redis.rpush(key, "turn-1", "message-1", "Once ")
    listener = redis.pubsub()
    await listener.execute_command("SSUBSCRIBE", channel)
    args = ["turn-1", 1, "upon ", STREAM_TTL_MS, channel, "payload"]
    assert [await redis.eval(APPEND_SCRIPT, 1, key, *args) for _ in range(2)] == [1, 1]
    assert await redis.lrange(key, 0, -1) == [b"turn-1", b"message-1", b"Once ", b"upon "]
    assert await redis.eval(APPEND_SCRIPT, 1, key, "turn-1", 0, "Once ", STREAM_TTL_MS, channel, "payload") == 1
    assert await redis.eval(APPEND_SCRIPT, 1, key, "turn-1", 1, "other ", STREAM_TTL_MS, channel, "payload") == 0
    assert await redis.eval(APPEND_SCRIPT, 1, key, "turn-2", 2, "a ", STREAM_TTL_MS, channel, "payload") == 0
    await redis.spublish(channel, "marker")  # after every publish of the scripts
    published: list[bytes] = []
    async with asyncio.timeout(10):
        while b"marker" not in published:
            message = await listener.get_message(timeout=1.0)
            published += [message["data"]] if message and message["type"] == "smessage" else []
    assert published == [b"payload", b"marker"]  # the delta published once
    await listener.aclose()
    await redis.delete(key)


def test_the_stream_key_shares_the_slot_of_the_channel():
    assert redis_keys.ai_stream("chat:events:c:abc") == "ai:stream:{chat:events:c:abc}"
    assert redis_keys.ai_stream("x{tag}:c:abc") == "ai:stream:{tag}"  # the part of the channel Redis hashes


async def test_a_new_turn_supersedes_a_stream_a_dead_turn_left(harness_factory):
    provider = StepProvider(list(CHUNKS))
    harness = await harness_factory(provider_=provider)
    ws = await harness.connect("cust-1")
    cid = (await ws.ok("conversation.start"))["conversation"]["id"]
    conversation = await harness.repository.get(cid)
    dead = await streams(harness).begin(conversation, "m-old")  # as a crashed instance left it
    assert await dead.delta("lost ")
    await ws.event("ai.delta")
    await ws.ok("message.send", conversation_id=cid, client_msg_id="q1", content="again")
    interrupted = await ws.event("ai.interrupted")
    assert interrupted["data"] == {"conversation_id": cid, "turn_id": dead.turn_id, "reason": "superseded"}
    assert not await dead.delta("more")  # the dead turn can no longer write or publish
    provider.allow(len(CHUNKS))
    await ws.event("message.created", is_ai_message)
    await harness.drain_ai()


async def test_a_stream_no_turn_holds_is_no_reply_in_progress(harness_factory, redis):
    """A Redis restored from an older snapshot (or a crashed instance) left a live stream that no turn
    holds the lock of: resume showed its half reply for up to STREAM_TTL_MS; it shows none now."""
    harness = await harness_factory(provider_=StepProvider(list(CHUNKS)))
    ws = await harness.connect("cust-1")
    cid = (await ws.ok("conversation.start"))["conversation"]["id"]
    left = await streams(harness).begin(await harness.repository.get(cid), "m-old")
    assert await left.delta("lost ")
    assert (await ws.ok("conversation.resume", conversation_id=cid))["ai_stream"] is None
    await redis.set(redis_keys.ai_turn(cid), "a-turn-elsewhere", px=60_000)  # a turn that holds it
    assert (await ws.ok("conversation.resume", conversation_id=cid))["ai_stream"]["text"] == "lost "


async def test_the_embedded_mode_resumes_a_reply_too(harness_factory):
    provider = StepProvider(list(CHUNKS))
    h = await harness_factory(embedded=True, provider_=provider)  # fakeredis runs the delta script
    ws, cid, asked = await ask(h)
    provider.allow(2)
    first = await deltas_until(ws, 2)
    tab = await h.connect("cust-1")
    page = await tab.ok("conversation.resume", conversation_id=cid)
    assert page["ai_stream"] == {"turn_id": first[0]["turn_id"], "reply_to": asked["id"], "index": 1,
                                 "text": "Once upon "}
    provider.allow(len(CHUNKS))
    stored = await tab.event("message.created", is_ai_message)
    later = [f["data"] for f in tab.events if f["type"] == "ai.delta"]
    assert page["ai_stream"]["text"] + "".join(d["delta"] for d in later) == stored["data"]["message"]["content"]


async def test_a_move_between_the_end_of_the_stream_and_the_store_still_interrupts(harness_factory):
    provider = StepProvider(list(CHUNKS[:2]))
    h = await harness_factory(provider_=provider)
    runner = h.app[keys.AI_RUNNER]
    ws, cid, _ = await ask(h)
    append = runner.messages.append

    async def closed_first(conversation, **kw):  # the customer closes right after the turn ended its stream
        await h.ops.conversations.close(Identity("cust-1", "customer"), cid)
        return await append(conversation, **kw)

    runner.ends.messages = SimpleNamespace(append=closed_first, ai_answers=runner.messages.ai_answers)
    provider.allow(2)
    first = await deltas_until(ws, 2)
    interrupted = await ws.event("ai.interrupted")
    assert interrupted["data"] == {"conversation_id": cid, "turn_id": first[0]["turn_id"], "reason": "closed"}
    await h.drain_ai()
    assert "ai" not in {m.sender_type for m in await h.app[keys.STORE].messages.recent(cid, 50)}


async def test_a_shutdown_mid_stream_interrupts_the_reply(harness_factory):
    provider = StepProvider(list(CHUNKS))
    h = await harness_factory(provider_=provider)
    ws, cid, _ = await ask(h)
    provider.allow(1)
    first = await deltas_until(ws, 1)
    await h.app[keys.AI_RUNNER].close()
    interrupted = await ws.event("ai.interrupted")
    assert interrupted["data"] == {"conversation_id": cid, "turn_id": first[0]["turn_id"], "reason": "shutdown"}
    assert (await streams(h).read(cid)).stream is None
