"""The message path writes on this instance's last seen record of a conversation (no live-record
read), under a guard on its state and version. These tests move the conversation through the
repository, as another instance would (this instance's record stays behind), and check that every
decision is still made on what SQL holds."""

from __future__ import annotations

import dataclasses

import pytest

from chat import keys
from chat.auth import Identity
from chat.conversations import lifecycle
from chat.errors import Forbidden, NotFound
from chat.events import CustomerWrote, MessageStored
from states import redis_keys

A1, A2 = Identity("agent-1", "agent"), Identity("agent-2", "agent")
CUSTOMER, OTHER = Identity("cust-1", "customer"), Identity("cust-2", "customer")


@pytest.fixture
async def harness(harness_factory, database_url):
    """On MariaDB and on SQLite: the guard is checked by each one's own statements."""
    return await harness_factory(database_url)


@pytest.fixture
def heard(harness):
    """The CustomerWrote and MessageStored events the app emits."""
    events: dict[type, list] = {CustomerWrote: [], MessageStored: []}
    for kind, seen in events.items():
        harness.app[keys.EVENTS].subscribe(kind, seen.append)
    return events


async def stored(harness, cid: str) -> list[str]:
    return [m.content for m in await harness.app[keys.STORE].messages.list_of(cid)]


async def test_a_close_elsewhere_is_noticed_and_the_message_reopens_the_conversation(harness, heard):
    c = await harness.ops.conversations.start(CUSTOMER)
    await harness.ops.conversations.request_handoff(CUSTOMER, c.id)  # seen here: handoff
    await harness.repository.fire(c.id, "close")  # elsewhere
    message = await harness.ops.messages.send(CUSTOMER, c.id, content="still there?", client_msg_id="m1")
    assert message.seq >= 1 and (await harness.repository.get(c.id)).state == "ai"
    triggers = [e.trigger for e in await harness.app[keys.STORE].events.list_of(c.id)]
    assert triggers == ["request_handoff", "close", "reopen"]
    assert [e.message.id for e in heard[CustomerWrote]] == [message.id]  # back with the AI: it answers
    await harness.drain_ai()


async def test_a_handoff_elsewhere_means_the_ai_does_not_answer(harness, heard):
    c = await harness.ops.conversations.start(CUSTOMER)  # seen here: ai
    await harness.repository.fire(c.id, "request_handoff")  # elsewhere
    await harness.ops.messages.send(CUSTOMER, c.id, content="hello", client_msg_id="m1")
    assert heard[CustomerWrote] == []
    assert "hello" in await stored(harness, c.id)


async def test_a_return_to_the_ai_elsewhere_means_the_ai_answers(harness, heard):
    c = await harness.ops.conversations.start(CUSTOMER)
    await harness.ops.conversations.request_handoff(CUSTOMER, c.id)  # seen here: handoff
    await harness.repository.fire(c.id, "release")  # elsewhere: back to ai
    message = await harness.ops.messages.send(CUSTOMER, c.id, content="anyone?", client_msg_id="m1")
    assert [e.message.id for e in heard[CustomerWrote]] == [message.id]
    await harness.drain_ai()


async def test_an_agent_writes_only_while_assigned_whatever_this_instance_saw(harness):
    for agent in (A1, A2):
        await harness.ops.staff.remember(agent)
    c = await harness.ops.conversations.start(CUSTOMER)
    await harness.ops.assignment.claim(A1, c.id)  # seen here: human, agent-1
    await harness.repository.fire(c.id, "assign", agent_id=A2.user_id)  # elsewhere
    with pytest.raises(Forbidden):
        await harness.ops.messages.send(A1, c.id, content="from a1", client_msg_id="a1")
    await harness.ops.messages.send(A2, c.id, content="from a2", client_msg_id="a2")
    note = await harness.ops.messages.send(A1, c.id, content="a note", client_msg_id="n1", private=True)
    assert note.private
    contents = await stored(harness, c.id)
    assert "from a1" not in contents and {"from a2", "a note"} <= set(contents)


async def test_a_customer_never_reaches_another_customers_conversation(harness):
    c = await harness.ops.conversations.start(CUSTOMER)
    assert harness.ops.conversations.last_seen(CUSTOMER, c.id) is not None
    with pytest.raises(NotFound):
        await harness.ops.messages.send(OTHER, c.id, content="hi", client_msg_id="x")
    with pytest.raises(NotFound):
        await harness.ops.messages.typing(OTHER, c.id, True)
    assert "hi" not in await stored(harness, c.id)


async def test_a_resend_on_the_fast_path_is_stored_and_announced_once(harness, heard):
    c = await harness.ops.conversations.start(CUSTOMER)
    await harness.ops.conversations.request_handoff(CUSTOMER, c.id)
    first = await harness.ops.messages.send(CUSTOMER, c.id, content="once", client_msg_id="m1")
    again = await harness.ops.messages.send(CUSTOMER, c.id, content="once", client_msg_id="m1")
    assert again.id == first.id and again.seq == first.seq
    assert (await stored(harness, c.id)).count("once") == 1
    assert [e.message.id for e in heard[MessageStored] if e.message.content == "once"] == [first.id]


async def test_the_last_seen_records_are_bounded(harness, monkeypatch):
    monkeypatch.setattr(lifecycle, "LAST_SEEN_MAX", 2)
    ids = [(await harness.ops.conversations.start(CUSTOMER)).id for _ in range(3)]
    seen = [harness.ops.conversations.last_seen(CUSTOMER, cid) for cid in ids]
    assert seen[0] is None and [c.id for c in seen[1:]] == ids[1:]
    # the one no longer kept still takes messages (read from Redis, as before)
    await harness.ops.messages.send(CUSTOMER, ids[0], content="still works", client_msg_id="m1")
    assert "still works" in await stored(harness, ids[0])


async def test_a_read_overtaken_by_a_move_does_not_replace_the_newer_record(harness):
    c = await harness.ops.conversations.start(CUSTOMER)
    old = await harness.ops.conversations.get(c.id)
    await harness.ops.conversations.request_handoff(CUSTOMER, c.id)
    harness.ops.conversations._seen(old)  # a read that began before the move ends after it
    assert harness.ops.conversations.last_seen(CUSTOMER, c.id).state == "handoff"


async def test_the_last_seen_record_leaves_out_a_migrated_context(harness):
    c = await harness.ops.conversations.start(CUSTOMER)
    big = dataclasses.replace(c, context={"history": ["x" * 1000] * 50}, extra={"legacyField": "y" * 1000})
    harness.ops.conversations._seen(big)
    kept = harness.ops.conversations.last_seen(CUSTOMER, c.id)
    assert (kept.context, kept.extra) == ({}, {}) and (kept.id, kept.user_id, kept.version) == (c.id, c.user_id, 0)
    assert big.context  # the record handed to the caller is untouched


async def test_after_a_redis_restore_the_message_path_repairs_the_record_and_is_fast_again(harness):
    """A live record behind SQL (Redis restored from an older snapshot) is repaired by the first
    message that finds it stale; the next message is written on the last seen record again."""
    c = await harness.ops.conversations.start(CUSTOMER)
    redis, key = harness.app[keys.REDIS], redis_keys.session(c.id)
    snapshot = await redis.get(key)  # version 0, ai
    await harness.ops.conversations.request_handoff(CUSTOMER, c.id)
    await redis.set(key, snapshot)  # the restore
    harness.ops.conversations._last_seen.clear()  # as on an instance that starts after the restore
    await harness.ops.messages.send(CUSTOMER, c.id, content="first", client_msg_id="m1")
    await harness.ops.messages.send(CUSTOMER, c.id, content="second", client_msg_id="m2")
    # the AI turn "first" set off (the restored record said ai) finds the move and drops its reply
    await harness.drain_ai()
    assert (await harness.repository.get(c.id)).version == 1  # repaired from SQL
    seen = harness.ops.conversations.last_seen(CUSTOMER, c.id)
    assert (seen.state, seen.version) == ("handoff", 1)
    reads = []
    original = harness.repository.get

    async def counted(*args, **kwargs):
        reads.append(args)
        return await original(*args, **kwargs)

    harness.repository.get = counted
    await harness.ops.messages.send(CUSTOMER, c.id, content="third", client_msg_id="m3")
    assert reads == []  # no live-record read: the last seen record was right
    assert (await stored(harness, c.id))[-3:] == ["first", "second", "third"]


async def test_after_a_redis_restore_the_assigned_agent_may_write_to_the_customer(harness):
    """The snapshot was taken before the agent claimed: the restored record says `handoff`, no agent, and
    refused every message of the agent SQL says it belongs to (`forbidden`, for ever)."""
    c = await harness.ops.conversations.start(CUSTOMER)
    await harness.ops.conversations.request_handoff(CUSTOMER, c.id)
    redis, key = harness.app[keys.REDIS], redis_keys.session(c.id)
    snapshot = await redis.get(key)  # handoff, no agent
    await harness.ops.assignment.claim(A1, c.id)
    await redis.set(key, snapshot)  # the restore
    harness.ops.conversations._last_seen.clear()  # as on an instance that starts after the restore
    agent = await harness.connect("agent-1", role="agent")
    watched = (await agent.ok("conversation.watch", conversation_id=c.id))["conversation"]
    assert (watched["state"], watched["agent_id"], watched["version"]) == ("human", "agent-1", 2)
    await redis.set(key, snapshot)
    harness.ops.conversations._last_seen.clear()
    message, created = await harness.ops.messages.deliver(A1, c.id, content="I am here", client_msg_id="a1")
    assert created and message.sender_id == "agent-1"
    with pytest.raises(Forbidden):  # another agent still may not
        await harness.ops.messages.deliver(A2, c.id, content="me too", client_msg_id="a2")
    assert (await stored(harness, c.id))[-1] == "I am here"
