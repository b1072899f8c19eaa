"""Rows the store reads and returns, with the column lists their queries name.

Their protocol JSON shapes (M, E, C) are rendered by chat.render.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from chat.store.db import Row
from states.machine import State

STATES = tuple(s.value for s in State)  # what conversations.state and the log's states hold
SENDER_TYPES = ("customer", "ai", "agent", "system")


@dataclass(frozen=True)
class Message:
    """A stored message (M)."""

    id: str
    conversation_id: str
    seq: int
    sender_type: str
    sender_id: str | None
    content: str
    private: bool
    client_msg_id: str | None
    created_ms: int


MESSAGE_COLUMNS = "id, conversation_id, seq, sender_type, sender_id, content, private, client_msg_id, created_ms"


def message_from_row(row: Row) -> Message:
    """A messages row (MESSAGE_COLUMNS order) -> Message."""
    return Message(row[0], row[1], int(row[2]), row[3], row[4], row[5], bool(row[6]), row[7], int(row[8]))


@dataclass(frozen=True)
class TransitionEvent:
    """One entry of the transition log (E)."""

    id: str
    conversation_id: str
    version: int
    trigger: str
    from_state: str
    to_state: str
    actor_type: str
    actor_id: str | None
    reason: str | None
    agent_id: str | None
    team_id: str | None
    created_ms: int


EVENT_COLUMNS = (
    "id, conversation_id, version, trigger_name, from_state, to_state, actor_type, actor_id, reason, "
    "agent_id, team_id, created_ms"
)


def event_from_row(row: Row) -> TransitionEvent:
    """A conversation_events row (EVENT_COLUMNS order) -> TransitionEvent."""
    return TransitionEvent(row[0], row[1], int(row[2]), row[3], row[4], row[5], row[6], row[7], row[8], row[9],
                           row[10], int(row[11]))


class ConversationRow(NamedTuple):
    """A conversations row (the SQL mirror of the live record), columns in CONVERSATION_COLUMNS order."""

    id: str
    user_id: str
    state: str
    agent_type: str
    agent_id: str | None
    team_id: str | None
    version: int
    last_seq: int
    metadata: str | None
    handoff_ms: int | None
    created_ms: int
    updated_ms: int


CONVERSATION_COLUMNS = ", ".join(ConversationRow._fields)
