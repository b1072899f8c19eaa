"""Store: one repository per resource on one Database, and the old flat names still answering."""

import inspect

import pytest

from chat.store import Store, legacy

# old name -> (repository, method): what tells the callers where to move
LEGACY = {
    "upgrade": ("migrations", "upgrade"),
    "schema_version": ("migrations", "version"),
    "create_conversation": ("conversations", "create"),
    "record_transition": ("conversations", "record_transition"),
    "load_conversation": ("conversations", "load"),
    "ensure_conversation": ("conversations", "ensure"),
    "existing_conversations": ("conversations", "existing"),
    "conversation_extras": ("conversations", "extras"),
    "handoff_queue": ("conversations", "handoff_queue"),
    "waiting_since": ("conversations", "waiting_since"),
    "list_events": ("events", "list_of"),
    "find_message": ("messages", "find"),
    "append_message": ("messages", "append"),
    "append_batch": ("messages", "append_batch"),
    "list_messages": ("messages", "list_of"),
    "recent_messages": ("messages", "recent"),
    "remember_user": ("staff", "remember"),
    "agent_exists": ("staff", "agent_exists"),
    "list_staff": ("staff", "list_staff"),
    "teams_of": ("staff", "teams_of"),
    "max_chats_of": ("staff", "max_chats_of"),
    "team_exists": ("teams", "exists"),
    "set_labels": ("labels", "set_for"),
}


def test_every_repository_shares_the_database(store):
    for name in ("migrations", "conversations", "messages", "events", "staff", "teams", "labels", "listing", "stats"):
        assert getattr(store, name).db is store.db


@pytest.mark.parametrize("old", sorted(LEGACY))
def test_each_old_name_delegates_and_says_where_its_callers_move(old):
    resource, method = LEGACY[old]
    body = inspect.getsource(getattr(Store, old))
    assert f"self.{resource}.{method}(" in body
    text = inspect.getsource(legacy)
    marker = f"    # issue 9: callers move to store.{resource}.{method}\n"
    assert marker + f"    async def {old}(" in text or marker + f"    def {old}(" in text


async def test_the_old_names_answer(store, conversation_id):
    message, created = await store.append_message(conversation_id, sender_type="customer", content="hi")
    assert created and await store.list_messages(conversation_id) == [message]
    [batch] = await store.append_batch([{"conversation_id": conversation_id, "sender_type": "agent", "content": "x"}])
    assert batch.seq == 2 and await store.recent_messages(conversation_id, 5) == [message, batch]
    assert await store.conversation_extras(conversation_id) == (2, [])
    assert (await store.load_conversation(conversation_id)).id == conversation_id
    assert await store.existing_conversations([conversation_id]) == {conversation_id}
    assert await store.schema_version() >= 1 and await store.upgrade() == []
    assert await store.list_events(conversation_id) == []
