"""Flows with concurrent bus traffic on the local Redis Cluster: routing several handoffs at once
and a dozen AI turns streaming together (their publishes go out pipelined, as sharded pub/sub on a
cluster), with the turn locks on every master renewed in one pipelined pass."""

from __future__ import annotations

import asyncio

from chat import keys
from chat.auth import Identity
from states import redis_keys
from tests.wsclient import ScriptedProvider


async def test_auto_routing_fills_each_agent_to_its_capacity(cluster_harness_factory):
    h = await cluster_harness_factory(agent_max_chats=2)
    router, presence, ops = h.app[keys.ROUTER], h.app[keys.PRESENCE], h.ops
    agents = [await h.connect(f"agent-{i}", role="agent") for i in range(2)]
    for agent in agents:
        await agent.ok("presence.set", status="online")

    async def handoff(i: int) -> str:
        who = Identity(f"cust-{i}", "customer")
        conversation = await ops.conversations.start(who)
        await ops.conversations.request_handoff(who, conversation.id)
        return conversation.id

    await asyncio.gather(*(handoff(i) for i in range(5)))
    await router.drain()
    states = await presence.agents(["agent-0", "agent-1"])
    assert [(a.online, a.load) for a in states] == [(True, 2), (True, 2)]
    assert len(await h.app[keys.STORE].conversations.handoff_queue()) == 1
    for agent in agents:
        assert (await agent.event("conversation.assigned"))["data"]["conversation"]["state"] == "human"


async def test_turn_locks_on_every_master_are_renewed_and_a_lost_one_stops_its_turn(cluster_harness_factory,
                                                                                       cluster):
    provider = ScriptedProvider()
    provider.gate = asyncio.Event()
    h = await cluster_harness_factory(provider_=provider, ai_turn_lock_s=6, ws_rate_limit_count=1000,
                                      conversations_per_user_per_min=1000)
    runner = h.app[keys.AI_RUNNER]
    cust = await h.connect("cust-1")
    cids: list[str] = []
    while len(cids) < 12 or len({cluster.get_node_from_key(redis_keys.ai_turn(c)).name for c in cids}) < 3:
        cids.append((await cust.ok("conversation.start"))["conversation"]["id"])  # until the locks span every master
    locks = [redis_keys.ai_turn(cid) for cid in cids]
    for cid in cids:
        await cust.ok("message.send", conversation_id=cid, client_msg_id="1", content="hi")
    for cid in cids:  # every turn holds its lock and waits on the gate
        await cust.event("ai.delta", lambda f, cid=cid: f["data"]["conversation_id"] == cid)
    for lock in locks:
        await cluster.pexpire(lock, 500)  # nearly run out
    await runner.locks.renew()
    assert min([await cluster.pttl(lock) for lock in locks]) > 5_000

    lost = locks[0]
    await cluster.set(lost, "another-instance", px=6_000)  # taken meanwhile: that turn stops
    await runner.locks.renew()
    provider.gate.set()
    await h.drain_ai()
    assert await cluster.get(lost) == b"another-instance"  # not ours to release
    senders = {cid: [m.sender_type for m in await h.app[keys.STORE].messages.list_of(cid)] for cid in cids}
    assert senders[cids[0]] == ["customer"]
    assert all(senders[cid] == ["customer", "ai"] for cid in cids[1:])
