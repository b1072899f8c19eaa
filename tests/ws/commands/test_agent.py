"""Agents over WebSocket: presence, queue, claim, messages and private notes, release,
transfer, close, and the claim race (real Redis; SQLite and MariaDB)."""

import asyncio

import pytest

from chat import keys


def is_sender(kind):
    return lambda f: f["data"]["message"]["sender_type"] == kind


async def customer_in_handoff(h, sub="cust-1"):
    cust = await h.connect(sub)
    cid = (await cust.ok("conversation.start"))["conversation"]["id"]
    await cust.ok("handoff.request", conversation_id=cid)
    return cust, cid


async def test_handoff_claim_talk_release(harness):
    h = harness
    agent = await h.connect("agent-1", role="agent")
    await agent.ok("presence.set", status="online")
    cust, cid = await customer_in_handoff(h)
    queued = await agent.event("conversation.updated", lambda f: f["data"]["conversation"]["id"] == cid)
    assert queued["data"]["conversation"]["state"] == "handoff"
    await h.app[keys.ROUTER].drain()
    # auto routing gave it to the only online agent: conversation.assigned, and it is subscribed
    assigned = await agent.event("conversation.assigned")
    assert assigned["data"]["conversation"]["agent_id"] == "agent-1"
    upd = await cust.event("conversation.updated", lambda f: f["data"]["conversation"]["state"] == "human")
    assert upd["data"]["previous_state"] == "handoff" and upd["data"]["reason"] == "routing"

    await agent.ok("message.send", conversation_id=cid, client_msg_id="a1", content="您好，我是客服小王")
    got = await cust.event("message.created", is_sender("agent"))
    assert got["data"]["message"]["sender_id"] == "agent-1"
    await cust.ok("message.send", conversation_id=cid, client_msg_id="c1", content="谢谢")
    seen = await agent.event("message.created", is_sender("customer"))
    assert seen["data"]["message"]["content"] == "谢谢"
    await h.drain_ai()
    assert h.provider.calls == []  # no AI while a human has it

    released = (await agent.ok("conversation.release", conversation_id=cid))["conversation"]
    assert (released["state"], released["agent_type"], released["agent_id"]) == ("ai", "ai", None)
    await cust.ok("message.send", conversation_id=cid, client_msg_id="c2", content="还在吗")
    await cust.event("message.created", is_sender("ai"))  # the AI answers again


async def test_manual_routing_queue_and_claim(harness_factory):
    h = await harness_factory(routing="manual")
    agent = await h.connect("agent-1", role="agent")
    await agent.ok("presence.set", status="online")
    _, first = await customer_in_handoff(h, "cust-a")
    _, second = await customer_in_handoff(h, "cust-b")
    queue = (await agent.ok("queue.list"))["conversations"]
    assert [c["id"] for c in queue] == [first, second]  # longest waiting first
    claimed = (await agent.ok("conversation.claim", conversation_id=second))["conversation"]
    assert (claimed["state"], claimed["agent_id"]) == ("human", "agent-1")
    again = await agent.request("conversation.claim", conversation_id=second)
    assert again["code"] == "conflict"
    assert [c["id"] for c in (await agent.ok("queue.list"))["conversations"]] == [first]
    unknown_team = await agent.request("queue.list", team_id="nope")
    assert unknown_team["code"] == "not_found"


async def test_claim_from_ai_is_a_takeover(harness):
    cust = await harness.connect("cust-1")
    cid = (await cust.ok("conversation.start"))["conversation"]["id"]
    agent = await harness.connect("agent-1", role="agent")
    c = (await agent.ok("conversation.claim", conversation_id=cid))["conversation"]
    assert (c["state"], c["agent_type"]) == ("human", "human")
    closed_id = (await cust.ok("conversation.start"))["conversation"]["id"]
    await cust.ok("conversation.close", conversation_id=closed_id)
    assert (await agent.request("conversation.claim", conversation_id=closed_id))["code"] == "conflict"


async def test_the_claimer_hears_its_claim_after_the_reply_and_a_refused_claimer_hears_nothing(harness):
    """The claiming socket subscribes before the move: its conversation.updated reaches it (after the reply),
    also when the agent is no queue recipient (away); a claim that conflicts leaves no subscription behind."""
    cust = await harness.connect("cust-1")
    cid = (await cust.ok("conversation.start"))["conversation"]["id"]
    agent = await harness.connect("agent-1", role="agent")  # away: no queue events
    await agent.ok("conversation.claim", conversation_id=cid)
    assert agent.events == []  # nothing of the claim before its reply
    moved = await agent.event("conversation.updated", lambda f: f["data"]["conversation"]["id"] == cid)
    assert (moved["data"]["previous_state"], moved["data"]["conversation"]["state"]) == ("ai", "human")

    late = await harness.connect("agent-2", role="agent")
    assert (await late.request("conversation.claim", conversation_id=cid))["code"] == "conflict"
    await cust.ok("message.send", conversation_id=cid, client_msg_id="c1", content="hello?")
    await agent.event("message.created", is_sender("customer"))
    await late.request("ping")  # its socket's frames so far have arrived
    assert [f for f in late.events if f["type"] in ("message.created", "conversation.updated")] == []


async def test_private_notes_never_reach_the_customer(harness):
    h = harness
    cust = await h.connect("cust-1")
    cid = (await cust.ok("conversation.start"))["conversation"]["id"]
    owner = await h.connect("agent-1", role="agent")
    other = await h.connect("agent-2", role="agent")
    await owner.ok("conversation.claim", conversation_id=cid)
    await other.ok("conversation.watch", conversation_id=cid)
    note = (await other.ok("message.send", conversation_id=cid, client_msg_id="n1", content="VIP customer",
                           private=True))["message"]
    assert note["private"] is True and note["sender_type"] == "agent"
    await owner.event("message.created", lambda f: f["data"]["message"]["private"])
    forbidden = await other.request("message.send", conversation_id=cid, client_msg_id="x", content="hi")
    assert forbidden["code"] == "forbidden"
    await owner.ok("message.send", conversation_id=cid, client_msg_id="o1", content="How can I help?")
    got = await cust.event("message.created", is_sender("agent"))
    assert got["data"]["message"]["content"] == "How can I help?"
    assert all(not f["data"]["message"]["private"] for f in cust.events if f["type"] == "message.created")
    resumed = await cust.ok("conversation.resume", conversation_id=cid)
    assert note["seq"] not in [m["seq"] for m in resumed["messages"]]
    assert all(not m["private"] for m in resumed["messages"])
    watched = await other.ok("conversation.watch", conversation_id=cid)
    assert note["seq"] in [m["seq"] for m in watched["messages"]]
    refused = await cust.request("message.send", conversation_id=cid, client_msg_id="p", content="x", private=True)
    assert refused["code"] == "invalid"


async def test_transfer_to_agent_and_to_team_and_close_rules(harness):
    h = harness
    cust = await h.connect("cust-1")
    cid = (await cust.ok("conversation.start"))["conversation"]["id"]
    a1 = await h.connect("agent-1", role="agent")
    a2 = await h.connect("agent-2", role="agent")
    await a1.ok("conversation.claim", conversation_id=cid)
    missing = await a1.request("conversation.transfer", conversation_id=cid, agent_id="agent-404")
    assert missing["code"] == "not_found"
    both = await a1.request("conversation.transfer", conversation_id=cid, agent_id="agent-2", team_id="t")
    assert both["code"] == "invalid"
    moved = (await a1.ok("conversation.transfer", conversation_id=cid, agent_id="agent-2"))["conversation"]
    assert (moved["state"], moved["agent_id"]) == ("human", "agent-2")
    got = await a2.event("conversation.assigned")
    assert got["data"]["conversation"]["id"] == cid
    not_yours = await a1.request("conversation.close", conversation_id=cid)
    assert not_yours["code"] == "forbidden"
    await h.app[keys.STORE].db.execute(
        "INSERT INTO teams (id, name, created_ms, updated_ms) VALUES (%s, %s, 0, 0)", ("team-1", "Billing"))
    queued = (await a2.ok("conversation.transfer", conversation_id=cid, team_id="team-1"))["conversation"]
    assert (queued["state"], queued["team_id"], queued["agent_id"]) == ("handoff", "team-1", None)
    admin = await h.connect("boss", role="admin")
    closed = (await admin.ok("conversation.close", conversation_id=cid))["conversation"]
    assert closed["state"] == "closed"
    events = await h.app[keys.STORE].events.list_of(cid)
    assert [(e.trigger, e.reason, e.actor_id) for e in events] == [
        ("assign", "claim", "agent-1"), ("assign", "transfer", "agent-1"), ("requeue", "transfer", "agent-2"),
        ("close", "closed by admin", "boss")]


async def test_customers_cannot_use_agent_commands(harness):
    cust = await harness.connect("cust-1")
    cid = (await cust.ok("conversation.start"))["conversation"]["id"]
    for cmd, fields in [("presence.set", {"status": "online"}), ("queue.list", {}),
                        ("conversation.claim", {"conversation_id": cid}),
                        ("conversation.watch", {"conversation_id": cid})]:
        assert (await cust.request(cmd, **fields))["code"] == "forbidden"


@pytest.mark.parametrize("backend", ["mysql", "sqlite"])
async def test_twenty_agents_race_to_claim_one_winner_per_round(request, harness_factory, backend):
    url = request.getfixturevalue("mysql_database_url") if backend == "mysql" else None
    h = await harness_factory(database_url=url, routing="manual", ws_rate_limit_count=10_000,
                              conversations_per_user_per_min=10_000)
    agents = [await h.connect(f"agent-{i}", role="agent") for i in range(20)]
    cust = await h.connect("cust-1")
    rounds = 100 if backend == "mysql" else 40
    for _ in range(rounds):
        cid = (await cust.ok("conversation.start"))["conversation"]["id"]
        replies = await asyncio.gather(*(a.request("conversation.claim", conversation_id=cid) for a in agents))
        winners = [r for r in replies if r["type"] == "result"]
        assert len(winners) == 1, replies
        assert all(r["code"] == "conflict" for r in replies if r["type"] == "error")
        c = await h.repository.get(cid)
        assert (c.state, c.agent_id) == ("human", winners[0]["data"]["conversation"]["agent_id"])


async def test_client_msg_ids_are_per_sender_and_never_leak(harness):
    cust = await harness.connect("cust-1")
    cid = (await cust.ok("conversation.start"))["conversation"]["id"]
    agent = await harness.connect("agent-1", role="agent")
    await agent.ok("conversation.watch", conversation_id=cid)
    note = (await agent.ok("message.send", conversation_id=cid, client_msg_id="1", content="secret note",
                           private=True))["message"]
    mine = (await cust.ok("message.send", conversation_id=cid, client_msg_id="1", content="hello"))["message"]
    assert mine["content"] == "hello" and mine["sender_type"] == "customer" and mine["id"] != note["id"]
    again = (await cust.ok("message.send", conversation_id=cid, client_msg_id="1", content="hello"))["message"]
    assert again == mine  # the customer's own resend
    other = await harness.connect("cust-2")
    reply = await other.request("message.send", conversation_id=cid, client_msg_id="1", content="x")
    assert reply["code"] == "not_found"
