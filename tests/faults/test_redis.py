"""Redis faults: a restart that loses every key, and a restart from an older snapshot."""

from __future__ import annotations

import asyncio

import aiohttp

from tests.faults.clients import Peer
from tests.faults.load import Connect, Load, Plan, check, run_case, token
from tests.faults.servers import RedisServer, Services


async def test_control_no_fault(services: Services, http: aiohttp.ClientSession, sql: Connect) -> None:
    """The load of the other cases with no fault: the books balance (a failure here is the suite's)."""
    service = await services.start("svc")
    load = Load(http, [service.url], Plan(), "control")

    async def fault() -> None:
        return None

    await run_case(load, fault, sql)


async def test_redis_restart_loses_every_key(services: Services, redis_server: RedisServer,
                                             http: aiohttp.ClientSession, sql: Connect) -> None:
    """Redis crashes mid-load and comes back empty: no acked message lost, routing within
    capacity (one agent's console reloads and is routed to at once: its load must come from SQL), the
    agent that stayed connected online again, every conversation movable. Just before, an agent
    claimed two conversations and left for good: the sweeper must still requeue them."""
    service = await services.start("svc")
    load = Load(http, [service.url], Plan(), "redis-lost")
    # a console that claims without going online: routing must not hand it more on top of its claims
    gone = Peer(http, [service.url], token("redis-lost-gone", "agent"))

    async def fault() -> None:
        for customer in load.customers[1:5:2]:  # two that never ask for a human themselves
            await gone.call("conversation.claim", conversation_id=customer.ledger.conversation_id)
        await gone.close()
        await asyncio.to_thread(redis_server.restart_empty)
        await load.agents[0].reconnect()  # a console reload sets it online again; the other one stays connected

    await run_case(load, fault, sql)


async def test_redis_restored_from_older_snapshot(services: Services, redis_server: RedisServer,
                                                  http: aiohttp.ClientSession, sql: Connect) -> None:
    """SAVE, then claim every conversation and release half, then Redis restarts from the snapshot:
    the live records are behind SQL; later messages are answered, claims and closes succeed.
    (No max_chats count here: a claim ignores capacity by the protocol.)"""
    service = await services.start("svc")
    load = Load(http, [service.url], Plan(customers=6, agents=1, handoff_every=0), "redis-snapshot")
    try:
        await load.open()
        await load.talk(range(1))
        assert all(await asyncio.gather(*(c.settle(15) for c in load.customers))), "answered before the snapshot"
        snapshot = await asyncio.to_thread(redis_server.save_snapshot)
        agent = load.agents[0]
        for i, customer in enumerate(load.customers):
            cid = customer.ledger.conversation_id
            assert (await agent.call("conversation.claim", conversation_id=cid))["type"] == "result"
            if i % 2:
                assert (await agent.call("conversation.release", conversation_id=cid))["type"] == "result"
        await asyncio.to_thread(redis_server.restart_from, snapshot)
        await load.talk(range(1, 3))
        await load.settle(sql)
        load.books.counts["agent_close_failures"] = len(agent.close_failures)
        load.books.details += [f"agent close failed: {f}" for f in agent.close_failures[:5]]
        check(load.books)
    finally:
        await load.close()
