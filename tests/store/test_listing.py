"""The admin listing on MariaDB and SQLite: the filter's SQL, LIKE escaping, keyset pages.

The REST tests (tests/api/test_conversations.py) walk it under concurrent inserts with every filter.
"""

import uuid

from chat.store.listing import ConversationFilter, like_pattern


def test_like_pattern_escapes_the_wildcards_and_the_escape():
    assert like_pattern("100%_sure!") == "%100!%!_sure!!%"
    assert like_pattern("退款") == "%退款%"


def test_the_filter_names_only_what_is_set():
    assert ConversationFilter().where() == ([], [])
    conditions, params = ConversationFilter(state="human", user_id="u", since_ms=1, until_ms=2, q="a").where()
    assert conditions[:4] == ["c.state = %s", "c.user_id = %s", "c.created_ms >= %s", "c.created_ms < %s"]
    assert params == ["human", "u", 1, 2, "%a%"]


async def test_pages_are_newest_first_with_labels(store, make_conversation):
    user = f"u-{uuid.uuid4()}"
    ids = [(await make_conversation(user_id=user)).id for _ in range(3)]
    title = f"t-{uuid.uuid4()}"
    await store.labels.create(title, None, None)
    await store.labels.set_for(ids[0], [title])
    where = ConversationFilter(user_id=user)
    first = await store.listing.page(where, limit=2, after=None)
    assert first.next_position is not None and len(first.items) == 2
    rest = await store.listing.page(where, limit=2, after=first.next_position)
    assert rest.next_position is None
    items = first.items + rest.items
    assert sorted(item["id"] for item in items) == sorted(ids)
    assert [(item["created_at"], item["id"]) for item in items] == sorted(
        ((item["created_at"], item["id"]) for item in items), reverse=True)
    labelled = next(item for item in items if item["id"] == ids[0])
    assert labelled["labels"] == [title] and labelled["user_id"] == user and labelled["last_seq"] == 0
