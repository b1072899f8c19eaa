"""The public objects of the protocol (PROTOCOL section 3.7): C, M and E, for every transport.

The WebSocket replies and events and the REST bodies all come from here, so a field is added,
renamed or formatted in one place. C has two sources, the live Redis record (with last_seq and
labels read from SQL) and a row of the admin listing; both end in `_conversation`.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, TypedDict

import orjson

from states.clock import iso_from_ms

if TYPE_CHECKING:
    from chat.store.models import ConversationRow, Message, TransitionEvent
    from states.record import Conversation

log = logging.getLogger(__name__)


class PublicConversation(TypedDict):
    """C: a conversation."""

    id: str
    user_id: str
    state: str
    agent_type: str
    agent_id: str | None
    team_id: str | None
    version: int
    last_seq: int
    labels: list[str]
    metadata: dict[str, Any]
    created_at: str
    updated_at: str


class PublicMessage(TypedDict):
    """M: a message."""

    id: str
    conversation_id: str
    seq: int
    sender_type: str
    sender_id: str | None
    content: str
    private: bool
    client_msg_id: str | None
    created_at: str


class PublicEvent(TypedDict):
    """E: one entry of the transition log."""

    id: str
    conversation_id: str
    version: int
    trigger: str
    from_state: str
    to_state: str
    actor_type: str
    actor_id: str | None
    reason: str | None
    created_at: str


def conversation(record: Conversation, last_seq: int, labels: list[str]) -> PublicConversation:
    """C from the live record, with the last_seq and label titles the SQL side keeps."""
    return _conversation(
        id=record.id, user_id=record.user_id, state=record.state, agent_type=record.agent_type,
        agent_id=record.agent_id, team_id=record.team_id, version=record.version, last_seq=last_seq,
        labels=labels, metadata=record.metadata, created_at=record.created_at, updated_at=record.updated_at,
    )


def conversation_from_row(row: ConversationRow, labels: list[str]) -> PublicConversation:
    """C from a conversations row of the admin listing and its label titles."""
    return _conversation(
        id=row.id, user_id=row.user_id, state=row.state, agent_type=row.agent_type, agent_id=row.agent_id,
        team_id=row.team_id, version=int(row.version), last_seq=int(row.last_seq), labels=labels,
        metadata=_metadata(row.metadata), created_at=iso_from_ms(int(row.created_ms)),
        updated_at=iso_from_ms(int(row.updated_ms)),
    )


def _conversation(  # noqa: PLR0913 - the twelve fields of C, in the protocol's order
    *,
    id: str,
    user_id: str,
    state: str,
    agent_type: str,
    agent_id: str | None,
    team_id: str | None,
    version: int,
    last_seq: int,
    labels: list[str],
    metadata: dict[str, Any],
    created_at: str,
    updated_at: str,
) -> PublicConversation:
    return {
        "id": id,
        "user_id": user_id,
        "state": state,
        "agent_type": agent_type,
        "agent_id": agent_id,
        "team_id": team_id,
        "version": version,
        "last_seq": last_seq,
        "labels": labels,
        "metadata": metadata,
        "created_at": created_at,
        "updated_at": updated_at,
    }


def _metadata(raw: str | bytes | None) -> dict[str, Any]:
    """The metadata column as an object; anything else (a hand-edited row) shows as {}."""
    if not raw:
        return {}
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        log.warning("conversation metadata is not JSON; shown as {}")
        return {}
    return value if isinstance(value, dict) else {}


def message(m: Message) -> PublicMessage:
    """M."""
    return {
        "id": m.id,
        "conversation_id": m.conversation_id,
        "seq": m.seq,
        "sender_type": m.sender_type,
        "sender_id": m.sender_id,
        "content": m.content,
        "private": m.private,
        "client_msg_id": m.client_msg_id,
        "created_at": iso_from_ms(m.created_ms),
    }


def event(e: TransitionEvent) -> PublicEvent:
    """E."""
    return {
        "id": e.id,
        "conversation_id": e.conversation_id,
        "version": e.version,
        "trigger": e.trigger,
        "from_state": e.from_state,
        "to_state": e.to_state,
        "actor_type": e.actor_type,
        "actor_id": e.actor_id,
        "reason": e.reason,
        "created_at": iso_from_ms(e.created_ms),
    }
