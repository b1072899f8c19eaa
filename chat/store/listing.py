"""The admin listing of conversations: filters and keyset pagination over the mirror rows.

Values are always parameters; only fixed fragments chosen by the code are concatenated.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from chat import render
from chat.store.db import Database
from chat.store.labels import Labels
from chat.store.models import ConversationRow
from chat.store.schema import Tables

# `q` is matched with LIKE ... ESCAPE '!': '!' is an ordinary character in the string literals
# of both dialects (a backslash is not: MySQL reads '\' as an escape, SQLite does not).
LIKE_ESCAPE = "!"

_C_COLUMNS = ", ".join(f"c.{name}" for name in ConversationRow._fields)
_EQUAL_COLUMNS = ("state", "agent_id", "team_id", "user_id")

Position = tuple[int, str]  # (created_ms, id) of the last conversation of a page


def like_pattern(text: str) -> str:
    """`%text%` with the LIKE wildcards of the user's text (and the escape character) escaped."""
    escaped = text.replace(LIKE_ESCAPE, LIKE_ESCAPE * 2).replace("%", LIKE_ESCAPE + "%").replace("_", LIKE_ESCAPE + "_")
    return f"%{escaped}%"


@dataclass(frozen=True)
class ConversationFilter:
    """The filters of GET /api/v1/conversations; None means "any"."""

    state: str | None = None
    agent_id: str | None = None
    team_id: str | None = None
    label: str | None = None
    user_id: str | None = None
    since_ms: int | None = None
    until_ms: int | None = None
    q: str | None = None

    def where(self, tables: Tables | None = None) -> tuple[list[str], list[Any]]:
        """SQL conditions on `conversations c` (the other tables named by `tables`) and their parameters."""
        tables = tables or Tables()
        conditions: list[str] = []
        params: list[Any] = []
        for column in _EQUAL_COLUMNS:
            value = getattr(self, column)
            if value is not None:
                conditions.append(f"c.{column} = %s")
                params.append(value)
        if self.since_ms is not None:
            conditions.append("c.created_ms >= %s")
            params.append(self.since_ms)
        if self.until_ms is not None:
            conditions.append("c.created_ms < %s")
            params.append(self.until_ms)
        if self.label is not None:
            conditions.append(
                f"EXISTS (SELECT 1 FROM {tables.conversation_labels} cl JOIN {tables.labels} l ON l.id = cl.label_id "
                "WHERE cl.conversation_id = c.id AND l.title = %s)"
            )
            params.append(self.label)
        if self.q:
            # A scan of the messages of every candidate conversation (no full-text index):
            # the other filters narrow the candidates first.
            conditions.append(
                f"EXISTS (SELECT 1 FROM {tables.messages} m WHERE m.conversation_id = c.id "
                f"AND LOWER(m.content) LIKE LOWER(%s) ESCAPE '{LIKE_ESCAPE}')"
            )
            params.append(like_pattern(self.q))
        return conditions, params


@dataclass(frozen=True)
class Page:
    """One page of a listing and where the next one starts (None: this was the last)."""

    items: list[render.PublicConversation]
    next_position: Position | None


class ConversationListing:
    """GET /api/v1/conversations in SQL."""

    def __init__(self, db: Database, labels: Labels):
        self.db = db
        self._labels = labels

    async def page(self, where: ConversationFilter, *, limit: int, after: Position | None) -> Page:
        """Newest first by (created_ms, id); `after` is the position of the previous page's last item."""
        conditions, params = where.where(self.db.tables)
        if after is not None:
            # `created_ms <= %s` first: a range the indexes can start at (the OR alone has every page
            # walk from the newest row: quadratic over a long walk)
            conditions.append("c.created_ms <= %s AND (c.created_ms < %s OR c.id < %s)")
            params += [after[0], after[0], after[1]]
        sql = f"SELECT {_C_COLUMNS} FROM {self.db.tables.conversations} c"
        if conditions:
            sql += " WHERE " + " AND ".join(conditions)
        sql += " ORDER BY c.created_ms DESC, c.id DESC LIMIT %s"
        fetched = await self.db.fetchall(sql, [*params, limit + 1])
        rows = [ConversationRow(*r) for r in fetched[:limit]]
        labels = await self._labels.titles_of([r.id for r in rows])
        items = [render.conversation_from_row(r, labels.get(r.id, [])) for r in rows]
        next_position = (int(rows[-1].created_ms), rows[-1].id) if len(fetched) > limit else None
        return Page(items, next_position)
