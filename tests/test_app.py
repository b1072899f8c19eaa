"""Two service instances on one Redis and one MariaDB: events cross instances through Redis
pub/sub, and a killed subscriber connection comes back by itself without losing messages."""

import asyncio

from chat import keys


def is_sender(kind):
    return lambda f: f["data"]["message"]["sender_type"] == kind


async def two_instances(harness_factory, mysql_database_url, **kw):
    a = await harness_factory(database_url=mysql_database_url, **kw)
    b = await harness_factory(database_url=mysql_database_url, **kw)
    assert a.app[keys.INSTANCE_ID] != b.app[keys.INSTANCE_ID]
    return a, b


async def test_customer_on_a_agent_on_b(harness_factory, mysql_database_url):
    a, b = await two_instances(harness_factory, mysql_database_url, routing="manual")
    cust = await a.connect("cust-1")
    agent_b = await b.connect("agent-1", role="agent")
    agent_a = await a.connect("agent-2", role="agent")
    await agent_b.ok("presence.set", status="online")
    await agent_a.ok("presence.set", status="online")
    cid = (await cust.ok("conversation.start"))["conversation"]["id"]
    await cust.ok("handoff.request", conversation_id=cid)
    queued = await agent_b.event("conversation.updated", lambda f: f["data"]["conversation"]["id"] == cid)
    assert queued["data"]["conversation"]["state"] == "handoff"
    await agent_b.ok("conversation.claim", conversation_id=cid)
    await cust.event("conversation.updated", lambda f: f["data"]["conversation"]["state"] == "human")
    await agent_a.ok("conversation.watch", conversation_id=cid)

    await agent_b.ok("message.send", conversation_id=cid, client_msg_id="b1", content="Hello from B")
    assert (await cust.event("message.created", is_sender("agent")))["data"]["message"]["content"] == "Hello from B"
    await cust.ok("message.send", conversation_id=cid, client_msg_id="a1", content="Hi from A")
    assert (await agent_b.event("message.created", is_sender("customer")))["data"]["message"]["content"] == "Hi from A"

    note = (await agent_b.ok("message.send", conversation_id=cid, client_msg_id="n1", content="internal",
                             private=True))["message"]
    on_a = await agent_a.event("message.created", lambda f: f["data"]["message"]["private"])
    assert on_a["data"]["message"]["id"] == note["id"]
    # the customer's next event is its own message: the private note never arrived in between
    await agent_b.ok("message.send", conversation_id=cid, client_msg_id="b2", content="after the note")
    nxt = await cust.event("message.created", is_sender("agent"))
    assert nxt["data"]["message"]["content"] == "after the note"
    assert not any(f["type"] == "message.created" and f["data"]["message"]["private"] for f in cust.events)
    resumed = await (await b.connect("cust-1")).ok("conversation.resume", conversation_id=cid)
    assert note["id"] not in [m["id"] for m in resumed["messages"]]


async def test_claim_race_across_instances(harness_factory, mysql_database_url):
    a, b = await two_instances(harness_factory, mysql_database_url, routing="manual", ws_rate_limit_count=1000,
                                conversations_per_user_per_min=1000)
    agents = [await a.connect(f"agent-a{i}", role="agent") for i in range(5)]
    agents += [await b.connect(f"agent-b{i}", role="agent") for i in range(5)]
    cust = await a.connect("cust-1")
    for _ in range(20):
        cid = (await cust.ok("conversation.start"))["conversation"]["id"]
        replies = await asyncio.gather(*(x.request("conversation.claim", conversation_id=cid) for x in agents))
        assert sum(r["type"] == "result" for r in replies) == 1, replies
        assert {r["code"] for r in replies if r["type"] == "error"} == {"conflict"}


async def test_killed_subscriber_reconnects_and_nothing_is_lost(harness_factory, mysql_database_url):
    a, b = await two_instances(harness_factory, mysql_database_url, routing="manual")
    cust = await a.connect("cust-1")
    agent = await b.connect("agent-1", role="agent")
    cid = (await cust.ok("conversation.start"))["conversation"]["id"]
    await agent.ok("conversation.claim", conversation_id=cid)
    await agent.ok("message.send", conversation_id=cid, client_msg_id="m1", content="before")
    before = await cust.event("message.created", lambda f: f["data"]["message"]["content"] == "before")

    bus = a.app[keys.BUS]
    redis = a.app[keys.REDIS]
    name = f"chat-api-{a.app[keys.INSTANCE_ID]}"
    clients = await redis.client_list(_type="pubsub")
    victims = [c["id"] for c in clients if c.get("name") == name]
    assert len(victims) == 1  # one subscriber connection per instance
    await redis.client_kill_filter(_id=victims[0])

    # while A's subscriber is down, B keeps writing; some of these may miss the live path
    for i in range(5):
        await agent.ok("message.send", conversation_id=cid, client_msg_id=f"gap{i}", content=f"gap {i}")
    # the listener comes back by itself
    await asyncio.wait_for(bus.wait_resubscribed(1), timeout=10)
    assert bus.reconnects >= 1 and bus.subscribed.is_set()
    await agent.ok("message.send", conversation_id=cid, client_msg_id="m2", content="after")
    await cust.event("message.created", lambda f: f["data"]["message"]["content"] == "after")

    # a customer resuming from the last seq it saw live gets every message exactly once
    seen_before_gap = before["data"]["message"]["seq"]
    back = await a.connect("cust-1")
    resumed = (await back.ok("conversation.resume", conversation_id=cid, after_seq=seen_before_gap))["messages"]
    contents = [m["content"] for m in resumed]
    assert contents == [f"gap {i}" for i in range(5)] + ["after"]
    seqs = [m["seq"] for m in resumed]
    assert seqs == list(range(seen_before_gap + 1, seen_before_gap + 7))


async def test_one_ai_reply_at_a_time_across_instances(harness_factory, mysql_database_url):
    """Two tabs on two instances write during one generation: one turn at a time, and the
    message that arrived on the other instance is answered after the first turn."""
    from tests.wsclient import ScriptedProvider

    provider_a, provider_b = ScriptedProvider(["from A"]), ScriptedProvider(["from B"])
    provider_a.gate = asyncio.Event()
    a = await harness_factory(database_url=mysql_database_url, provider_=provider_a)
    b = await harness_factory(database_url=mysql_database_url, provider_=provider_b)
    tab_a = await a.connect("cust-1")
    tab_b = await b.connect("cust-1")
    cid = (await tab_a.ok("conversation.start"))["conversation"]["id"]
    await tab_a.ok("message.send", conversation_id=cid, client_msg_id="1", content="first")
    await provider_a.started.wait()  # A's turn holds the lock and waits on its gate
    await tab_b.ok("message.send", conversation_id=cid, client_msg_id="2", content="second")
    await b.drain_ai()
    assert provider_b.calls == []  # B did not start a second generation
    provider_a.gate.set()
    await a.drain_ai()
    stored = [(m.sender_type, m.content) for m in await a.app[keys.STORE].messages.list_of(cid)]
    assert stored == [("customer", "first"), ("customer", "second"), ("ai", "from A"), ("ai", "from A")]
    assert [m["content"] for m in provider_a.calls[1] if m["role"] == "user"] == ["first", "second"]
