"""Messages over REST (POST /api/v1/conversations/{id}/messages): the WebSocket message.send's rules,
idempotency and events, on the real app (real Redis; SQLite and MariaDB)."""

from __future__ import annotations

import pytest

from chat import keys
from tests.api.support import assert_error


@pytest.fixture(params=["sqlite", "mysql"])
async def h(request, harness_factory):
    url = request.getfixturevalue("mysql_database_url") if request.param == "mysql" else None
    return await harness_factory(database_url=url, routing="manual")


async def post(h, cid: str, sub: str, role: str, body) -> tuple[int, dict]:
    resp = await h.client.post(f"/api/v1/conversations/{cid}/messages", json=body,
                               headers={"Authorization": f"Bearer {h.token(sub, role)}"})
    return resp.status, await resp.json()


def from_sender(kind):
    return lambda f: f["data"]["message"]["sender_type"] == kind


async def claimed_conversation(h, agent_sub="agent-rest"):
    """A customer socket on a conversation an agent socket has claimed."""
    cust = await h.connect("cust-rest")
    cid = (await cust.ok("conversation.start"))["conversation"]["id"]
    await cust.ok("handoff.request", conversation_id=cid)
    agent = await h.connect(agent_sub, role="agent")
    await agent.ok("conversation.claim", conversation_id=cid)
    return cust, agent, cid


async def test_the_assignee_writes_to_the_customer_and_a_resend_stores_nothing(h):
    cust, agent, cid = await claimed_conversation(h)
    status, m = await post(h, cid, "agent-rest", "agent", {"content": "您好, \"quoted\"", "client_msg_id": "b-1"})
    assert status == 201, m
    assert (m["sender_type"], m["sender_id"], m["private"], m["client_msg_id"], m["content"]) == (
        "agent", "agent-rest", False, "b-1", "您好, \"quoted\"")
    pushed = await cust.event("message.created", from_sender("agent"))
    assert pushed["data"] == {"conversation_id": cid, "message": m}  # the same M as the socket gets
    status, again = await post(h, cid, "agent-rest", "agent", {"content": "您好, \"quoted\"", "client_msg_id": "b-1"})
    assert (status, again) == (200, m)
    # the same idempotency key as the WebSocket's: a socket resending it gets the stored message too
    over_ws = (await agent.ok("message.send", conversation_id=cid, client_msg_id="b-1", content="您好"))["message"]
    assert over_ws == m
    stored = await h.app[keys.STORE].messages.list_of(cid)
    assert [(x.sender_type, x.client_msg_id) for x in stored].count(("agent", "b-1")) == 1


async def test_others_may_add_private_notes_but_not_write_to_the_customer(h):
    cust, agent, cid = await claimed_conversation(h)
    status, body = await post(h, cid, "agent-other", "agent", {"content": "hi", "client_msg_id": "x1"})
    assert_error(status, body, 403, "forbidden")
    status, body = await post(h, cid, "boss", "admin", {"content": "hi", "client_msg_id": "x2"})
    assert_error(status, body, 403, "forbidden")  # an admin too: the assignee alone speaks to the customer
    status, note = await post(h, cid, "agent-other", "agent",
                              {"content": "VIP, be nice", "client_msg_id": "n1", "private": True})
    assert status == 201 and note["private"] is True
    seen = await agent.event("message.created", lambda f: f["data"]["message"]["private"])
    assert seen["data"]["message"] == note  # the assignee's socket sees the note
    # the customer's view of the conversation never shows it
    await cust.ok("message.send", conversation_id=cid, client_msg_id="c9", content="hello?")
    got = await cust.event("message.created", from_sender("customer"))
    assert got["data"]["message"]["seq"] == note["seq"] + 1
    assert not any(f["type"] == "message.created" and f["data"]["message"]["private"] for f in cust.events)
    resumed = (await cust.ok("conversation.resume", conversation_id=cid))["messages"]
    assert resumed and note["seq"] not in [m["seq"] for m in resumed]


async def test_bad_requests_change_nothing(h):
    _, _, cid = await claimed_conversation(h)
    cases = [
        ({"content": "", "client_msg_id": "e1"}, 400, "invalid"),
        ({"content": "x" * 4001, "client_msg_id": "e2"}, 413, "too_large"),
        ({"content": "hi"}, 400, "invalid"),
        ({"content": "hi", "client_msg_id": ""}, 400, "invalid"),
        ({"content": "hi", "client_msg_id": "e3", "private": "yes"}, 400, "invalid"),
        ({"content": "hi", "client_msg_id": "e4", "extra": 1}, 400, "invalid"),
    ]
    for body, status_, code in cases:
        status, answer = await post(h, cid, "agent-rest", "agent", body)
        assert_error(status, answer, status_, code)
    status, answer = await post(h, "no-such-id", "agent-rest", "agent", {"content": "a", "client_msg_id": "1"})
    assert_error(status, answer, 404, "not_found")
    status, answer = await post(h, cid, "cust-rest", "customer", {"content": "a", "client_msg_id": "1"})
    assert_error(status, answer, 403, "forbidden")  # customers use the WebSocket
    stored = await h.app[keys.STORE].messages.list_of(cid)
    assert all(m.sender_type == "system" for m in stored)  # only the handoff/claim notices
