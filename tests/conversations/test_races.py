"""Issue 10 items 1 and 3: moves and messages decided on what SQL holds at the moment of the write.

Each race is made deterministic by letting the competing writer in right before the write under test
(through the repository, as another instance would), never by sleeping.
"""

from __future__ import annotations

import pytest

from chat import keys
from chat.auth import Identity
from chat.errors import Forbidden
from states import StaleVersion, redis_keys

A1, A2 = Identity("agent-1", "agent"), Identity("agent-2", "agent")
CUSTOMER = Identity("cust-1", "customer")


async def started(h, *, handoff: bool = False) -> str:
    ops = h.ops
    for agent in (A1, A2):
        await ops.staff.remember(agent)
    c = await ops.conversations.start(CUSTOMER)
    if handoff:
        await ops.conversations.request_handoff(CUSTOMER, c.id)
    return c.id


def before_next(monkeypatch, target, name, competitor):
    """Run `competitor()` once, right before the next call of target.name."""
    original = getattr(target, name)
    done = []

    async def wrapped(*args, **kwargs):
        if not done:
            done.append(True)
            await competitor()
        return await original(*args, **kwargs)

    monkeypatch.setattr(target, name, wrapped)


async def test_close_is_fired_with_the_version_its_permission_was_checked_on(harness, monkeypatch):
    """a2 may close a waiting conversation nobody holds; a1 claims it in between: a2's close is a conflict."""
    cid = await started(harness, handoff=True)
    repo = harness.repository
    before_next(monkeypatch, repo, "fire", lambda: repo.fire(cid, "assign", agent_id=A1.user_id))
    with pytest.raises(StaleVersion):
        await harness.ops.conversations.close(A2, cid)
    c = await repo.get(cid)
    assert (c.state, c.agent_id) == ("human", A1.user_id)


async def test_release_is_fired_with_the_version_its_permission_was_checked_on(harness, monkeypatch):
    cid = await started(harness, handoff=True)
    repo = harness.repository
    before_next(monkeypatch, repo, "fire", lambda: repo.fire(cid, "assign", agent_id=A1.user_id))
    with pytest.raises(StaleVersion):
        await harness.ops.assignment.release(A2, cid)
    assert (await repo.get(cid)).agent_id == A1.user_id


async def test_an_agent_message_is_stored_only_while_it_is_the_assignee(harness, monkeypatch):
    cid = await started(harness)
    await harness.ops.assignment.claim(A1, cid)
    repo, writer = harness.repository, harness.ops.messages.writer
    before_next(monkeypatch, writer, "append", lambda: repo.fire(cid, "assign", agent_id=A2.user_id))
    with pytest.raises(Forbidden):
        await harness.ops.messages.send(A1, cid, content="hello", client_msg_id="m1")
    contents = [m.content for m in await harness.app[keys.STORE].messages.list_of(cid)]
    assert "hello" not in contents


async def test_a_customer_message_racing_a_close_reopens_and_is_never_stored_into_a_closed_one(harness, monkeypatch):
    cid = await started(harness)
    repo, writer = harness.repository, harness.ops.messages.writer
    before_next(monkeypatch, writer, "append", lambda: repo.fire(cid, "close"))
    message = await harness.ops.messages.send(CUSTOMER, cid, content="one more thing", client_msg_id="m1")
    events = await harness.app[keys.STORE].events.list_of(cid)
    assert [e.trigger for e in events] == ["close", "reopen"]
    reopened_at = events[-1].version
    assert (await repo.get(cid)).state == "ai" and reopened_at == 2
    assert message.content == "one more thing"


async def test_after_a_redis_restore_every_later_move_of_the_conversation_succeeds(harness):
    """Issue 10 item 1: restore Redis from an older snapshot; claims, closes and handoffs go on."""
    cid = await started(harness)
    redis, key = harness.app[keys.REDIS], redis_keys.session(cid)
    snapshot = await redis.get(key)
    await harness.ops.assignment.claim(A1, cid)
    await harness.ops.assignment.release(A1, cid)
    await redis.set(key, snapshot)  # the restore: the live record says version 0
    c = await harness.ops.assignment.claim(A2, cid)
    assert (c.agent_id, c.version) == (A2.user_id, 3)
    await redis.set(key, snapshot)  # again: the live record says `ai` and no agent, SQL says a2 holds it
    with pytest.raises(Forbidden):  # the permission check reads the repaired record, not the stale one
        await harness.ops.conversations.close(A1, cid)
    closed = await harness.ops.conversations.close(A2, cid)
    assert (closed.state, closed.version) == ("closed", 4)


async def test_an_ai_reply_refused_by_sql_repairs_the_stale_live_record(harness):
    """A live record saying `ai` while SQL says `human` must not make every later AI reply vanish."""
    cid = await started(harness)
    redis, key = harness.app[keys.REDIS], redis_keys.session(cid)
    snapshot = await redis.get(key)
    await harness.ops.assignment.claim(A1, cid)
    await redis.set(key, snapshot)
    stale = await harness.repository.get(cid)
    assert stale.state == "ai"
    with pytest.raises(StaleVersion):
        await harness.ops.messages.append(stale, answering=1, sender_type="ai", content="late")
    assert (await harness.repository.get(cid)).state == "human"


# --- a committed move stays a success whatever fails after the commit (PROTOCOL 3.7) -------------

async def test_a_move_whose_live_record_write_fails_after_the_commit_is_a_success(harness, monkeypatch):
    from redis.exceptions import ConnectionError as RedisConnectionError

    from chat.events import ConversationMoved

    cid = await started(harness)
    moved: list[ConversationMoved] = []
    harness.app[keys.EVENTS].subscribe(ConversationMoved, moved.append)

    async def redis_gone(*args, **kwargs):
        raise RedisConnectionError("Redis went away")

    monkeypatch.setattr(harness.repository, "_cas", redis_gone)
    after = await harness.ops.conversations.request_handoff(CUSTOMER, cid)  # no error for a committed move
    assert (after.state, after.version) == ("handoff", 1)
    assert [m.transition.after.version for m in moved] == [1]  # and everyone hears of it
    monkeypatch.undo()
    assert (await harness.repository.get(cid)).version == 0  # the live record stayed behind
    assert (await harness.repository.get(cid, fresh=True)).version == 1  # the next checked read repairs it


async def test_a_claim_whose_announcement_fails_after_the_commit_is_a_success(harness):
    from chat.events import ConversationAssigned

    cid = await started(harness, handoff=True)

    def announcement_fails(event: ConversationAssigned) -> None:
        raise RuntimeError("the bus is down")

    harness.app[keys.EVENTS].subscribe(ConversationAssigned, announcement_fails)
    claimed = await harness.ops.assignment.claim(A1, cid)
    assert (claimed.state, claimed.agent_id) == ("human", "agent-1")
    assert (await harness.repository.get(cid, fresh=True)).agent_id == "agent-1"
