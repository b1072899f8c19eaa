"""Fixtures of the store tests (the `store` fixture itself, on MariaDB and SQLite, is in tests/conftest.py)."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable

import pytest

from chat.store import Store
from states import State
from states.clock import now_iso
from states.record import Conversation

MakeConversation = Callable[..., Awaitable[Conversation]]


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
