"""Presence: the roster of online agents, and load sets kept in step with every move."""

from __future__ import annotations

import uuid

from chat.bus.messages import PresenceChanged
from chat.events import ConversationMoved, Events
from chat.presence import Presence, Roster
from states import redis_keys
from states.record import Conversation
from states.repository import Actor, Transition

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
