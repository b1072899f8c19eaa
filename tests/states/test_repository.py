"""The repository against the real Redis and both SQL backends: CAS, the log, the mirror."""

import asyncio
from itertools import pairwise

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chat.store import Store
from states import (
    ConversationNotFound,
    InvalidTransition,
    StaleVersion,
    State,
    Trigger,
    dump_record,
    load_record,
    redis_keys,
)
from states.repository import Actor, ConversationRepository
from tests.conftest import new_id

AGENT = Actor("agent", "agent-1")


async def put_in_state(repo: ConversationRepository, state: str) -> str:
    c = await repo.create("user-1")
    path = {
        "ai": [],
        "handoff": [("request_handoff", {})],
        "human": [("assign", {"agent_id": "agent-0"})],
        "closed": [("close", {})],
    }[state]
    for trigger, data in path:
        await repo.fire(c.id, trigger, actor=AGENT, **data)
    return c.id


async def mirror_row(store: Store, cid: str):
    return await store.db.fetchone(
        "SELECT state, agent_type, agent_id, team_id, version FROM conversations WHERE id = %s", (cid,)
    )


@pytest.mark.parametrize("state", [s.value for s in State])
async def test_every_state_trigger_pair(repo, redis, store, state, expected_moves):
    for trigger in [t.value for t in Trigger]:
        cid = await put_in_state(repo, state)
        key = redis_keys.session(cid)
        raw_before = await redis.get(key)
        row_before = await mirror_row(store, cid)
        events_before = await store.events.list_of(cid)
        expected = expected_moves.get((state, trigger))
        if expected is None:
            with pytest.raises(InvalidTransition):
                await repo.fire(cid, trigger, actor=AGENT, agent_id="agent-9")
            assert await redis.get(key) == raw_before  # byte for byte
            assert await mirror_row(store, cid) == row_before
            assert await store.events.list_of(cid) == events_before
        else:
            t = await repo.fire(cid, trigger, actor=AGENT, reason="test", agent_id="agent-9")
            stored = load_record(cid, await redis.get(key))
            assert stored.state == expected == t.after.state
            assert stored.version == t.before.version + 1
            row = await mirror_row(store, cid)
            assert (row[0], row[4]) == (expected, stored.version)
            log = await store.events.list_of(cid)
            assert len(log) == len(events_before) + 1
            last = log[-1]
            assert (last.trigger, last.from_state, last.to_state, last.actor_type, last.actor_id, last.reason) == (
                trigger,
                state,
                expected,
                "agent",
                "agent-1",
                "test",
            )


async def test_create_writes_record_and_row(repo, redis, store):
    c = await repo.create("user-7", metadata={"source": "web"}, team_id="team-a")
    raw = orjson.loads(await redis.get(redis_keys.session(c.id)))
    assert raw["user_id"] == "user-7" and raw["state"] == "ai" and raw["version"] == 0
    assert raw["metadata"] == {"source": "web"} and raw["team_id"] == "team-a"
    assert await mirror_row(store, c.id) == ("ai", "ai", None, "team-a", 0)
    assert await redis.ttl(redis_keys.session(c.id)) == -1  # new conversations do not expire


async def test_unknown_conversation(repo):
    with pytest.raises(ConversationNotFound):
        await repo.fire(new_id(), "close")
    with pytest.raises(ConversationNotFound):
        await repo.get(new_id())


async def test_stale_writer_never_overwrites(repo, redis):
    cid = await put_in_state(repo, "ai")
    stale = await repo.get(cid)
    await repo.fire(cid, "request_handoff")
    with pytest.raises(StaleVersion):
        await repo.fire(cid, "close", expect_version=stale.version)
    assert (await repo.get(cid)).state == "handoff"


async def test_a_redis_only_change_cannot_make_the_live_record_disagree_with_sql(repo, redis, store):
    """SQL is the truth: a live record changed behind the repository's back between the load and
    the save ends as the committed transition, never as something SQL does not hold."""
    cid = await put_in_state(repo, "ai")
    key = redis_keys.session(cid)
    original_record = store.conversations.record_transition

    def racing_record(transition):
        async def sneak():
            other = load_record(cid, await redis.get(key))
            other.version += 1
            other.state = "handoff"
            await redis.set(key, dump_record(other))

        cm = original_record(transition)

        class Wrapped:
            async def __aenter__(self):
                await cm.__aenter__()
                await sneak()

            async def __aexit__(self, *exc):
                return await cm.__aexit__(*exc)

        return Wrapped()

    store.conversations.record_transition = racing_record
    try:
        await repo.fire(cid, "close")
    finally:
        store.conversations.record_transition = original_record
    live = await repo.get(cid)
    assert (live.state, live.version) == ("closed", 1)
    assert (await mirror_row(store, cid))[4] == 1
    assert [e.trigger for e in await store.events.list_of(cid)] == ["close"]


async def test_a_failed_commit_leaves_the_live_record_untouched(repo, redis, store):
    """The live record is written after the SQL commit: a commit that fails (or a cancellation at
    shutdown) can never leave Redis ahead of SQL."""
    cid = await put_in_state(repo, "ai")
    key = redis_keys.session(cid)
    before = await redis.get(key)
    original_record = store.conversations.record_transition

    def failing_commit(transition):
        cm = original_record(transition)

        class Wrapped:
            async def __aenter__(self):
                await cm.__aenter__()

            async def __aexit__(self, *exc):
                await cm.__aexit__(RuntimeError, RuntimeError("commit failed"), None)  # roll back
                raise RuntimeError("commit failed")

        return Wrapped()

    store.conversations.record_transition = failing_commit
    try:
        with pytest.raises(RuntimeError):
            await repo.fire(cid, "close")
    finally:
        store.conversations.record_transition = original_record
    assert await redis.get(key) == before
    assert (await mirror_row(store, cid))[4] == 0


async def test_a_live_record_behind_sql_is_repaired_and_moves_on(repo, redis, store):
    """Redis restored from an older snapshot: the record says version 0 in `ai`, SQL says version 2.
    Before the fix every later transition was `conflict` forever."""
    cid = await put_in_state(repo, "ai")
    key = redis_keys.session(cid)
    snapshot = await redis.get(key)
    await repo.fire(cid, "assign", agent_id="a1")
    await repo.fire(cid, "release")
    await redis.set(key, snapshot)  # the restore
    t = await repo.fire(cid, "assign", agent_id="a2")
    assert (t.before.version, t.after.version, t.after.agent_id) == (2, 3, "a2")
    assert (await mirror_row(store, cid))[4] == 3
    await redis.set(key, snapshot)
    fresh = await repo.get(cid, fresh=True)  # what a permission check reads
    assert (fresh.state, fresh.agent_id, fresh.version) == ("human", "a2", 3)


@pytest.mark.parametrize("how", ["expected state", "trigger", "expected version"])
async def test_a_transition_the_stale_record_refuses_is_judged_on_the_repaired_one(repo, redis, store, how):
    """Redis restored from an older snapshot in `human` (agent a1, version 1) while SQL went on to `handoff`
    (released, then handed off again): a claim expecting `ai` or `handoff`, a handoff, or a move at SQL's
    version was refused by the stale record for ever; each is now judged on the repaired record."""
    cid = await put_in_state(repo, "ai")
    key = redis_keys.session(cid)
    await repo.fire(cid, "assign", agent_id="a1")
    snapshot = await redis.get(key)  # human, a1, version 1
    await repo.fire(cid, "release")
    await repo.fire(cid, "request_handoff")  # SQL: handoff, version 3
    await redis.set(key, snapshot)  # the restore
    if how == "expected state":
        t = await repo.fire(cid, "assign", agent_id="a2", expect_states=("ai", "handoff"))
        assert (t.before.state, t.after.agent_id, t.after.version) == ("handoff", "a2", 4)
    elif how == "trigger":
        await repo.fire(cid, "release")  # human -> ai on the stale record would pass: make it `ai` in SQL first
        await redis.set(key, snapshot)
        t = await repo.fire(cid, "request_handoff")  # the stale record is in `human`: refused there
        assert (t.before.state, t.after.state, t.after.version) == ("ai", "handoff", 5)
    else:
        t = await repo.fire(cid, "assign", agent_id="a2", expect_version=3)
        assert (t.before.version, t.after.version) == (3, 4)
    assert (await repo.get(cid)).version == t.after.version == (await mirror_row(store, cid))[4]


async def test_a_stale_transition_on_a_repaired_record_is_refused_by_its_state(repo, redis, store):
    cid = await put_in_state(repo, "ai")
    key = redis_keys.session(cid)
    snapshot = await redis.get(key)
    await repo.fire(cid, "close")
    await redis.set(key, snapshot)  # Redis says `ai`, SQL says `closed`
    with pytest.raises(InvalidTransition):
        await repo.fire(cid, "request_handoff")  # repaired first, then refused: closed cannot hand off
    assert (await repo.get(cid)).state == "closed"


async def test_migrated_five_field_record_becomes_a_full_conversation(repo, redis, store):
    cid = new_id()
    five = {
        "user_id": "legacy-user",
        "agent_type": "human",
        "context": {"topic": "refund"},
        "created_at": "2024-01-01T10:00:00Z",
        "updated_at": "2024-01-01T10:05:00Z",
    }
    await redis.set(redis_keys.session(cid), orjson.dumps(five), px=600_000)
    c = await repo.get(cid)
    assert (c.state, c.version) == ("handoff", 0)
    assert await mirror_row(store, cid) is None
    await repo.fire(cid, "assign", actor=AGENT, agent_id="agent-3")
    assert await mirror_row(store, cid) == ("human", "human", "agent-3", None, 1)
    stored = orjson.loads(await redis.get(redis_keys.session(cid)))
    assert stored["context"] == {"topic": "refund"} and stored["created_at"] == "2024-01-01T10:00:00Z"
    assert 0 < await redis.pttl(redis_keys.session(cid)) <= 600_000  # the migrated TTL is kept
    assert [e.trigger for e in await store.events.list_of(cid)] == ["assign"]


async def test_lost_live_record_is_rebuilt_from_sql(repo, redis, store):
    cid = await put_in_state(repo, "human")
    await redis.delete(redis_keys.session(cid))
    c = await repo.get(cid)
    assert (c.state, c.agent_id, c.version) == ("human", "agent-0", 1)
    await repo.fire(cid, "close")
    assert (await repo.get(cid)).version == 2


async def test_fifty_concurrent_writers(repo, store):
    cid = await put_in_state(repo, "ai")
    cycle = ["request_handoff", "assign", "requeue", "release", "close", "reopen"]

    async def writer(i: int):
        try:
            t = await repo.fire(cid, cycle[i % len(cycle)], actor=Actor("agent", f"a{i}"), agent_id=f"a{i}")
            return ("ok", t.after.version)
        except (StaleVersion, InvalidTransition):
            return ("conflict", None)

    results = await asyncio.gather(*(writer(i) for i in range(50)))
    won = sorted(v for r, v in results if r == "ok")
    assert len(won) + sum(1 for r, _ in results if r == "conflict") == 50
    assert won == list(range(1, len(won) + 1))  # strictly increasing, no gaps: no win lost
    final = await repo.get(cid)
    assert final.version == len(won)
    log = await store.events.list_of(cid)
    assert [e.version for e in log] == won
    for prev, nxt in pairwise(log):  # the log is a chain: each entry starts where the last ended
        assert prev.to_state == nxt.from_state


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(triggers=st.lists(st.sampled_from([t.value for t in Trigger]), min_size=1, max_size=15))
async def test_random_sequences_keep_version_and_log(repo, redis, store, triggers):
    c = await repo.create("user-h")
    done = []
    for i, trigger in enumerate(triggers):
        try:
            t = await repo.fire(c.id, trigger, actor=AGENT, reason=f"step {i}", agent_id=f"agent-{i}")
            done.append((trigger, t.before.state, t.after.state))
        except InvalidTransition:
            pass
    final = await repo.get(c.id)
    assert final.version == len(done)
    log = await store.events.list_of(c.id)
    assert [(e.trigger, e.from_state, e.to_state) for e in log] == done
    assert [e.version for e in log] == list(range(1, len(done) + 1))
