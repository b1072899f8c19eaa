"""The SQL store on MariaDB and SQLite: schema upgrade, gap-free seq, idempotent resend, guard."""

import asyncio

import pytest

from chat.store import Store
from chat.store.schema import LATEST_VERSION, table_names
from states import ConversationNotFound, StaleVersion
from states.clock import now_iso
from states.record import Conversation
from tests.conftest import new_id


async def new_conversation(store: Store, state: str = "ai", version: int = 0) -> str:
    now = now_iso()
    c = Conversation(
        id=new_id(), user_id="u1", agent_type="ai", created_at=now, updated_at=now, state=state, version=version
    )
    await store.create_conversation(c)
    return c.id


async def test_upgrade_is_idempotent(store):
    assert await store.upgrade() == []
    assert await store.schema_version() == LATEST_VERSION
    for table in table_names():
        assert await store.db.fetchone(f"SELECT COUNT(*) FROM {table}") is not None


async def test_two_hundred_concurrent_inserts_get_seq_1_to_200(store):
    cid = await new_conversation(store)

    async def send(i: int):
        return await store.append_message(
            cid, sender_type="customer", sender_id="u1", content=f"m{i}", client_msg_id=f"c{i}"
        )

    results = await asyncio.gather(*(send(i) for i in range(200)))
    assert all(created for _, created in results)
    assert sorted(m.seq for m, _ in results) == list(range(1, 201))
    assert (await store.conversation_extras(cid))[0] == 200

    # resends, also concurrent with each other, return the stored rows and store nothing new
    resent = await asyncio.gather(*(send(i) for i in range(0, 200, 7)), *(send(i) for i in range(0, 200, 7)))
    originals = {m.client_msg_id: m for m, _ in results}
    for message, created in resent:
        assert not created
        assert message == originals[message.client_msg_id]
    stored = await store.list_messages(cid)
    assert [m.seq for m in stored] == list(range(1, 201))


async def test_unicode_round_trips_exactly(store):
    cid = await new_conversation(store)
    text = "你好，我要退款 🙂👍🏽 — ‘quotes’ \u200d\U0001F469\u200d\U0001F4BB"
    m, _ = await store.append_message(cid, sender_type="customer", content=text, client_msg_id="k")
    assert (await store.list_messages(cid))[0].content == text
    assert m.content == text


async def test_guarded_append_refuses_a_moved_conversation(store):
    cid = await new_conversation(store, state="ai", version=3)
    m, created = await store.append_message(
        cid, sender_type="ai", content="ok", require_state="ai", require_version=3
    )
    assert created and m.seq == 1
    with pytest.raises(StaleVersion):
        await store.append_message(cid, sender_type="ai", content="late", require_state="ai", require_version=2)
    with pytest.raises(StaleVersion):
        await store.append_message(cid, sender_type="ai", content="late", require_state="human", require_version=3)
    assert [m.content for m in await store.list_messages(cid)] == ["ok"]
    assert (await store.conversation_extras(cid))[0] == 1  # the refused write took no seq


async def test_append_to_unknown_conversation(store):
    with pytest.raises(ConversationNotFound):
        await store.append_message(new_id(), sender_type="customer", content="x")


async def test_private_filter_and_after_seq(store):
    cid = await new_conversation(store)
    for i in range(5):
        await store.append_message(cid, sender_type="agent", content=f"m{i}", private=(i % 2 == 1))
    assert [m.seq for m in await store.list_messages(cid, after_seq=2)] == [3, 4, 5]
    assert [m.seq for m in await store.list_messages(cid, include_private=False)] == [1, 3, 5]
    assert [m.seq for m in await store.recent_messages(cid, 2)] == [3, 5]
    assert [m.seq for m in await store.list_messages(cid, after_seq=1, limit=2)] == [2, 3]


async def test_a_closed_database_raises_database_error(database_url):
    from chat.settings import parse_database_url
    from chat.store import DatabaseError, connect

    db = await connect(parse_database_url(database_url))
    await db.close()
    with pytest.raises(DatabaseError):
        await db.ping()
