"""The AI turn: context, streaming, the takeover guard, and the three automatic handoffs."""

import asyncio

import pytest

from chat import keys
from chat.ai import AIError, ToolCall
from chat.ai_turn import build_context
from chat.auth import Identity
from chat.store.models import Message
from tests.wsclient import ScriptedProvider


async def start(h, sub="cust-1"):
    ws = await h.connect(sub)
    cid = (await ws.ok("conversation.start"))["conversation"]["id"]
    return ws, cid


async def test_context_is_history_with_roles_after_a_system_prompt(harness):
    ws, cid = await start(harness)
    await ws.ok("message.send", conversation_id=cid, client_msg_id="1", content="first question")
    await harness.drain_ai()
    await ws.ok("message.send", conversation_id=cid, client_msg_id="2", content="second question")
    await harness.drain_ai()
    last_call = harness.provider.calls[-1]
    assert last_call[0]["role"] == "system" and last_call[0]["content"] == harness.settings.ai_system_prompt
    assert [(m["role"], m["content"]) for m in last_call[1:]] == [
        ("user", "first question"), ("assistant", "Hello, world"), ("user", "second question")]


def test_context_is_bounded_by_characters():
    def msg(seq, sender, text, private=False):
        return Message(f"m{seq}", "c", seq, sender, None, text, private, None, 0)

    history = [msg(1, "customer", "a" * 50), msg(2, "agent", "note", private=True), msg(3, "ai", "b" * 30),
               msg(4, "system", "notice"), msg(5, "customer", "c" * 30)]
    ctx = build_context("SYS", history, max_chars=70)
    assert ctx == [{"role": "system", "content": "SYS"}, {"role": "assistant", "content": "b" * 30},
                   {"role": "user", "content": "c" * 30}]
    newest_only = build_context("SYS", [msg(1, "customer", "x" * 500)], max_chars=100)
    assert newest_only[1]["content"] == "x" * 100


async def test_takeover_while_generating_stores_no_ai_message(harness):
    provider: ScriptedProvider = harness.provider
    provider.gate = asyncio.Event()
    ws, cid = await start(harness)
    await ws.ok("message.send", conversation_id=cid, client_msg_id="1", content="hello?")
    await ws.event("ai.delta")  # the reply is streaming and now waits on the gate
    agent = Identity("agent-1", "agent")
    await harness.ops.staff.remember(agent)
    await harness.ops.assignment.claim(agent, cid)
    provider.gate.set()
    await harness.drain_ai()
    stored = await harness.app[keys.STORE].messages.list_of(cid)
    assert [m.sender_type for m in stored] == ["customer", "system"]  # no AI message after the assign
    assert (await harness.repository.get(cid)).state == "human"


async def test_guard_discards_a_reply_when_another_instance_moved_the_conversation(harness):
    """The version check at the write, not only the local cancel, keeps a stale reply out."""
    provider: ScriptedProvider = harness.provider
    provider.gate = asyncio.Event()
    ws, cid = await start(harness)
    await ws.ok("message.send", conversation_id=cid, client_msg_id="1", content="hello?")
    await ws.event("ai.delta")
    # another instance assigns the conversation: straight through the repository, no local cancel
    await harness.repository.fire(cid, "assign", agent_id="agent-elsewhere")
    provider.gate.set()
    await harness.drain_ai()
    runner = harness.app[keys.AI_RUNNER]
    assert runner.discarded == 1
    assert [m.sender_type for m in await harness.app[keys.STORE].messages.list_of(cid)] == ["customer"]


async def test_second_message_during_generation_gets_one_more_turn(harness):
    provider: ScriptedProvider = harness.provider
    provider.gate = asyncio.Event()
    ws, cid = await start(harness)
    await ws.ok("message.send", conversation_id=cid, client_msg_id="1", content="one")
    await ws.event("ai.delta")
    await ws.ok("message.send", conversation_id=cid, client_msg_id="2", content="two")
    await ws.ok("message.send", conversation_id=cid, client_msg_id="3", content="three")
    provider.gate.set()
    await harness.drain_ai()
    stored = await harness.app[keys.STORE].messages.list_of(cid)
    assert [m.sender_type for m in stored] == ["customer", "customer", "customer", "ai", "ai"]
    assert len(provider.calls) == 2
    assert [m["content"] for m in provider.calls[1] if m["role"] == "user"] == ["one", "two", "three"]


@pytest.mark.parametrize("phrase", ["我要转人工", "Can I TALK TO A HUMAN please", "人工客服在吗"])
async def test_keyword_handoff(harness, phrase):
    ws, cid = await start(harness)
    await ws.ok("message.send", conversation_id=cid, client_msg_id="1", content=phrase)
    upd = await ws.event("conversation.updated")
    assert upd["data"]["conversation"]["state"] == "handoff" and upd["data"]["reason"] == "keyword"
    await harness.drain_ai()
    assert harness.provider.calls == []  # no AI turn for a handoff phrase
    events = await harness.app[keys.STORE].events.list_of(cid)
    assert [(e.trigger, e.reason) for e in events] == [("request_handoff", "keyword")]


@pytest.mark.parametrize("text", ["human", "I am human", "人工", "agent"])
async def test_common_words_do_not_hand_off(harness, text):
    ws, cid = await start(harness)
    await ws.ok("message.send", conversation_id=cid, client_msg_id="1", content=text)
    await harness.drain_ai()
    assert (await harness.repository.get(cid)).state == "ai"


async def test_tool_call_handoff(harness_factory):
    h = await harness_factory(provider_=ScriptedProvider([ToolCall("transfer_to_human", {"reason": "refund dispute"})]))
    ws, cid = await start(h)
    await ws.ok("message.send", conversation_id=cid, client_msg_id="1", content="I want my money back")
    upd = await ws.event("conversation.updated")
    assert upd["data"]["conversation"]["state"] == "handoff"
    assert upd["data"]["reason"] == "ai_decision: refund dispute"
    await h.drain_ai()
    events = await h.app[keys.STORE].events.list_of(cid)
    assert [(e.trigger, e.actor_type, e.reason) for e in events] == [
        ("request_handoff", "ai", "ai_decision: refund dispute")]


@pytest.mark.parametrize(
    "chunks",
    [
        [AIError("Throttling.RateQuota", "retries exhausted", status=429)],
        ["partial answer", AIError("stream_error", "connection reset mid-stream")],
    ],
)
async def test_failed_turn_stores_nothing_and_hands_off(harness_factory, chunks):
    h = await harness_factory(provider_=ScriptedProvider(chunks))
    ws, cid = await start(h)
    await ws.ok("message.send", conversation_id=cid, client_msg_id="1", content="hi")
    upd = await ws.event("conversation.updated")
    assert upd["data"]["reason"] == "ai_failure" and upd["data"]["conversation"]["state"] == "handoff"
    await h.drain_ai()
    stored = await h.app[keys.STORE].messages.list_of(cid)
    assert [m.sender_type for m in stored] == ["customer", "system"]


async def test_failures_before_handoff_is_a_setting(harness_factory):
    h = await harness_factory(
        provider_=ScriptedProvider([AIError("http_500", "boom", status=500)]), ai_failures_before_handoff=2
    )
    ws, cid = await start(h)
    sent = (await ws.ok("message.send", conversation_id=cid, client_msg_id="1", content="hi"))["message"]
    await h.drain_ai()
    assert (await h.repository.get(cid)).state == "ai"
    failed = await ws.event("ai.failed")
    assert failed["data"] == {"conversation_id": cid, "reply_to": sent["id"], "code": "http_500"}
    await ws.ok("message.send", conversation_id=cid, client_msg_id="2", content="hello?")
    await h.drain_ai()
    assert (await h.repository.get(cid)).state == "handoff"


async def test_end_to_end_with_a_fake_dashscope_over_http(aiohttp_server, harness_factory):
    from tests.ai.fake_dashscope import FakeDashScope

    fake = FakeDashScope()
    server = await aiohttp_server(fake.app())
    h = await harness_factory(
        provider_=None, ai_provider="dashscope", dashscope_api_key=fake.api_key,
        dashscope_base_url=str(server.make_url("/api/v1")),
    )
    assert h.app[keys.AI_PROVIDER].name == "dashscope"  # built from the settings
    ws, cid = await start(h)
    await ws.ok("message.send", conversation_id=cid, client_msg_id="1", content="你好")
    created = await ws.event("message.created", lambda f: f["data"]["message"]["sender_type"] == "ai")
    assert created["data"]["message"]["content"] == "你好！我是通义千问。"
    assert fake.requests[-1]["json"]["input"]["messages"][-1] == {"role": "user", "content": "你好"}
    fake.release()
