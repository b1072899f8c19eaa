"""Labels on MariaDB and SQLite: create, list, delete, and the labels of a conversation."""

import uuid

import pytest

from chat.store import DuplicateKey


async def test_create_list_and_delete(store):
    title = f"vip-{uuid.uuid4()}"
    label = await store.labels.create(title, "big spender", "#FF0000")
    assert set(label) == {"id", "title", "description", "color", "created_at"}
    assert label in await store.labels.all()
    with pytest.raises(DuplicateKey):
        await store.labels.create(title, None, None)
    assert await store.labels.delete(label["id"]) is True
    assert await store.labels.delete(label["id"]) is False
    assert label not in await store.labels.all()


async def test_set_for_replaces_all_or_nothing(store, conversation_id):
    a, b = f"a-{uuid.uuid4()}", f"b-{uuid.uuid4()}"
    for title in (a, b):
        await store.labels.create(title, None, None)
    assert await store.labels.set_for(conversation_id, [b, a, a]) == []
    assert await store.labels.titles_of([conversation_id]) == {conversation_id: [a, b]}
    unknown = f"zz-{uuid.uuid4()}"
    assert await store.labels.set_for(conversation_id, [a, unknown]) == [unknown]
    assert await store.labels.titles_of([conversation_id]) == {conversation_id: [a, b]}  # unchanged
    assert await store.labels.set_for(conversation_id, []) == []
    assert await store.labels.titles_of([conversation_id]) == {}
    assert await store.labels.titles_of([]) == {}


async def test_deleting_a_label_removes_it_from_conversations(store, conversation_id):
    title = f"gone-{uuid.uuid4()}"
    label = await store.labels.create(title, None, None)
    await store.labels.set_for(conversation_id, [title])
    await store.labels.delete(label["id"])
    assert await store.conversations.extras(conversation_id) == (0, [])
