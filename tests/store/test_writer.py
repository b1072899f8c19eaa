"""Group commit: concurrent appends share transactions, and nothing changes for the senders."""

import asyncio

import pytest

from chat.store.writer import MessageWriter
from states import ConversationNotFound
from tests.conftest import new_id
from tests.store.test_store import new_conversation


async def test_concurrent_senders_share_transactions_with_gap_free_seqs(store):
    writer = MessageWriter(store)
    conversations = [await new_conversation(store) for _ in range(5)]

    async def send(i: int):
        cid = conversations[i % 5]
        return cid, await writer.append(cid, sender_type="customer", sender_id="u1", content=f"m{i}",
                                        client_msg_id=f"c{i}")

    results = await asyncio.gather(*(send(i) for i in range(200)))
    assert writer.batches >= 1  # some messages really went together
    for cid in conversations:
        seqs = sorted(m.seq for c, (m, created) in results if c == cid)
        assert seqs == list(range(1, 41))
        stored = await store.list_messages(cid)
        assert [m.seq for m in stored] == list(range(1, 41))
    assert all(created for _, (_, created) in results)


async def test_a_resend_in_a_batch_falls_back_and_returns_the_stored_message(store):
    writer = MessageWriter(store)
    cid = await new_conversation(store)
    first, created = await writer.append(cid, sender_type="customer", sender_id="u1", content="a", client_msg_id="k")
    assert created
    results = await asyncio.gather(
        writer.append(cid, sender_type="customer", sender_id="u1", content="a", client_msg_id="k"),
        *(writer.append(cid, sender_type="customer", sender_id="u1", content=f"n{i}", client_msg_id=f"n{i}")
          for i in range(10)),
    )
    again, created_again = results[0]
    assert again == first and not created_again
    assert sorted(m.seq for m, _ in results[1:]) == list(range(2, 12))
    assert [m.seq for m in await store.list_messages(cid)] == list(range(1, 12))


async def test_an_unknown_conversation_fails_alone(store):
    writer = MessageWriter(store)
    cid = await new_conversation(store)
    results = await asyncio.gather(
        writer.append(new_id(), sender_type="customer", sender_id="u1", content="lost", client_msg_id="x"),
        *(writer.append(cid, sender_type="customer", sender_id="u1", content=f"m{i}", client_msg_id=f"m{i}")
          for i in range(5)),
        return_exceptions=True,
    )
    assert isinstance(results[0], ConversationNotFound)
    assert sorted(m.seq for m, _ in results[1:]) == [1, 2, 3, 4, 5]


@pytest.mark.parametrize("n", [1, 3])
async def test_batch_sizes_are_capped(store, n):
    writer = MessageWriter(store, max_batch=n)
    cid = await new_conversation(store)
    results = await asyncio.gather(*(writer.append(cid, sender_type="agent", sender_id="a1", content=str(i),
                                                   client_msg_id=str(i)) for i in range(7)))
    assert sorted(m.seq for m, _ in results) == list(range(1, 8))
