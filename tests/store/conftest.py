"""Fixtures of the store tests: every store test runs on MariaDB and SQLite (tests/conftest.py's
`database_url`), each with and without a DB_TABLE_PREFIX (a fresh SQLite file under a prefix holds
no unprefixed table, so a query that forgets the prefix fails there)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace

import pytest

from chat.settings import parse_database_url
from chat.store import Store, connect
from states import State
from states.clock import now_iso
from states.record import Conversation

MakeConversation = Callable[..., Awaitable[Conversation]]


@pytest.fixture(params=["", "chat_"], ids=["no-prefix", "prefix"])
def table_prefix(request: pytest.FixtureRequest) -> str:
    """DB_TABLE_PREFIX of the store under test."""
    return str(request.param)


@pytest.fixture
async def store(database_url: str, table_prefix: str) -> AsyncIterator[Store]:
    """A Store on an upgraded schema, its tables under `table_prefix`."""
    db = await connect(replace(parse_database_url(database_url), table_prefix=table_prefix), pool_size=20)
    s = Store(db)
    await s.migrations.upgrade()
    yield s
    await db.close()


@pytest.fixture
def make_conversation(store: Store) -> MakeConversation:
    """`await make_conversation(state=..., version=..., **fields)`: a record with its mirror row."""

    async def make(state: str = State.AI.value, version: int = 0, **fields: object) -> Conversation:
        now = now_iso()
        given = {"id": str(uuid.uuid4()), "user_id": "u1", "agent_type": "ai", "created_at": now, "updated_at": now,
                 **fields}
        conversation = Conversation(state=state, version=version, **given)  # type: ignore[arg-type]
        await store.conversations.create(conversation)
        return conversation

    return make


@pytest.fixture
async def conversation_id(make_conversation: MakeConversation) -> str:
    """The id of a fresh conversation in `ai` with its row."""
    return (await make_conversation()).id
