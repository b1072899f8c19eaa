"""The public objects of the protocol (PROTOCOL section 3.7): C, M and E, for every transport.

The WebSocket replies and events and the REST bodies all come from here, so a field is added,
renamed or formatted in one place. C has two sources, the live Redis record (with last_seq and
labels read from SQL) and a row of the admin listing; both end in `_conversation`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from operator import attrgetter
from typing import TYPE_CHECKING, Any

import orjson

from states.clock import iso_from_ms

if TYPE_CHECKING:
    from chat.store.models import ConversationRow, Message, TransitionEvent
    from chat.store.timers import Mark
    from states.record import Conversation

log = logging.getLogger(__name__)

PublicConversation = dict[str, Any]  # C: the twelve fields _conversation writes, in the protocol's order


# M and E: these attributes as they are, in the protocol's order, then created_at
MESSAGE_FIELDS = ("id", "conversation_id", "seq", "sender_type", "sender_id", "content", "private", "client_msg_id")
EVENT_FIELDS = ("id", "conversation_id", "version", "trigger", "from_state", "to_state", "actor_type", "actor_id",
                "reason")


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


_message_values = attrgetter(*MESSAGE_FIELDS)
_event_values = attrgetter(*EVENT_FIELDS)


def message(m: Message) -> dict[str, Any]:
    """M."""
    body = dict(zip(MESSAGE_FIELDS, _message_values(m), strict=True))
    body["created_at"] = iso_from_ms(m.created_ms)
    return body


def event(e: TransitionEvent) -> dict[str, Any]:
    """E."""
    body = dict(zip(EVENT_FIELDS, _event_values(e), strict=True))
    body["created_at"] = iso_from_ms(e.created_ms)
    return body


def mark(m: Mark) -> dict[str, Any]:
    """E for an entry of the event log that is not a transition (`sla_breached`): the state stays,
    the version is the one it happened at, the actor is the system."""
    return {"id": m.id, "conversation_id": m.conversation_id, "version": m.version, "trigger": m.kind,
            "from_state": m.state, "to_state": m.state, "actor_type": "system", "actor_id": None, "reason": None,
            "created_at": iso_from_ms(m.created_ms)}


def log_entries(events: Iterable[TransitionEvent], marks: Iterable[Mark]) -> list[dict[str, Any]]:
    """E for each transition and each mark, oldest first: a mark after the transition of its version."""
    entries = [((e.version, 0, e.created_ms), event(e)) for e in events]
    entries += [((m.version, 1, m.created_ms), mark(m)) for m in marks]
    return [body for _key, body in sorted(entries, key=lambda entry: entry[0])]


def row_object(names: tuple[str, ...], row: tuple[Any, ...]) -> dict[str, Any]:
    """A REST object (label, team, member) from a row in `names` order; `*_at` columns hold epoch ms."""
    return {name: iso_from_ms(int(value)) if name.endswith("_at") else value
            for name, value in zip(names, row, strict=True)}
