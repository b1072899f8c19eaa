"""Presence: the roster of online agents, and load sets kept in step with every move."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from chat import keys
from chat.bus.messages import PresenceChanged
from chat.events import AgentStatusChanged, ConversationMoved, Events
from chat.presence import Presence, Roster
from states import redis_keys
from states.record import Conversation
from states.repository import Actor, Transition
from tests.wsclient import when_session_closed

T = "2026-01-01T00:00:00.000Z"


def test_the_roster_follows_presence_messages():
    roster = Roster()
    roster.load({"a1": {"billing"}})
    assert roster.teams_of("a1") == frozenset({"billing"})
    roster.apply(PresenceChanged("a2", "online", ("sales",)))
    roster.apply(PresenceChanged("a1", "away"))
    assert (roster.teams_of("a1"), roster.teams_of("a2")) == (None, frozenset({"sales"}))


async def test_load_sets_follow_the_moves(redis, make_settings):
    presence = Presence(redis, store=None, events=Events(), settings=make_settings(), clock=lambda: 1000)  # type: ignore[arg-type]
    a1, a2, cid = f"a1-{uuid.uuid4().hex}", f"a2-{uuid.uuid4().hex}", str(uuid.uuid4())

    def record(state: str, agent_id: str | None) -> Conversation:
        return Conversation(id=cid, user_id="u1", agent_type="ai", created_at=T, updated_at=T, state=state,
                            agent_id=agent_id)

    async def move(before: Conversation, after: Conversation) -> None:
        await presence.on_moved(ConversationMoved(Transition(before, after, "t", Actor("system"), None, 0)))

    await move(record("handoff", None), record("human", a1))
    assert await presence.assigned_to(a1) == [cid]
    await move(record("human", a1), record("human", a2))  # a transfer moves the slot
    assert (await presence.assigned_to(a1), await presence.assigned_to(a2)) == ([], [cid])
    assert await redis.zscore(redis_keys.AGENTS_LAST_ASSIGNED, a2) == 1000
    await move(record("human", a2), record("closed", a2))
    assert await presence.assigned_to(a2) == []


async def test_a_connected_agent_is_online_again_after_a_heartbeat_when_redis_lost_it(harness_factory, redis):
    h = await harness_factory()
    presence = h.app[keys.PRESENCE]
    heard: list[AgentStatusChanged] = []
    h.app[keys.EVENTS].subscribe(AgentStatusChanged, heard.append)
    agent = await h.connect("agent-1", role="agent", teams=["billing"])
    await agent.ok("presence.set", status="online")
    await redis.flushdb()  # Redis came back empty
    assert not (await presence.agents(["agent-1"]))[0].online
    heard.clear()
    await presence.heartbeat()
    (state,) = await presence.agents(["agent-1"])
    assert (state.status, state.connected, state.teams) == ("online", True, {"billing"})
    assert state.max_chats == h.settings.agent_max_chats
    assert await presence.online_ids() == {"agent-1"}
    assert heard == [AgentStatusChanged("agent-1", "online", ("billing",))]  # routing and rosters hear it
    await presence.heartbeat()
    assert len(heard) == 1  # nothing lost: nothing re-asserted


async def test_a_socket_refused_because_redis_failed_is_not_counted(harness_factory):
    """Its lease write failed, so the socket is closed unopened and no close event follows: the agent's
    count here must not keep it connected once its real socket closes."""
    h = await harness_factory()
    presence = h.app[keys.PRESENCE]
    first = await h.connect("agent-r", role="agent")
    original = presence.redis.zadd

    async def down_once(*args, **kwargs):
        presence.redis.zadd = original
        raise RedisConnectionError("Redis went away")

    presence.redis.zadd = down_once
    refused = await h.connect("agent-r", role="agent")
    assert await refused.closed() == 1011
    assert presence.local == {"agent-r": 1}
    closed = when_session_closed(h.app, "agent-r")
    await first.close()
    await asyncio.wait_for(closed.wait(), 5)
    assert "agent-r" not in presence.local
    assert not (await presence.agents(["agent-r"]))[0].connected


async def test_the_heartbeat_never_overrides_a_status_set_elsewhere(harness_factory, redis):
    h = await harness_factory()
    presence = h.app[keys.PRESENCE]
    agent = await h.connect("agent-1", role="agent")
    await agent.ok("presence.set", status="online")
    # another tab on another instance sets away
    await redis.hset(redis_keys.presence("agent-1"), "status", "away")
    await redis.zrem(redis_keys.AGENTS_ONLINE, "agent-1")
    await presence.heartbeat()
    assert (await presence.agents(["agent-1"]))[0].status == "away"
    assert await presence.online_ids() == set()


@pytest.mark.parametrize(("before", "after"), [("online", "away"), ("away", "online")])
async def test_a_status_a_restored_snapshot_rolled_back_is_set_again(harness_factory, redis, before, after):
    """Redis restored from a snapshot taken before the agent's last change: an agent gone away kept being
    routed conversations (or one back online stayed away), as the heartbeat only filled in a lost status."""
    h = await harness_factory()
    presence = h.app[keys.PRESENCE]
    agent = await h.connect("agent-1", role="agent")
    await agent.ok("presence.set", status=before)
    key = redis_keys.presence("agent-1")
    snapshot = await redis.hgetall(key), await redis.zscore(redis_keys.AGENTS_ONLINE, "agent-1")
    await agent.ok("presence.set", status=after)
    await redis.hset(key, mapping=snapshot[0])  # the restore
    if snapshot[1] is not None:
        await redis.zadd(redis_keys.AGENTS_ONLINE, {"agent-1": snapshot[1]})
    else:
        await redis.zrem(redis_keys.AGENTS_ONLINE, "agent-1")
    assert (await presence.agents(["agent-1"]))[0].status == before
    await presence.heartbeat()
    assert (await presence.agents(["agent-1"]))[0].status == after
    assert await presence.online_ids() == ({"agent-1"} if after == "online" else set())


async def test_an_away_agent_is_away_again_and_a_closed_socket_is_forgotten(harness_factory, redis):
    h = await harness_factory()
    presence = h.app[keys.PRESENCE]
    agent = await h.connect("agent-1", role="agent")
    await agent.ok("presence.set", status="away")
    await redis.flushdb()
    await presence.heartbeat()
    assert (await presence.agents(["agent-1"]))[0].status == "away"
    assert await presence.online_ids() == set()
    closed = when_session_closed(h.app, "agent-1")
    await agent.close()
    await closed.wait()
    await redis.flushdb()
    await presence.heartbeat()
    assert (await presence.agents(["agent-1"]))[0].status == "offline"  # no socket here: nothing to re-assert
