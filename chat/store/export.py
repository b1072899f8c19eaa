"""The reads of the bulk export and the transcripts: conversations in a created window and their
messages and transition log, always a bounded page at a time (keyset, never OFFSET, never all).

Conversations go oldest first by (created_ms, id) on ix_conversations_created; a page's messages
and log entries are read in one statement each when they fit a bound, else per conversation in
keyset pages by seq (Messages.list_of) and version (UNIQUE (conversation_id, seq), (conversation_id, version)).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from chat.store.db import Database, Row, marks
from chat.store.models import (
    CONVERSATION_COLUMNS,
    EVENT_COLUMNS,
    MESSAGE_COLUMNS,
    ConversationRow,
    Message,
    TransitionEvent,
    event_from_row,
    message_from_row,
)

Position = tuple[int, str]  # (created_ms, id) of the last conversation read
Item = TypeVar("Item", Message, TransitionEvent)  # a row of one conversation


class ExportReads:
    """The bounded reads of an export."""

    def __init__(self, db: Database):
        self.db = db

    async def conversations(self, *, since_ms: int | None, until_ms: int | None, after: Position | None,
                            limit: int) -> list[ConversationRow]:
        """At most `limit` conversations created in [since, until), oldest first, after `after`."""
        c = self.db.tables.conversations
        conditions: list[str] = []
        params: list[Any] = []
        if since_ms is not None:
            conditions.append("created_ms >= %s")
            params.append(since_ms)
        if until_ms is not None:
            conditions.append("created_ms < %s")
            params.append(until_ms)
        if after is not None:
            # `created_ms >= %s` first: a range the index starts at, so each page reads only its own rows
            # (the OR alone makes SQLite walk the window from its start on every page)
            conditions.append("created_ms >= %s AND (created_ms > %s OR id > %s)")
            params += [after[0], after[0], after[1]]
        where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
        rows = await self.db.fetchall(
            f"SELECT {CONVERSATION_COLUMNS} FROM {c}{where} ORDER BY created_ms, id LIMIT %s", [*params, limit])
        return [ConversationRow(*r) for r in rows]

    async def messages_of(self, conversation_ids: list[str], *, limit: int,
                          include_private: bool = True) -> dict[str, list[Message]] | None:
        """Every message of these conversations by conversation, in seq order; None when there are
        more than `limit` of them (then read each conversation by pages: Messages.list_of)."""
        t = self.db.tables.messages
        private = "" if include_private else " AND private = 0"
        return await self._grouped(
            f"SELECT {MESSAGE_COLUMNS} FROM {t} WHERE conversation_id IN ({marks(conversation_ids)}){private} "
            "ORDER BY conversation_id, seq LIMIT %s", conversation_ids, limit, message_from_row)

    async def events_of(self, conversation_ids: list[str], *, limit: int) -> dict[str, list[TransitionEvent]] | None:
        """The transition log of these conversations by conversation, oldest first; None when it holds
        more than `limit` entries (then read each conversation with events_after)."""
        t = self.db.tables.conversation_events
        return await self._grouped(
            f"SELECT {EVENT_COLUMNS} FROM {t} WHERE conversation_id IN ({marks(conversation_ids)}) "
            "ORDER BY conversation_id, version LIMIT %s", conversation_ids, limit, event_from_row)

    async def _grouped(self, sql: str, conversation_ids: list[str], limit: int,
                       from_row: Callable[[Row], Item]) -> dict[str, list[Item]] | None:
        """The rows of `sql` (ending in LIMIT %s) by conversation, in the order read; None when there are
        more than `limit`."""
        rows = await self.db.fetchall(sql, [*conversation_ids, limit + 1])
        if len(rows) > limit:
            return None
        grouped: dict[str, list[Item]] = {}
        for row in rows:
            item = from_row(row)
            grouped.setdefault(item.conversation_id, []).append(item)
        return grouped

    async def events_after(self, conversation_id: str, *, after_version: int, limit: int) -> list[TransitionEvent]:
        """At most `limit` log entries of one conversation with version > after_version, oldest first."""
        t = self.db.tables.conversation_events
        rows = await self.db.fetchall(
            f"SELECT {EVENT_COLUMNS} FROM {t} WHERE conversation_id = %s AND version > %s ORDER BY version LIMIT %s",
            (conversation_id, after_version, limit))
        return [event_from_row(r) for r in rows]
