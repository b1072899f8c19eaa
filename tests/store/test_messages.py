"""Messages on MariaDB and SQLite: gap-free seq, idempotent resend, the state guard, batches, reads."""

import asyncio
import uuid

import pytest

from chat.store.db import RolledBack
from chat.store.messages import WRITE_TRIES, Guard, NewMessage
from states import ConversationNotFound, StaleVersion
from states.clock import now_iso
from states.record import Conversation
from tests.conftest import new_id


async def test_two_hundred_concurrent_inserts_get_seq_1_to_200(store, conversation_id):
    cid = conversation_id

    async def send(i: int):
        return await store.messages.append(
            cid, sender_type="customer", sender_id="u1", content=f"m{i}", client_msg_id=f"c{i}"
        )

    results = await asyncio.gather(*(send(i) for i in range(200)))
    assert all(created for _, created in results)
    assert sorted(m.seq for m, _ in results) == list(range(1, 201))
    assert (await store.conversations.extras(cid))[0] == 200

    # resends, also concurrent with each other, return the stored rows and store nothing new
    resent = await asyncio.gather(*(send(i) for i in range(0, 200, 7)), *(send(i) for i in range(0, 200, 7)))
    originals = {m.client_msg_id: m for m, _ in results}
    for message, created in resent:
        assert not created
        assert message == originals[message.client_msg_id]
    stored = await store.messages.list_of(cid)
    assert [m.seq for m in stored] == list(range(1, 201))


async def test_unicode_round_trips_exactly(store, conversation_id):
    cid = conversation_id
    text = "你好，我要退款 🙂👍🏽 — ‘quotes’ \u200d\U0001F469\u200d\U0001F4BB"
    m, _ = await store.messages.append(cid, sender_type="customer", content=text, client_msg_id="k")
    assert (await store.messages.list_of(cid))[0].content == text
    assert m.content == text


async def test_guarded_append_refuses_a_moved_conversation(store, make_conversation):
    cid = (await make_conversation(state="ai", version=3)).id
    m, created = await store.messages.append(
        cid, sender_type="ai", content="ok", guard=Guard(state="ai", version=3)
    )
    assert created and m.seq == 1
    with pytest.raises(StaleVersion):
        await store.messages.append(cid, sender_type="ai", content="late", guard=Guard(state="ai", version=2))
    with pytest.raises(StaleVersion):
        await store.messages.append(cid, sender_type="ai", content="late", guard=Guard(state="human", version=3))
    assert [m.content for m in await store.messages.list_of(cid)] == ["ok"]
    assert (await store.conversations.extras(cid))[0] == 1  # the refused write took no seq


async def test_an_ai_reply_is_refused_after_another_ai_message_one_by_one_and_in_a_batch(store, make_conversation):
    """The AI reply's guard: no AI message after the newest message its turn read (another turn's reply),
    in the one-by-one write and in a group commit (the tables' names qualify the subquery: prefixed too)."""
    cid = (await make_conversation(state="ai", version=0)).id
    await store.messages.append(cid, sender_type="customer", sender_id="u1", content="q")  # seq 1
    await store.messages.append(cid, sender_type="agent", sender_id="a1", content="note", private=True)  # 2
    reply = Guard(state="ai", version=0, no_ai_after=2)  # a turn that read up to seq 2
    first, _ = await store.messages.append(cid, sender_type="ai", content="first", guard=reply)  # 3
    with pytest.raises(StaleVersion):
        await store.messages.append(cid, sender_type="ai", content="second", guard=reply)
    with pytest.raises(ConversationNotFound):  # a batch is all or nothing (the writer then goes one by one)
        await store.messages.append_batch([NewMessage(cid, "customer", "more", "u1"),
                                           NewMessage(cid, "ai", "second", guard=reply)])
    batch = await store.messages.append_batch([
        NewMessage(cid, "customer", "more", "u1"), NewMessage(cid, "ai", "answer", guard=Guard(no_ai_after=3))])
    assert [m.seq for m in batch] == [4, 5]
    assert [m.content for m in await store.messages.list_of(cid)] == ["q", "note", "first", "more", "answer"]


async def test_an_ai_replys_guard_leaves_the_conversation_before_it_free_to_write(mysql_store, monkeypatch):
    """MariaDB: the AI reply's check (no AI message after what its turn read) locks the newest messages of its
    own conversation only. Read from the conversation's first message on, it locked the gap before it too,
    where the conversation before it in the index writes its next message: the writer's two lanes
    deadlocked under load (the benchmark's AI path)."""
    store = mysql_store
    before, guarded = sorted(str(uuid.uuid4()) for _ in range(2))  # their messages side by side in the index
    now = now_iso()
    for cid in (before, guarded):
        await store.conversations.create(Conversation(id=cid, user_id="u1", state="ai", version=0, agent_type="ai",
                                                      created_at=now, updated_at=now))
        await store.messages.append(cid, sender_type="customer", sender_id="u1", content="q")  # seq 1
    checked, leave, write = asyncio.Event(), asyncio.Event(), store.messages._write

    async def held(tx, messages):
        if messages[0].conversation_id == guarded:
            checked.set()  # the guarded UPDATE ran: its transaction holds its locks
            await leave.wait()
        await write(tx, messages)

    monkeypatch.setattr(store.messages, "_write", held)
    reply = asyncio.create_task(store.messages.append(guarded, sender_type="ai", content="a",
                                                      guard=Guard(state="ai", version=0, no_ai_after=1)))
    try:
        await checked.wait()
        async with asyncio.timeout(20):  # a lock on that gap would hold it for innodb_lock_wait_timeout (50 s)
            message, _ = await store.messages.append(before, sender_type="customer", sender_id="u1", content="next")
        assert message.seq == 2 and not reply.done()
    finally:
        leave.set()
    assert (await reply)[0].seq == 2


@pytest.mark.parametrize("rollbacks", [WRITE_TRIES - 1, WRITE_TRIES])
async def test_a_message_the_database_rolled_back_whole_is_written_again(store, conversation_id, monkeypatch,
                                                                         rollbacks):
    """InnoDB rolls a deadlock's victim back whole (nothing of it written): the message is written again, up to
    WRITE_TRIES times in all; after that its sender gets the error, and nothing is stored."""
    bump, seen = store.messages._next_seq, []

    async def rolled_back(tx, *args):
        if len(seen) < rollbacks:
            seen.append(args)
            raise RolledBack("Deadlock found when trying to get lock; try restarting transaction")
        return await bump(tx, *args)

    monkeypatch.setattr(store.messages, "_next_seq", rolled_back)
    if rollbacks == WRITE_TRIES:
        with pytest.raises(RolledBack):
            await store.messages.append(conversation_id, sender_type="customer", sender_id="u1", content="hi")
        assert await store.messages.list_of(conversation_id) == []
        return
    message, created = await store.messages.append(conversation_id, sender_type="customer", sender_id="u1",
                                                   content="hi")
    assert created and message.seq == 1 and len(seen) == rollbacks
    assert [(m.seq, m.content) for m in await store.messages.list_of(conversation_id)] == [(1, "hi")]


async def test_append_to_unknown_conversation(store):
    with pytest.raises(ConversationNotFound):
        await store.messages.append(new_id(), sender_type="customer", content="x")
    with pytest.raises(ConversationNotFound):  # guarded too: no row at all is not a stale version
        await store.messages.append(new_id(), sender_type="ai", content="x", guard=Guard(state="ai", version=0))


async def test_private_filter_and_after_seq(store, conversation_id):
    cid = conversation_id
    for i in range(5):
        await store.messages.append(cid, sender_type="agent", content=f"m{i}", private=(i % 2 == 1))
    assert [m.seq for m in await store.messages.list_of(cid, after_seq=2)] == [3, 4, 5]
    assert [m.seq for m in await store.messages.list_of(cid, include_private=False)] == [1, 3, 5]
    assert [m.seq for m in await store.messages.recent(cid, 2)] == [3, 5]
    assert [m.seq for m in await store.messages.list_of(cid, after_seq=1, limit=2)] == [2, 3]


async def test_find_is_per_sender(store, conversation_id):
    cid = conversation_id
    mine, _ = await store.messages.append(cid, sender_type="customer", sender_id="u1", content="a", client_msg_id="1")
    theirs, _ = await store.messages.append(cid, sender_type="agent", sender_id="a1", content="b", client_msg_id="1")
    assert await store.messages.find(cid, "customer", "u1", "1") == mine
    assert await store.messages.find(cid, "agent", "a1", "1") == theirs
    assert await store.messages.find(cid, "agent", "a2", "1") is None


async def test_a_client_msg_id_is_matched_exactly_trailing_spaces_included(store, conversation_id):
    """`k1 ` is a message of its own, not a resend of `k1` (MySQL's PAD SPACE collations call them equal)."""
    cid = conversation_id
    first, _ = await store.messages.append(cid, sender_type="customer", sender_id="u1", content="a", client_msg_id="k1")
    second, created = await store.messages.append(cid, sender_type="customer", sender_id="u1", content="b",
                                                  client_msg_id="k1 ")
    assert created and (second.seq, second.client_msg_id) == (2, "k1 ")
    assert await store.messages.find(cid, "customer", "u1", "k1 ") == second
    assert await store.messages.find(cid, "customer", "u1", "k1") == first
    batch = await store.messages.append_batch([NewMessage(cid, "customer", "c", "u1", False, "k2"),
                                               NewMessage(cid, "customer", "d", "u1", False, "k2  ")])
    assert [(m.seq, m.client_msg_id) for m in batch] == [(3, "k2"), (4, "k2  ")]
    again, created = await store.messages.append(cid, sender_type="customer", sender_id="u1", content="b",
                                                 client_msg_id="k1 ")
    assert not created and again == second


async def test_a_batch_numbers_each_conversation_in_order(store, make_conversation):
    a, b = (await make_conversation()).id, (await make_conversation()).id
    await store.messages.append(a, sender_type="customer", content="first")
    drafts = [NewMessage(cid, "customer", f"{cid[:4]}-{i}", "u1", False, f"k{i}") for i in range(3) for cid in (a, b)]
    stored = await store.messages.append_batch(drafts)
    assert [(m.conversation_id, m.content) for m in stored] == [(d.conversation_id, d.content) for d in drafts]
    assert [m.seq for m in stored if m.conversation_id == a] == [2, 3, 4]
    assert [m.seq for m in stored if m.conversation_id == b] == [1, 2, 3]
    assert [m.seq for m in await store.messages.list_of(a)] == [1, 2, 3, 4]


async def test_a_batch_is_all_or_nothing(store, conversation_id):
    await store.messages.append(conversation_id, sender_type="customer", sender_id="u1", content="a", client_msg_id="1")
    drafts = [NewMessage(conversation_id, "customer", "new", "u1", False, "2"),
              NewMessage(conversation_id, "customer", "again", "u1", False, "1")]
    with pytest.raises(Exception):  # noqa: B017 - DuplicateKey; the writer falls back one by one on any error
        await store.messages.append_batch(drafts)
    with pytest.raises(ConversationNotFound):
        await store.messages.append_batch([NewMessage(new_id(), "customer", "lost")])
    assert [m.content for m in await store.messages.list_of(conversation_id)] == ["a"]
    assert (await store.conversations.extras(conversation_id))[0] == 1


async def test_guards_on_the_assignee_and_on_a_closed_state(store, make_conversation):
    """An agent's message is stored only while it is the assignee; a customer's never into a closed one."""
    cid = (await make_conversation(state="human", version=2, agent_id="a1")).id
    m, _ = await store.messages.append(cid, sender_type="agent", sender_id="a1", content="mine",
                                       guard=Guard(state="human", agent_id="a1"))
    with pytest.raises(StaleVersion):
        await store.messages.append(cid, sender_type="agent", sender_id="a2", content="not mine",
                                    guard=Guard(state="human", agent_id="a2"))
    closed = (await make_conversation(state="closed", version=4)).id
    with pytest.raises(StaleVersion):
        await store.messages.append(closed, sender_type="customer", sender_id="u1", content="late",
                                    guard=Guard(not_state="closed"))
    assert [x.content for x in await store.messages.list_of(cid)] == ["mine"]
    assert await store.messages.list_of(closed) == []


async def test_a_batch_with_a_failing_guard_writes_nothing(store, make_conversation):
    """Group commit: a guard that does not hold fails the whole batch (the writer then goes one by one)."""
    open_ = (await make_conversation(state="ai", version=0)).id
    closed = (await make_conversation(state="closed", version=1)).id
    with pytest.raises(Exception):  # noqa: B017 - which error the batch raises does not matter, nothing written does
        await store.messages.append_batch([
            NewMessage(open_, "customer", "a", "u1", guard=Guard(not_state="closed")),
            NewMessage(closed, "customer", "b", "u1", guard=Guard(not_state="closed")),
        ])
    assert await store.messages.list_of(open_) == [] and await store.messages.list_of(closed) == []
    batch = await store.messages.append_batch([
        NewMessage(open_, "customer", "a", "u1", guard=Guard(not_state="closed")),
        NewMessage(open_, "agent", "b", "a1"),
    ])
    assert [m.seq for m in batch] == [1, 2]


async def test_list_of_pages_without_gaps_and_at_the_top_of_the_seq_range(store, conversation_id):
    cid = conversation_id
    await store.messages.append_batch([NewMessage(cid, "system", f"m{i}") for i in range(1, 12)])
    seqs, after_seq = [], 0
    while page := await store.messages.list_of(cid, after_seq=after_seq, limit=4):
        seqs += [m.seq for m in page]
        after_seq = page[-1].seq
    assert seqs == list(range(1, 12))
    assert await store.messages.list_of(cid, after_seq=2**31 - 1, limit=1000) == []  # the largest seq a client names


async def test_message_ids_are_time_ordered_uuids(store, conversation_id, sim_clock):
    """Ids are UUIDs version 7 carrying the store's clock: messages stored in later milliseconds sort after
    the earlier ones, so each new key lands at the end of the primary key's index (states/ids.py)."""
    stored = []
    for i in range(4):
        message, _ = await store.messages.append(conversation_id, sender_type="customer", content=f"m{i}")
        stored.append(message)
        sim_clock.advance(0.001)
    ids = [uuid.UUID(m.id) for m in stored]
    assert [i.version for i in ids] == [7] * 4
    assert [i.int >> 80 for i in ids] == [m.created_ms for m in stored]  # the time of the insert, in ms
    assert sorted(stored, key=lambda m: m.id) == stored
    assert len({m.id for m in stored}) == 4
