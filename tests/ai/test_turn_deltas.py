"""What the customer sees of a streamed reply: one `ai.delta` per read of the provider's stream."""

from __future__ import annotations

import asyncio

from chat.ai import DashScopeProvider

from .fake_dashscope import FakeDashScope

REPLY = "你好！我是通义千问。"


async def _customer_asks(harness, text: str = "hello?"):
    ws = await harness.connect("cust-1")
    cid = (await ws.ok("conversation.start"))["conversation"]["id"]
    sent = await ws.ok("message.send", conversation_id=cid, client_msg_id="1", content=text)
    return ws, sent["message"]["id"]


def _is_ai_reply(frame: dict) -> bool:
    return frame["data"]["message"]["sender_type"] == "ai"


async def test_chunks_in_one_read_reach_the_customer_as_one_delta(harness_factory, session, fake: FakeDashScope,
                                                                  fake_base_url):
    fake.together = True  # the whole reply in one write: one read on our side
    h = await harness_factory(provider_=DashScopeProvider(session, api_key=fake.api_key, base_url=fake_base_url))
    ws, asked = await _customer_asks(h)
    delta = await ws.event("ai.delta")
    assert delta["data"] == {"conversation_id": delta["data"]["conversation_id"], "reply_to": asked,
                             "turn_id": delta["data"]["turn_id"], "index": 0, "delta": REPLY}
    stored = await ws.event("message.created", _is_ai_reply)
    assert stored["data"]["message"]["content"] == REPLY
    await h.drain_ai()
    assert [f for f in ws.events if f["type"] == "ai.delta"] == []  # no second delta


async def test_chunks_arriving_apart_stream_one_by_one(harness_factory, session, fake: FakeDashScope, fake_base_url):
    fake.gate = asyncio.Queue()  # the fake sends a chunk only once the customer has the one before
    h = await harness_factory(provider_=DashScopeProvider(session, api_key=fake.api_key, base_url=fake_base_url))
    ws, asked = await _customer_asks(h)
    seen = []
    for _ in fake.chunks:
        delta = await ws.event("ai.delta")
        assert delta["data"]["reply_to"] == asked and delta["data"]["index"] == len(seen)
        seen.append(delta["data"]["delta"])
        fake.gate.put_nowait(None)
    assert seen == ["你好", "！我是", "通义千问。"]
    stored = await ws.event("message.created", _is_ai_reply)
    assert stored["data"]["message"]["content"] == REPLY
