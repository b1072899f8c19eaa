"""The admin SQL: conversation listing (filters, keyset pagination), labels, teams, statistics.

Written once with `%s` placeholders for MySQL/MariaDB and SQLite, like chat/store/store.py.
Values are always parameters; only fixed fragments chosen by the code are concatenated.
Times are the epoch-millisecond columns; every window is [since_ms, until_ms).
"""

from __future__ import annotations

import logging
import math
import uuid
from dataclasses import dataclass
from typing import Any

import orjson

from chat.store.db import Database
from chat.store.store import CONVERSATION_COLUMNS
from states.clock import iso_from_ms, now_ms

log = logging.getLogger(__name__)

STATES = ("ai", "handoff", "human", "closed")
SENDER_TYPES = ("customer", "ai", "agent", "system")

# `q` is matched with LIKE ... ESCAPE '!': '!' is an ordinary character in the string literals
# of both dialects (a backslash is not: MySQL reads '\' as an escape, SQLite does not).
LIKE_ESCAPE = "!"

_C_COLUMNS = ", ".join(f"c.{name.strip()}" for name in CONVERSATION_COLUMNS.split(","))


def like_pattern(text: str) -> str:
    """`%text%` with the LIKE wildcards of the user's text (and the escape character) escaped."""
    escaped = text.replace(LIKE_ESCAPE, LIKE_ESCAPE * 2).replace("%", LIKE_ESCAPE + "%").replace("_", LIKE_ESCAPE + "_")
    return f"%{escaped}%"


def _metadata(raw: Any) -> dict:
    if not raw:
        return {}
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        log.warning("conversation metadata is not JSON; shown as {}")
        return {}
    return value if isinstance(value, dict) else {}


def conversation_from_row(row: tuple, labels: list[str]) -> dict:
    """A conversations row (CONVERSATION_COLUMNS order) and its label titles -> the protocol's C."""
    return {
        "id": row[0],
        "user_id": row[1],
        "state": row[2],
        "agent_type": row[3],
        "agent_id": row[4],
        "team_id": row[5],
        "version": int(row[6]),
        "last_seq": int(row[7]),
        "labels": labels,
        "metadata": _metadata(row[8]),
        "created_at": iso_from_ms(int(row[10])),
        "updated_at": iso_from_ms(int(row[11])),
    }


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

    def where(self) -> tuple[list[str], list]:
        """SQL conditions on `conversations c` and their parameters."""
        conditions: list[str] = []
        params: list = []
        for column in ("state", "agent_id", "team_id", "user_id"):
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
                "EXISTS (SELECT 1 FROM conversation_labels cl JOIN labels l ON l.id = cl.label_id "
                "WHERE cl.conversation_id = c.id AND l.title = %s)"
            )
            params.append(self.label)
        if self.q:
            # A scan of the messages of every candidate conversation (no full-text index):
            # the other filters narrow the candidates first.
            conditions.append(
                "EXISTS (SELECT 1 FROM messages m WHERE m.conversation_id = c.id "
                f"AND LOWER(m.content) LIKE LOWER(%s) ESCAPE '{LIKE_ESCAPE}')"
            )
            params.append(like_pattern(self.q))
        return conditions, params


Position = tuple[int, str]  # (created_ms, id) of the last conversation of a page


@dataclass(frozen=True)
class Page:
    """One page of a listing and where the next one starts (None: this was the last)."""

    items: list[dict]
    next_position: Position | None


def _window(column: str, since_ms: int | None, until_ms: int | None) -> tuple[str, list]:
    sql, params = "", []
    if since_ms is not None:
        sql += f" AND {column} >= %s"
        params.append(since_ms)
    if until_ms is not None:
        sql += f" AND {column} < %s"
        params.append(until_ms)
    return sql, params


def _team_condition(team_id: str | None) -> tuple[str, list]:
    return (" AND c.team_id = %s", [team_id]) if team_id is not None else ("", [])


def _seconds(total_ms: Any, count: int) -> float | None:
    """An average in seconds (3 decimals) of a sum of milliseconds; None when nothing was counted."""
    if not count:
        return None
    return round(int(total_ms) / count / 1000, 3)


def p90_seconds(durations_ms: list[int]) -> float | None:
    """The 90th percentile by the nearest-rank method (the smallest value >= 90 % of them)."""
    if not durations_ms:
        return None
    ordered = sorted(durations_ms)
    rank = math.ceil(0.9 * len(ordered))
    return round(ordered[rank - 1] / 1000, 3)


class AdminQueries:
    """Every SQL statement of the admin REST API."""

    def __init__(self, db: Database):
        self.db = db

    # --- conversations ---------------------------------------------------------------------

    async def list_conversations(self, where: ConversationFilter, *, limit: int, after: Position | None) -> Page:
        """Newest first by (created_ms, id); `after` is the position of the previous page's last item."""
        conditions, params = where.where()
        if after is not None:
            conditions.append("(c.created_ms < %s OR (c.created_ms = %s AND c.id < %s))")
            params += [after[0], after[0], after[1]]
        sql = f"SELECT {_C_COLUMNS} FROM conversations c"
        if conditions:
            sql += " WHERE " + " AND ".join(conditions)
        sql += " ORDER BY c.created_ms DESC, c.id DESC LIMIT %s"
        rows = await self.db.fetchall(sql, [*params, limit + 1])
        more = len(rows) > limit
        rows = rows[:limit]
        labels = await self.labels_of([r[0] for r in rows])
        items = [conversation_from_row(r, labels.get(r[0], [])) for r in rows]
        next_position = (int(rows[-1][10]), rows[-1][0]) if more else None
        return Page(items, next_position)

    async def labels_of(self, conversation_ids: list[str]) -> dict[str, list[str]]:
        """Label titles (sorted) of several conversations in one query."""
        if not conversation_ids:
            return {}
        marks = ", ".join(["%s"] * len(conversation_ids))
        rows = await self.db.fetchall(
            "SELECT cl.conversation_id, l.title FROM conversation_labels cl JOIN labels l ON l.id = cl.label_id "
            f"WHERE cl.conversation_id IN ({marks}) ORDER BY l.title",
            conversation_ids,
        )
        result: dict[str, list[str]] = {}
        for conversation_id, title in rows:
            result.setdefault(conversation_id, []).append(title)
        return result

    # --- labels ----------------------------------------------------------------------------

    @staticmethod
    def _label(row: tuple) -> dict:
        return {"id": row[0], "title": row[1], "description": row[2], "color": row[3],
                "created_at": iso_from_ms(int(row[4]))}

    async def list_labels(self) -> list[dict]:
        """Every label, by title."""
        rows = await self.db.fetchall("SELECT id, title, description, color, created_ms FROM labels ORDER BY title")
        return [self._label(r) for r in rows]

    async def create_label(self, title: str, description: str | None, color: str | None) -> dict:
        """A new label; DuplicateKey when the title is taken."""
        row = (str(uuid.uuid4()), title, description, color, now_ms())
        await self.db.execute(
            "INSERT INTO labels (id, title, description, color, created_ms) VALUES (%s, %s, %s, %s, %s)", row
        )
        return self._label(row)

    async def delete_label(self, label_id: str) -> bool:
        """Delete a label (and its uses); False when there was none."""
        async with self.db.transaction() as tx:
            await tx.execute("DELETE FROM conversation_labels WHERE label_id = %s", (label_id,))
            return bool(await tx.execute("DELETE FROM labels WHERE id = %s", (label_id,)))

    # --- teams -----------------------------------------------------------------------------

    @staticmethod
    def _team(row: tuple) -> dict:
        return {"id": row[0], "name": row[1], "description": row[2], "created_at": iso_from_ms(int(row[3])),
                "updated_at": iso_from_ms(int(row[4]))}

    async def list_teams(self) -> list[dict]:
        """Every team, by name."""
        rows = await self.db.fetchall("SELECT id, name, description, created_ms, updated_ms FROM teams ORDER BY name")
        return [self._team(r) for r in rows]

    async def get_team(self, team_id: str) -> dict | None:
        """One team, or None."""
        row = await self.db.fetchone(
            "SELECT id, name, description, created_ms, updated_ms FROM teams WHERE id = %s", (team_id,)
        )
        return self._team(row) if row else None

    async def create_team(self, name: str, description: str | None) -> dict:
        """A new team; DuplicateKey when the name is taken."""
        now = now_ms()
        row = (str(uuid.uuid4()), name, description, now, now)
        await self.db.execute(
            "INSERT INTO teams (id, name, description, created_ms, updated_ms) VALUES (%s, %s, %s, %s, %s)", row
        )
        return self._team(row)

    async def update_team(self, team_id: str, changes: dict) -> dict | None:
        """Change name and/or description; None when there is no such team, DuplicateKey on a taken name."""
        sets = [f"{column} = %s" for column in ("name", "description") if column in changes]
        params = [changes[column] for column in ("name", "description") if column in changes]
        if sets:
            changed = await self.db.execute(
                f"UPDATE teams SET {', '.join(sets)}, updated_ms = %s WHERE id = %s", [*params, now_ms(), team_id]
            )
            if not changed:
                return None
        return await self.get_team(team_id)

    async def delete_team(self, team_id: str) -> bool:
        """Delete a team and its memberships; conversations keep their team_id. False when none."""
        async with self.db.transaction() as tx:
            await tx.execute("DELETE FROM team_members WHERE team_id = %s", (team_id,))
            return bool(await tx.execute("DELETE FROM teams WHERE id = %s", (team_id,)))

    @staticmethod
    def _member(row: tuple) -> dict:
        return {"team_id": row[0], "user_id": row[1], "name": row[2], "role": row[3],
                "created_at": iso_from_ms(int(row[4]))}

    _MEMBER_SQL = (
        "SELECT tm.team_id, tm.user_id, u.name, u.role, tm.created_ms FROM team_members tm "
        "LEFT JOIN users u ON u.id = tm.user_id WHERE tm.team_id = %s"
    )

    async def list_members(self, team_id: str) -> list[dict]:
        """The members of a team, by user id."""
        rows = await self.db.fetchall(self._MEMBER_SQL + " ORDER BY tm.user_id", (team_id,))
        return [self._member(r) for r in rows]

    async def add_member(self, team_id: str, user_id: str) -> dict:
        """Add a member; DuplicateKey when already one, IntegrityError when the team is gone."""
        await self.db.execute(
            "INSERT INTO team_members (team_id, user_id, created_ms) VALUES (%s, %s, %s)", (team_id, user_id, now_ms())
        )
        row = await self.db.fetchone(self._MEMBER_SQL + " AND tm.user_id = %s", (team_id, user_id))
        return self._member(row)

    async def remove_member(self, team_id: str, user_id: str) -> bool:
        """Remove a member; False when it was not one."""
        return bool(
            await self.db.execute("DELETE FROM team_members WHERE team_id = %s AND user_id = %s", (team_id, user_id))
        )

    # --- statistics ------------------------------------------------------------------------

    async def stats(self, *, since_ms: int | None, until_ms: int | None, team_id: str | None) -> dict:
        """The figures of GET /api/v1/stats (definitions in docs/rest.md)."""
        team_sql, team_params = _team_condition(team_id)
        by_state = await self._by_state(since_ms, until_ms, team_sql, team_params)
        started = sum(by_state.values())
        handed_off = await self._handed_off(since_ms, until_ms, team_sql, team_params)
        closes = await self._closes(since_ms, until_ms, team_sql, team_params)
        waits = await self._queue_waits(since_ms, until_ms, team_sql, team_params)
        first_response = await self._first_responses(since_ms, until_ms, team_sql, team_params)
        return {
            "since": iso_from_ms(since_ms) if since_ms is not None else None,
            "until": iso_from_ms(until_ms) if until_ms is not None else None,
            "team_id": team_id,
            "conversations_by_state": by_state,
            "started": started,
            "handed_off": handed_off,
            "ai_resolved": closes["ai_resolved"],
            "closed": closes["count"],
            "handoff_rate": round(handed_off / started, 4) if started else 0.0,
            "queue_waits": len(waits),
            "queue_wait_avg_s": _seconds(sum(waits), len(waits)),
            "queue_wait_p90_s": p90_seconds(waits),
            "first_responses": first_response[0],
            "first_response_avg_s": _seconds(first_response[1], first_response[0]),
            "resolution_avg_s": _seconds(closes["total_ms"], closes["count"]),
            "messages_by_sender_type": await self._messages(since_ms, until_ms, team_sql, team_params),
        }

    async def _by_state(self, since_ms, until_ms, team_sql, team_params) -> dict[str, int]:
        window, params = _window("c.created_ms", since_ms, until_ms)
        rows = await self.db.fetchall(
            f"SELECT c.state, COUNT(*) FROM conversations c WHERE 1 = 1{window}{team_sql} GROUP BY c.state",
            [*params, *team_params],
        )
        counts = dict.fromkeys(STATES, 0)
        counts.update({state: int(n) for state, n in rows})
        return counts

    async def _handed_off(self, since_ms, until_ms, team_sql, team_params) -> int:
        window, params = _window("e.created_ms", since_ms, until_ms)
        row = await self.db.fetchone(
            "SELECT COUNT(DISTINCT e.conversation_id) FROM conversation_events e "
            "JOIN conversations c ON c.id = e.conversation_id "
            f"WHERE e.trigger_name = 'request_handoff'{window}{team_sql}",
            [*params, *team_params],
        )
        return int(row[0] or 0)

    async def _closes(self, since_ms, until_ms, team_sql, team_params) -> dict:
        """Conversations closed in the window (their last close in it): count, summed time from
        creation to that close, and how many never had a (non-private) agent message."""
        window, params = _window("e.created_ms", since_ms, until_ms)
        row = await self.db.fetchone(
            "SELECT COUNT(*), SUM(t.closed_ms - t.created_ms), "
            "SUM(CASE WHEN NOT EXISTS (SELECT 1 FROM messages m WHERE m.conversation_id = t.id "
            "AND m.sender_type = 'agent' AND m.private = 0) THEN 1 ELSE 0 END) "
            "FROM (SELECT c.id AS id, c.created_ms AS created_ms, MAX(e.created_ms) AS closed_ms "
            "FROM conversation_events e JOIN conversations c ON c.id = e.conversation_id "
            f"WHERE e.to_state = 'closed'{window}{team_sql} GROUP BY c.id, c.created_ms) t",
            [*params, *team_params],
        )
        return {"count": int(row[0] or 0), "total_ms": int(row[1] or 0), "ai_resolved": int(row[2] or 0)}

    async def _queue_waits(self, since_ms, until_ms, team_sql, team_params) -> list[int]:
        """Milliseconds from entering `handoff` (in the window) to the very next transition when
        that one is handoff -> human; a queue left any other way (release, close) is no wait."""
        window, params = _window("e1.created_ms", since_ms, until_ms)
        rows = await self.db.fetchall(
            "SELECT e2.created_ms - e1.created_ms FROM conversation_events e1 "
            "JOIN conversation_events e2 ON e2.conversation_id = e1.conversation_id AND e2.version = e1.version + 1 "
            "JOIN conversations c ON c.id = e1.conversation_id "
            "WHERE e1.to_state = 'handoff' AND e2.from_state = 'handoff' AND e2.to_state = 'human'"
            f"{window}{team_sql}",
            [*params, *team_params],
        )
        return [int(r[0]) for r in rows]

    async def _first_responses(self, since_ms, until_ms, team_sql, team_params) -> tuple[int, int]:
        """(count, summed ms) from each conversation's first assignment (in the window) to the
        first non-private agent message at or after it; conversations with no reply yet skipped."""
        window, params = _window("a.first_ms", since_ms, until_ms)
        row = await self.db.fetchone(
            "SELECT COUNT(*), SUM(r.reply_ms - r.first_ms) FROM ("
            "SELECT a.first_ms AS first_ms, (SELECT MIN(m.created_ms) FROM messages m "
            "WHERE m.conversation_id = a.conversation_id AND m.sender_type = 'agent' AND m.private = 0 "
            "AND m.created_ms >= a.first_ms) AS reply_ms "
            "FROM (SELECT conversation_id, MIN(created_ms) AS first_ms FROM conversation_events "
            "WHERE to_state = 'human' GROUP BY conversation_id) a "
            f"JOIN conversations c ON c.id = a.conversation_id WHERE 1 = 1{window}{team_sql}"
            ") r WHERE r.reply_ms IS NOT NULL",
            [*params, *team_params],
        )
        return int(row[0] or 0), int(row[1] or 0)

    async def _messages(self, since_ms, until_ms, team_sql, team_params) -> dict[str, int]:
        window, params = _window("m.created_ms", since_ms, until_ms)
        join = " JOIN conversations c ON c.id = m.conversation_id" if team_sql else ""
        rows = await self.db.fetchall(
            f"SELECT m.sender_type, COUNT(*) FROM messages m{join} WHERE 1 = 1{window}{team_sql} "
            "GROUP BY m.sender_type",
            [*params, *team_params],
        )
        counts = dict.fromkeys(SENDER_TYPES, 0)
        counts.update({sender: int(n) for sender, n in rows})
        return counts
