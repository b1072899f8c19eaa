"""Group commit: concurrent appends share transactions, and nothing changes for the senders."""

import asyncio

import pytest

from chat.store.messages import NewMessage
from chat.store.writer import MessageWriter
from states import ConversationNotFound
from tests.conftest import new_id


def append(writer: MessageWriter, conversation_id: str, **fields):
    return writer.append(NewMessage(conversation_id, **fields))


async def test_concurrent_senders_share_transactions_with_gap_free_seqs(store, make_conversation):
    writer = MessageWriter(store.messages)
    conversations = [(await make_conversation()).id for _ in range(5)]

    async def send(i: int):
        cid = conversations[i % 5]
        return cid, await append(writer, cid, sender_type="customer", sender_id="u1", content=f"m{i}",
                                        client_msg_id=f"c{i}")

    results = await asyncio.gather(*(send(i) for i in range(200)))
    assert writer.batches >= 1  # some messages really went together
    for cid in conversations:
        seqs = sorted(m.seq for c, (m, created) in results if c == cid)
        assert seqs == list(range(1, 41))
        stored = await store.messages.list_of(cid)
        assert [m.seq for m in stored] == list(range(1, 41))
    assert all(created for _, (_, created) in results)


async def test_a_resend_in_a_batch_falls_back_and_returns_the_stored_message(store, conversation_id):
    writer = MessageWriter(store.messages)
    cid = conversation_id
    first, created = await append(writer, cid, sender_type="customer", sender_id="u1", content="a", client_msg_id="k")
    assert created
    results = await asyncio.gather(
        append(writer, cid, sender_type="customer", sender_id="u1", content="a", client_msg_id="k"),
        *(append(writer, cid, sender_type="customer", sender_id="u1", content=f"n{i}", client_msg_id=f"n{i}")
          for i in range(10)),
    )
    again, created_again = results[0]
    assert again == first and not created_again
    assert sorted(m.seq for m, _ in results[1:]) == list(range(2, 12))
    assert [m.seq for m in await store.messages.list_of(cid)] == list(range(1, 12))


async def test_an_unknown_conversation_fails_alone(store, conversation_id):
    writer = MessageWriter(store.messages)
    cid = conversation_id
    results = await asyncio.gather(
        append(writer, new_id(), sender_type="customer", sender_id="u1", content="lost", client_msg_id="x"),
        *(append(writer, cid, sender_type="customer", sender_id="u1", content=f"m{i}", client_msg_id=f"m{i}")
          for i in range(5)),
        return_exceptions=True,
    )
    assert isinstance(results[0], ConversationNotFound)
    assert sorted(m.seq for m, _ in results[1:]) == [1, 2, 3, 4, 5]


@pytest.mark.parametrize("n", [1, 3])
async def test_batch_sizes_are_capped(store, conversation_id, n):
    writer = MessageWriter(store.messages, max_batch=n)
    cid = conversation_id
    results = await asyncio.gather(*(append(writer, cid, sender_type="agent", sender_id="a1", content=str(i),
                                                   client_msg_id=str(i)) for i in range(7)))
    assert sorted(m.seq for m, _ in results) == list(range(1, 8))


async def test_a_batch_whose_commit_may_have_run_is_not_written_again(store, conversation_id, monkeypatch):
    """The connection is lost after the COMMIT ran (the answer never came): writing the messages again one
    by one would store those without a client_msg_id (AI replies, notices) twice. Each sender gets the
    error instead."""
    from chat.store import DatabaseError

    writer, cid = MessageWriter(store.messages), conversation_id
    write = store.messages.append_batch

    async def committed_then_lost(drafts):
        await write(drafts)
        raise DatabaseError("Lost connection to server during query")

    monkeypatch.setattr(store.messages, "append_batch", committed_then_lost)
    results = await asyncio.gather(*(append(writer, cid, sender_type="system", content=f"notice {i}")
                                     for i in range(6)), return_exceptions=True)
    assert any(isinstance(r, DatabaseError) for r in results)  # the batch's senders are told it failed
    stored = [m.content for m in await store.messages.list_of(cid)]
    assert sorted(stored) == sorted(set(stored))  # none stored twice
    assert [m.seq for m in await store.messages.list_of(cid)] == list(range(1, len(stored) + 1))


async def test_a_deadlocked_batch_falls_back_to_one_by_one(store, conversation_id, monkeypatch):
    """A deadlock rolled the whole batch back: each message is then written on its own."""
    from chat.store.db import RolledBack

    writer, cid = MessageWriter(store.messages), conversation_id

    async def deadlocked(drafts):
        raise RolledBack("Deadlock found when trying to get lock; try restarting transaction")

    monkeypatch.setattr(store.messages, "append_batch", deadlocked)
    results = await asyncio.gather(*(append(writer, cid, sender_type="system", content=f"notice {i}")
                                     for i in range(6)))
    assert sorted(m.seq for m, _ in results) == list(range(1, 7))


async def test_a_batch_committing_in_one_lane_does_not_hold_up_another_conversation(store, make_conversation,
                                                                                    monkeypatch):
    """Two lanes: a message of another conversation is written while the first one's batch still commits;
    one conversation's messages keep their order (one lane each)."""
    writer = MessageWriter(store.messages, lanes=2)
    slow = other = (await make_conversation()).id
    while hash(other) % 2 == hash(slow) % 2:  # one in the other lane (str hashes differ from run to run)
        other = (await make_conversation()).id
    entered, release, write = asyncio.Event(), asyncio.Event(), store.messages.append_draft

    async def held(draft):
        if draft.conversation_id == slow:
            entered.set()
            await release.wait()
        return await write(draft)

    monkeypatch.setattr(store.messages, "append_draft", held)
    first = asyncio.create_task(append(writer, slow, sender_type="customer", sender_id="u1", content="a"))
    await entered.wait()  # its batch is being written
    later = asyncio.create_task(append(writer, slow, sender_type="customer", sender_id="u1", content="b"))
    async with asyncio.timeout(30):  # one lane would wait for `release` for ever
        message, created = await append(writer, other, sender_type="customer", sender_id="u2", content="x")
    assert created and message.seq == 1
    assert not first.done() and not later.done()  # held in its own lane, the next one queued behind it
    release.set()
    assert [(await first)[0].seq, (await later)[0].seq] == [1, 2]
    assert [m.content for m in await store.messages.list_of(slow)] == ["a", "b"]
