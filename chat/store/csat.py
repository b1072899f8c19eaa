"""Customer satisfaction ratings (csat_responses): one per close of a conversation."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from chat import render
from chat.store.db import Database
from chat.store.webhooks import Webhooks
from states.clock import now_ms
from states.ids import new_id
from states.machine import State

CSAT_FIELDS = ("id", "conversation_id", "version", "user_id", "agent_id", "team_id", "score", "comment",
               "closed_at", "created_at")
_COLUMNS = ("id, conversation_id, close_version, user_id, agent_id, team_id, score, comment, closed_ms, "
            "created_ms")
Rating = dict[str, Any]  # CSAT_FIELDS (chat.api.csat.CsatOut documents it)
Position = tuple[int, str]  # (created_ms, id) of the last rating of a page


@dataclass(frozen=True)
class NewRating:
    """A rating of one close (`close_version`: the conversation's version when it closed)."""

    conversation_id: str
    close_version: int
    user_id: str
    agent_id: str | None
    team_id: str | None
    score: int
    comment: str | None
    closed_ms: int


def _window(column: str, since_ms: int | None, until_ms: int | None) -> tuple[str, list[Any]]:
    sql, params = "", []
    if since_ms is not None:
        sql += f" AND {column} >= %s"
        params.append(since_ms)
    if until_ms is not None:
        sql += f" AND {column} < %s"
        params.append(until_ms)
    return sql, params


class Csat:
    """Every SQL statement on csat_responses."""

    def __init__(self, db: Database, webhooks: Webhooks):
        self.db = db
        self._webhooks = webhooks
        self._t = db.tables

    async def add(self, rating: NewRating) -> Rating:
        """Store a rating (and its `csat.submitted` webhook event); DuplicateKey when that close was rated
        already."""
        row = (new_id(), rating.conversation_id, rating.close_version, rating.user_id, rating.agent_id,
               rating.team_id, rating.score, rating.comment, rating.closed_ms, now_ms())
        stored = render.row_object(CSAT_FIELDS, row)
        async with self.db.transaction() as tx:
            await tx.execute(
                f"INSERT INTO {self._t.csat_responses} ({_COLUMNS}) VALUES ({', '.join(['%s'] * len(row))})", row)
            if self._webhooks.wants("csat.submitted"):
                await self._webhooks.record(tx, "csat.submitted", rating.conversation_id, stored, lock=True)
        return stored

    async def page(self, *, since_ms: int | None, until_ms: int | None, limit: int,
                   after: Position | None) -> tuple[list[Rating], Position | None]:
        """Ratings given in [since, until), newest first by (created_ms, id); the next page's position."""
        conditions, params = _window("created_ms", since_ms, until_ms)
        if after is not None:
            conditions += " AND (created_ms < %s OR (created_ms = %s AND id < %s))"
            params += [after[0], after[0], after[1]]
        rows = await self.db.fetchall(
            f"SELECT {_COLUMNS} FROM {self._t.csat_responses} WHERE 1 = 1{conditions} "
            "ORDER BY created_ms DESC, id DESC LIMIT %s", [*params, limit + 1])
        items = [render.row_object(CSAT_FIELDS, r) for r in rows[:limit]]
        last = rows[limit - 1] if len(rows) > limit else None
        return items, (int(last[9]), str(last[0])) if last is not None else None

    async def summary(self, since_ms: int | None, until_ms: int | None, team_id: str | None) -> dict[str, Any]:
        """{average, responses, response_rate} of the closes in [since, until) (by the time of the close;
        of one team's when given): the average score (2 decimals), how many closes were rated, and that
        count over every close in the window (3 decimals); average and rate are None without data."""
        window, params = _window("closed_ms", since_ms, until_ms)
        team = " AND team_id = %s" if team_id is not None else ""
        team_params = [team_id] if team_id is not None else []
        row = await self.db.fetchone(
            f"SELECT COUNT(*), SUM(score) FROM {self._t.csat_responses} WHERE 1 = 1{window}{team}",
            [*params, *team_params])
        responses, total = (int(row[0]), int(row[1] or 0)) if row else (0, 0)
        closes_window, closes_params = _window("created_ms", since_ms, until_ms)
        closes_row = await self.db.fetchone(
            f"SELECT COUNT(*) FROM {self._t.conversation_events} WHERE to_state = %s{closes_window}{team}",
            [State.CLOSED.value, *closes_params, *team_params])
        closes = int(closes_row[0]) if closes_row else 0
        return {
            "average": round(total / responses, 2) if responses else None,
            "responses": responses,
            "response_rate": round(responses / closes, 3) if closes else None,
        }
