"""Conversation rows on MariaDB and SQLite: the mirror, the TransitionLog side, the queue reads."""

import uuid

import pytest

from states import StaleVersion, State
from states.clock import iso_from_ms, ms_from_iso, now_ms
from states.repository import Actor, Transition
from tests.conftest import new_id


def moved(before, **changes) -> Transition:
    """A transition of `before` to a copy with `changes` and the next version."""
    after = before.copy()
    for name, value in changes.items():
        setattr(after, name, value)
    after.version = before.version + 1
    return Transition(before, after, "request_handoff", Actor("agent", "a1"), "why", now_ms())


async def test_create_load_round_trip_and_ensure_is_idempotent(store, make_conversation):
    c = await make_conversation(metadata={"lang": "zh"}, team_id="t1")
    loaded = await store.conversations.load(c.id)
    assert (loaded.id, loaded.user_id, loaded.state, loaded.team_id, loaded.metadata) == (c.id, "u1", "ai", "t1",
                                                                                         {"lang": "zh"})
    assert (loaded.created_at, loaded.version) == (iso_from_ms(ms_from_iso(c.created_at)), 0)
    await store.conversations.ensure(c)  # already there: nothing happens
    assert await store.conversations.existing([c.id, new_id()]) == {c.id}
    assert await store.conversations.existing([]) == set()
    assert await store.conversations.load(new_id()) is None


async def test_record_transition_moves_the_row_and_logs(store, make_conversation):
    c = await make_conversation()
    t = moved(c, state=State.HANDOFF.value, handoff_at=c.updated_at)
    async with store.conversations.record_transition(t):
        pass
    row = await store.db.fetchone(
        f"SELECT state, version, handoff_ms FROM {store.db.tables.conversations} WHERE id = %s", (c.id,))
    assert (row[0], row[1]) == ("handoff", 1) and row[2] is not None
    [event] = await store.events.list_of(c.id)
    assert (event.id, event.from_state, event.to_state, event.actor_id, event.reason) == (t.id, "ai", "handoff",
                                                                                          "a1", "why")


async def test_record_transition_refuses_a_stale_version_and_rolls_back_on_error(store, make_conversation):
    c = await make_conversation(version=2)
    stale = c.copy()
    stale.version = 1
    with pytest.raises(StaleVersion):
        async with store.conversations.record_transition(moved(stale, state="handoff")):
            pass
    with pytest.raises(RuntimeError):
        async with store.conversations.record_transition(moved(c, state="handoff")):
            raise RuntimeError("the Redis side failed")
    assert (await store.conversations.load(c.id)).state == "ai"
    assert await store.events.list_of(c.id) == []


async def test_a_rowless_record_is_born_moved(store, make_conversation):
    c = await make_conversation()
    fresh = c.copy()
    fresh.id = new_id()  # a migrated record: no row yet
    async with store.conversations.record_transition(moved(fresh, state="handoff")):
        pass
    assert (await store.conversations.load(fresh.id)).state == "handoff"


async def test_extras_are_last_seq_and_sorted_labels(store, conversation_id):
    assert await store.conversations.extras(new_id()) == (0, [])
    await store.messages.append(conversation_id, sender_type="customer", content="hi")
    titles = [f"b-{uuid.uuid4()}", f"a-{uuid.uuid4()}"]
    for title in titles:
        await store.labels.create(title, None, None)
    assert await store.labels.set_for(conversation_id, titles) == []
    assert await store.conversations.extras(conversation_id) == (1, sorted(titles))


async def test_the_handoff_queue_longest_waiting_first(store, make_conversation):
    team = f"team-{uuid.uuid4()}"
    base = now_ms() - 10_000_000
    waiting = []
    for i, team_id in enumerate((team, None, team)):
        c = await make_conversation(state="handoff", team_id=team_id, handoff_at=iso_from_ms(base + (3 - i) * 1000))
        waiting.append(c.id)
    await make_conversation(state="ai", team_id=team)
    queue = await store.conversations.handoff_queue(team)
    assert [entry[0] for entry in queue] == [waiting[2], waiting[0]]
    assert queue[0] == (waiting[2], team, base + 1000)
    anywhere = [entry[0] for entry in await store.conversations.handoff_queue(limit=10_000)]
    assert set(waiting) <= set(anywhere)
    teamless = [entry[0] for entry in await store.conversations.handoff_queue(any_team=False, limit=10_000)]
    assert waiting[1] in teamless and waiting[0] not in teamless
    since = await store.conversations.waiting_since(base + 2500, limit=10_000)
    assert waiting[2] in since and waiting[1] in since and waiting[0] not in since
