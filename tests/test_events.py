"""The in-process dispatcher and what the domain events derive from a transition."""

from __future__ import annotations

import pytest

from chat.events import ConversationMoved, Events, Typing
from states.record import Conversation
from states.repository import Actor, Transition

T = "2026-01-01T00:00:00.000Z"


def record(state: str, agent_id: str | None = None) -> Conversation:
    return Conversation(id="c1", user_id="u1", agent_type="ai", created_at=T, updated_at=T, state=state,
                        agent_id=agent_id)


def moved(before: Conversation, after: Conversation) -> ConversationMoved:
    return ConversationMoved(Transition(before, after, "t", Actor("system"), None, 0))


async def test_handlers_run_in_subscription_order_sync_and_async():
    events, seen = Events(), []

    async def second(event: ConversationMoved) -> None:
        seen.append("second")

    events.subscribe(ConversationMoved, lambda e: seen.append("first"))
    events.subscribe(ConversationMoved, second)
    events.subscribe(Typing, lambda e: seen.append("never"))
    await events.emit(moved(record("ai"), record("handoff")))
    assert seen == ["first", "second"]


async def test_a_failing_handler_reaches_the_emitter():
    events = Events()

    def broken(event: ConversationMoved) -> None:
        raise RuntimeError("boom")

    events.subscribe(ConversationMoved, broken)
    with pytest.raises(RuntimeError):
        await events.emit(moved(record("ai"), record("handoff")))


@pytest.mark.parametrize(
    ("before", "after", "freed"),
    [
        (record("human", "a1"), record("ai"), "a1"),
        (record("human", "a1"), record("human", "a2"), "a1"),
        (record("human", "a1"), record("human", "a1"), None),
        (record("handoff"), record("human", "a1"), None),
        (record("human", "a1"), record("closed", "a1"), "a1"),
    ],
)
def test_freed_agent(before, after, freed):
    assert moved(before, after).freed_agent == freed


def test_left_ai_and_touches_queue():
    assert moved(record("ai"), record("handoff")).left_ai
    assert moved(record("handoff"), record("human")).left_ai  # the AI answers a waiting one off hours
    assert not moved(record("human"), record("handoff")).left_ai
    assert moved(record("ai"), record("handoff")).touches_queue
    assert not moved(record("closed"), record("ai")).left_ai
    assert not moved(record("human", "a1"), record("closed")).touches_queue
