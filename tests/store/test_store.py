"""Store: one repository per resource on one Database."""

from chat.store.messages import NewMessage


def test_every_repository_shares_the_database(store):
    for name in ("migrations", "conversations", "messages", "events", "staff", "teams", "labels", "listing", "stats"):
        assert getattr(store, name).db is store.db


async def test_the_repositories_answer_together(store, conversation_id):
    message, created = await store.messages.append(conversation_id, sender_type="customer", content="hi")
    assert created and await store.messages.list_of(conversation_id) == [message]
    [batch] = await store.messages.append_batch([NewMessage(conversation_id, "agent", "x")])
    assert batch.seq == 2 and await store.messages.recent(conversation_id, 5) == [message, batch]
    assert await store.conversations.extras(conversation_id) == (2, [])
    assert (await store.conversations.load(conversation_id)).id == conversation_id
    assert await store.conversations.existing([conversation_id]) == {conversation_id}
    assert await store.migrations.version() >= 1 and await store.migrations.upgrade() == []
    assert await store.events.list_of(conversation_id) == []
