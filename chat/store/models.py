"""Rows the store returns, with their protocol JSON shapes (PROTOCOL section 3.7)."""

from __future__ import annotations

from dataclasses import dataclass

from states.clock import iso_from_ms


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

    def to_dict(self) -> dict:
        """The protocol's M object."""
        return {
            "id": self.id,
            "conversation_id": self.conversation_id,
            "seq": self.seq,
            "sender_type": self.sender_type,
            "sender_id": self.sender_id,
            "content": self.content,
            "private": self.private,
            "client_msg_id": self.client_msg_id,
            "created_at": iso_from_ms(self.created_ms),
        }


MESSAGE_COLUMNS = "id, conversation_id, seq, sender_type, sender_id, content, private, client_msg_id, created_ms"


def message_from_row(row: tuple) -> Message:
    """A messages row (MESSAGE_COLUMNS order) -> Message."""
    return Message(
        id=row[0],
        conversation_id=row[1],
        seq=int(row[2]),
        sender_type=row[3],
        sender_id=row[4],
        content=row[5],
        private=bool(row[6]),
        client_msg_id=row[7],
        created_ms=int(row[8]),
    )


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

    def to_dict(self) -> dict:
        """The protocol's E object."""
        return {
            "id": self.id,
            "conversation_id": self.conversation_id,
            "version": self.version,
            "trigger": self.trigger,
            "from_state": self.from_state,
            "to_state": self.to_state,
            "actor_type": self.actor_type,
            "actor_id": self.actor_id,
            "reason": self.reason,
            "created_at": iso_from_ms(self.created_ms),
        }


EVENT_COLUMNS = (
    "id, conversation_id, version, trigger_name, from_state, to_state, actor_type, actor_id, reason, "
    "agent_id, team_id, created_ms"
)


def event_from_row(row: tuple) -> TransitionEvent:
    """A conversation_events row (EVENT_COLUMNS order) -> TransitionEvent."""
    return TransitionEvent(*row[:2], int(row[2]), *row[3:11], int(row[11]))
