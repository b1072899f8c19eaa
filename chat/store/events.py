"""The transition log (conversation_events): one entry per transition, read back as E objects."""

from __future__ import annotations

from chat.store.db import Database, Tx
from chat.store.models import EVENT_COLUMNS, TransitionEvent, event_from_row
from states.repository import Transition

REASON_CHARS = 255  # conversation_events.reason is a VARCHAR(255)


async def insert_event(tx: Tx, table: str, transition: Transition) -> None:
    """Append the log entry of a transition (to `table`, the prefixed conversation_events) inside the
    transaction that moves the mirror row."""
    before, after = transition.before, transition.after
    await tx.execute(
        f"INSERT INTO {table} ({EVENT_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
        (
            transition.id,
            after.id,
            after.version,
            transition.trigger,
            before.state,
            after.state,
            transition.actor.type,
            transition.actor.id,
            (transition.reason or None) and transition.reason[:REASON_CHARS],
            after.agent_id,
            after.team_id,
            transition.at_ms,
        ),
    )


class Events:
    """Reads of the transition log."""

    def __init__(self, db: Database):
        self.db = db

    async def list_of(self, conversation_id: str) -> list[TransitionEvent]:
        """The transition log of a conversation, oldest first."""
        rows = await self.db.fetchall(
            f"SELECT {EVENT_COLUMNS} FROM {self.db.tables.conversation_events} WHERE conversation_id = %s "
            "ORDER BY version",
            (conversation_id,),
        )
        return [event_from_row(r) for r in rows]

    async def moved_since(self, conversation_id: str, at_ms: int) -> bool:
        """Did the conversation move after `at_ms`?"""
        return await self.db.fetchone(
            f"SELECT 1 FROM {self.db.tables.conversation_events} WHERE conversation_id = %s AND created_ms > %s "
            "LIMIT 1", (conversation_id, at_ms)) is not None
