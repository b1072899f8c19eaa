"""Auto routing under load, capacity, least-loaded choice, presence expiry and requeue."""

import asyncio

from chat import keys
from chat.auth import Identity
from chat.events import ConversationMoved
from states import redis_keys
from tests.wsclient import when_session_closed


async def online_agents(h, n, **kw):
    sockets = []
    for i in range(n):
        ws = await h.connect(f"agent-{i}", role="agent", **kw)
        await ws.ok("presence.set", status="online")
        sockets.append(ws)
    return sockets


async def handoffs(h, n, prefix="cust"):
    ops = h.ops

    async def one(i):
        who = Identity(f"{prefix}-{i}", "customer")
        c = await ops.conversations.start(who)
        await ops.conversations.request_handoff(who, c.id)
        return c.id

    return await asyncio.gather(*(one(i) for i in range(n)))


async def loads(h, n):
    redis = h.app[keys.REDIS]
    return [await redis.scard(redis_keys.agent_load(f"agent-{i}")) for i in range(n)]


async def test_fifty_handoffs_five_agents_capacity_three(harness_factory):
    h = await harness_factory(agent_max_chats=3)
    presence, router = h.app[keys.PRESENCE], h.app[keys.ROUTER]
    await online_agents(h, 5)
    peak = {"load": 0}

    async def watch_loads(_event):  # check capacity after every single transition
        peak["load"] = max(peak["load"], *(await loads(h, 5)))

    h.app[keys.EVENTS].subscribe(ConversationMoved, watch_loads)
    await handoffs(h, 50)
    await router.drain()
    assert await loads(h, 5) == [3, 3, 3, 3, 3]
    assert peak["load"] <= 3
    waiting = await h.app[keys.STORE].conversations.handoff_queue()
    assert len(waiting) == 35
    rows = await h.app[keys.STORE].db.fetchall(
        "SELECT agent_id, COUNT(*) FROM conversations WHERE state = 'human' GROUP BY agent_id")
    assert sorted(rows) == [(f"agent-{i}", 3) for i in range(5)]

    # capacity frees: the oldest waiting conversation goes to the agent that has room, at once
    oldest = waiting[0][0]
    held = (await presence.assigned_to("agent-2"))[0]
    await h.ops.conversations.close(Identity("agent-2", "agent"), held)
    await router.drain()
    now = await h.repository.get(oldest)
    assert (now.state, now.agent_id) == ("human", "agent-2")
    assert await loads(h, 5) == [3, 3, 3, 3, 3]
    assert peak["load"] <= 3


async def test_least_loaded_agent_first_ties_to_longest_idle(harness_factory):
    h = await harness_factory(agent_max_chats=5, routing="auto")
    sockets = await online_agents(h, 3)
    router = h.app[keys.ROUTER]
    cust = await h.connect("cust-x")
    for _ in range(2):  # agent-0 takes two chats itself
        cid = (await cust.ok("conversation.start"))["conversation"]["id"]
        await sockets[0].ok("conversation.claim", conversation_id=cid)
    (first,) = await handoffs(h, 1, prefix="a")
    await router.drain()
    (second,) = await handoffs(h, 1, prefix="b")
    await router.drain()
    (third,) = await handoffs(h, 1, prefix="c")
    await router.drain()
    owners = [(await h.repository.get(c)).agent_id for c in (first, second, third)]
    assert owners[0] in ("agent-1", "agent-2") and owners[1] in ("agent-1", "agent-2")
    assert owners[0] != owners[1]  # ties go to the agent idle longest
    assert owners[2] in ("agent-1", "agent-2")  # agent-0 (2 chats) still the busiest


async def test_no_capacity_then_agent_comes_online(harness_factory):
    h = await harness_factory(agent_max_chats=2)
    ids = await handoffs(h, 3)
    router = h.app[keys.ROUTER]
    await router.drain()
    assert len(await h.app[keys.STORE].conversations.handoff_queue()) == 3  # nobody online: they wait
    agent = await h.connect("agent-9", role="agent")
    await agent.ok("presence.set", status="online")
    await router.drain()
    got = [(await h.repository.get(c)).agent_id for c in ids]
    assert got.count("agent-9") == 2 and got.count(None) == 1
    assigned = [await agent.event("conversation.assigned") for _ in range(2)]
    assert {a["data"]["conversation"]["id"] for a in assigned} == {c for c, g in zip(ids, got, strict=True) if g}


async def test_an_unreadable_live_record_stops_neither_routing_nor_the_queue(harness_factory, caplog):
    """One conversation whose live record is unreadable (another writer's format) fails alone: the
    others are still routed, and queue.list still answers."""
    h = await harness_factory(agent_max_chats=5)
    broken, *fine = await handoffs(h, 3)
    await h.app[keys.REDIS].set(redis_keys.session(broken), b'{"not": "a record"')
    router = h.app[keys.ROUTER]
    await router.drain()
    (agent,) = await online_agents(h, 1)
    await router.drain()
    assert [(await h.repository.get(c)).agent_id for c in fine] == ["agent-0", "agent-0"]
    assert sorted(await h.app[keys.PRESENCE].assigned_to("agent-0")) == sorted(fine)  # no slot kept for the broken one
    assert (await agent.ok("queue.list"))["conversations"] == []  # the broken one is left out, not an error
    assert broken in caplog.text


async def test_team_conversations_go_to_team_agents(harness_factory):
    h = await harness_factory()
    await h.app[keys.STORE].db.execute(
        "INSERT INTO teams (id, name, created_ms, updated_ms) VALUES ('billing', 'Billing', 0, 0)")
    outsider = await h.connect("agent-out", role="agent")
    await outsider.ok("presence.set", status="online")
    who = Identity("cust-t", "customer")
    c = await h.ops.conversations.start(who, team_id="billing")
    await h.ops.conversations.request_handoff(who, c.id)
    await h.app[keys.ROUTER].drain()
    assert (await h.repository.get(c.id)).state == "handoff"
    member = await h.connect("agent-in", role="agent", teams=["billing"])
    await member.ok("presence.set", status="online")
    await h.app[keys.ROUTER].drain()
    assert (await h.repository.get(c.id)).agent_id == "agent-in"


async def claimed_on_a_clock(h):
    """agent-1 online and holding a conversation of cust-1; presence on a clock the test moves."""
    clock = {"now": 1_000_000_000_000}
    h.app[keys.PRESENCE].clock = lambda: clock["now"]
    agent = await h.connect("agent-1", role="agent")
    await agent.ok("presence.set", status="online")
    cust = await h.connect("cust-1")
    cid = (await cust.ok("conversation.start"))["conversation"]["id"]
    await agent.ok("conversation.claim", conversation_id=cid)
    return clock, agent, cust, cid


async def test_gone_agent_is_requeued_after_the_grace_period(harness_factory):
    h = await harness_factory(presence_ttl_s=30, presence_grace_s=60, routing="manual")
    presence, router = h.app[keys.PRESENCE], h.app[keys.ROUTER]
    clock, agent, cust, cid = await claimed_on_a_clock(h)
    other = await h.connect("agent-2", role="agent")
    await other.ok("presence.set", status="online")
    await other.ok("conversation.watch", conversation_id=cid)
    closed = when_session_closed(h.app, "agent-1")
    await agent.close()
    await asyncio.wait_for(closed.wait(), timeout=5)
    assert "agent-1" not in presence.local
    states = await presence.agents(["agent-1"])
    assert states[0].status == "online" and not states[0].connected  # its lease ended with the socket

    clock["now"] += 59_000  # within the grace period: nothing happens
    await router.sweep()
    assert (await h.repository.get(cid)).state == "human"
    clock["now"] += 2_000  # past it
    await router.sweep()
    c = await h.repository.get(cid)
    assert (c.state, c.agent_id) == ("handoff", None)
    upd = await cust.event("conversation.updated", lambda f: f["data"]["reason"] == "agent_offline")
    assert upd["data"]["previous_state"] == "human"
    assert (await presence.agents(["agent-1"]))[0].status == "offline"
    assert await presence.assigned_to("agent-1") == []


async def test_second_socket_keeps_the_agent_online(harness_factory):
    h = await harness_factory(presence_ttl_s=30, presence_grace_s=60)
    presence = h.app[keys.PRESENCE]
    tab1 = await h.connect("agent-1", role="agent")
    tab2 = await h.connect("agent-1", role="agent")
    await tab1.ok("presence.set", status="online")
    closed = when_session_closed(h.app, "agent-1")
    await tab1.close()
    await asyncio.wait_for(closed.wait(), timeout=5)
    assert presence.local.get("agent-1") == 1
    await presence.heartbeat()
    assert (await presence.agents(["agent-1"]))[0].online
    assert await tab2.ok("presence.set", status="online")  # the other tab goes on


async def test_handoff_wait_timeout_releases_to_the_ai(harness_factory, sim_clock):
    h = await harness_factory(handoff_wait_timeout_s=5)
    cust = await h.connect("cust-1")
    cid = (await cust.ok("conversation.start"))["conversation"]["id"]
    await cust.ok("handoff.request", conversation_id=cid)
    sim_clock.advance(6)
    await h.timers.drain()  # the wait is a timer of `handoff` now (chat/timers.py), not a sweep
    c = await h.repository.get(cid)
    assert c.state == "ai"
    upd = await cust.event("conversation.updated", lambda f: f["data"]["reason"] == "no_agent")
    assert upd["data"]["conversation"]["state"] == "ai"


async def test_a_failed_assign_gives_the_reserved_slot_back(harness_factory, monkeypatch):
    from chat.store import DatabaseError

    h = await harness_factory(agent_max_chats=1)
    router, presence = h.app[keys.ROUTER], h.app[keys.PRESENCE]
    await online_agents(h, 1)
    real = h.ops.assignment.route_to

    async def database_down(conversation_id, agent_id):
        raise DatabaseError("gone")

    monkeypatch.setattr(h.ops.assignment, "route_to", database_down)
    await handoffs(h, 1)
    await router.drain()
    assert await presence.assigned_to("agent-0") == []  # no phantom load left behind
    monkeypatch.setattr(h.ops.assignment, "route_to", real)
    router.kick()
    await router.drain()
    assert len(await presence.assigned_to("agent-0")) == 1


# --- Redis lost its data: SQL is the truth of who holds what (issue 10.6) ------------------------

async def test_routing_never_overfills_an_agent_after_redis_lost_its_loads(harness_factory, redis):
    h = await harness_factory(agent_max_chats=2)
    router, presence, store = h.app[keys.ROUTER], h.app[keys.PRESENCE], h.app[keys.STORE]
    await online_agents(h, 1)
    before = await handoffs(h, 2, prefix="before")
    await router.drain()
    assert await loads(h, 1) == [2]

    await redis.flushdb()  # Redis restarted empty: the load set, presence and live records are gone
    await presence.heartbeat()  # the agent's socket is still open here: its presence comes back
    await handoffs(h, 2, prefix="after")
    await router.drain()
    held = await store.conversations.assigned(["agent-0"])
    assert held == {"agent-0": set(before)}  # still 2, not 4
    assert await loads(h, 1) == [2]
    assert len(await store.conversations.handoff_queue()) == 2

    # the agent is routable again: a freed slot takes the oldest waiting conversation at once
    await h.ops.conversations.close(Identity("agent-0", "agent"), before[0])
    await router.drain()
    assert len((await store.conversations.assigned(["agent-0"]))["agent-0"]) == 2
    assert await loads(h, 1) == [2]


async def test_a_gone_agents_conversation_is_requeued_after_redis_lost_its_data(harness_factory, redis):
    h = await harness_factory(presence_ttl_s=30, presence_grace_s=60, routing="manual")
    presence, router = h.app[keys.PRESENCE], h.app[keys.ROUTER]
    clock, agent, cust, cid = await claimed_on_a_clock(h)
    closed = when_session_closed(h.app, "agent-1")
    await agent.close()
    await asyncio.wait_for(closed.wait(), timeout=5)

    await redis.flushdb()  # the lease and the load set of agent-1 are gone with the rest
    await router.sweep()  # SQL says agent-1 holds cid: its grace period starts now
    assert (await h.repository.get(cid)).state == "human"
    assert await presence.assigned_to("agent-1") == [cid]
    clock["now"] += 61_000
    await router.sweep()
    c = await h.repository.get(cid)
    assert (c.state, c.agent_id) == ("handoff", None)
    assert await presence.assigned_to("agent-1") == []
    assert await redis.zscore(redis_keys.AGENTS_LEASE, "agent-1") is None  # nothing left to sweep


async def test_a_connected_agent_keeps_its_conversations_through_the_sweep_after_the_loss(harness_factory, redis):
    h = await harness_factory(presence_ttl_s=30, presence_grace_s=60, routing="manual")
    presence, router = h.app[keys.PRESENCE], h.app[keys.ROUTER]
    clock, agent, cust, cid = await claimed_on_a_clock(h)
    await redis.flushdb()
    await router.sweep()
    for _ in range(7):  # past the grace period, with its socket here renewing the lease
        clock["now"] += 10_000
        await presence.heartbeat()
    await router.sweep()
    assert (await h.repository.get(cid)).agent_id == "agent-1"
    assert (await presence.agents(["agent-1"]))[0].online


async def test_the_sweeper_drops_from_a_load_set_what_the_agent_no_longer_holds(harness_factory, redis):
    """Redis restored from an older snapshot: a load set names a conversation closed since."""
    h = await harness_factory(routing="manual")
    presence, router = h.app[keys.PRESENCE], h.app[keys.ROUTER]
    agent = await h.connect("agent-1", role="agent")
    await agent.ok("presence.set", status="online")
    cust = await h.connect("cust-1")
    kept, closed, waiting = [(await cust.ok("conversation.start"))["conversation"]["id"] for _ in range(3)]
    for cid in (kept, closed):
        await agent.ok("conversation.claim", conversation_id=cid)
    await agent.ok("conversation.close", conversation_id=closed)
    await cust.ok("handoff.request", conversation_id=waiting)
    unknown = "not-in-sql"
    await redis.sadd(redis_keys.agent_load("agent-1"), closed, waiting, unknown)
    await router.sweep()
    # the closed one goes; one waiting in handoff may be a reservation in flight, one without a row
    # a migrated record not adopted yet: both stay
    assert await presence.assigned_to("agent-1") == sorted([kept, waiting, unknown])
