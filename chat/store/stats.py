"""The figures of GET /api/v1/stats, computed in SQL (definitions in docs/rest.md).

Times are the epoch-millisecond columns; every window is [since_ms, until_ms). State and
trigger names are parameters taken from states.State and states.Trigger.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from chat.store.csat import Csat
from chat.store.db import Database
from chat.store.erasure import ERASED_STATE
from chat.store.log_stats import LogStats
from chat.store.models import SENDER_TYPES, STATES
from states.clock import iso_from_ms
from states.machine import State, Trigger

AGENT = "agent"  # the sender_type of an agent's messages


@dataclass(frozen=True)
class Window:
    """[since_ms, until_ms) and an optional team: the scope of every figure."""

    since_ms: int | None
    until_ms: int | None
    team_id: str | None

    def on(self, column: str) -> tuple[str, list[Any]]:
        """` AND column >= %s AND column < %s` (the bounds given) and their parameters."""
        sql, params = "", []
        if self.since_ms is not None:
            sql += f" AND {column} >= %s"
            params.append(self.since_ms)
        if self.until_ms is not None:
            sql += f" AND {column} < %s"
            params.append(self.until_ms)
        return sql, params

    def scoped(self, column: str) -> tuple[str, list[Any]]:
        """The window on `column` and the team condition on `conversations c`, with their parameters."""
        sql, params = self.on(column)
        if self.team_id is not None:
            return sql + " AND c.team_id = %s", [*params, self.team_id]
        return sql, params


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


@dataclass(frozen=True)
class Closes:
    """Conversations closed in a window."""

    count: int
    total_ms: int
    ai_resolved: int


class Stats:
    """Every SQL statement of the statistics."""

    def __init__(self, db: Database, csat: Csat):
        self.db = db
        self._t = db.tables
        self.log = LogStats(db)
        self.csat = csat  # the ratings: the customer's, not the event log's

    async def figures(self, *, since_ms: int | None, until_ms: int | None, team_id: str | None) -> dict[str, Any]:
        """The figures of GET /api/v1/stats (definitions in docs/rest.md)."""
        window = Window(since_ms, until_ms, team_id)
        by_state = await self._by_state(window)
        started = sum(by_state.values())
        handed_off = await self._handed_off(window)
        closes = await self._closes(window)
        waits = await self._queue_waits(window)
        responses, response_ms = await self._first_responses(window)
        return {
            "since": iso_from_ms(since_ms) if since_ms is not None else None,
            "until": iso_from_ms(until_ms) if until_ms is not None else None,
            "team_id": team_id,
            "conversations_by_state": by_state,
            "started": started,
            "handed_off": handed_off,
            "ai_resolved": closes.ai_resolved,
            "closed": closes.count,
            "handoff_rate": round(handed_off / started, 4) if started else 0.0,
            "queue_waits": len(waits),
            "queue_wait_avg_s": _seconds(sum(waits), len(waits)),
            "queue_wait_p90_s": p90_seconds(waits),
            "first_responses": responses,
            "first_response_avg_s": _seconds(response_ms, responses),
            "resolution_avg_s": _seconds(closes.total_ms, closes.count),
            "messages_by_sender_type": await self._messages(window),
            **await self.log.figures(since_ms, until_ms, team_id),
            **{f"csat_{name}": value for name, value in (await self.csat.summary(since_ms, until_ms, team_id)).items()},
        }

    async def _by_state(self, window: Window) -> dict[str, int]:
        scope, params = window.scoped("c.created_ms")
        tb = self._t
        rows = await self.db.fetchall(
            f"SELECT c.state, COUNT(*) FROM {tb.conversations} c WHERE 1 = 1{scope} GROUP BY c.state", params
        )
        counts = dict.fromkeys(STATES, 0)
        counts.update({state: int(n) for state, n in rows})
        return counts

    async def _handed_off(self, window: Window) -> int:
        scope, params = window.scoped("e.created_ms")
        tb = self._t
        row = await self.db.fetchone(
            f"SELECT COUNT(DISTINCT e.conversation_id) FROM {tb.conversation_events} e "
            f"JOIN {tb.conversations} c ON c.id = e.conversation_id "
            f"WHERE e.trigger_name = %s{scope}",
            [Trigger.REQUEST_HANDOFF.value, *params],
        )
        return int(row[0] or 0) if row else 0

    async def _closes(self, window: Window) -> Closes:
        """Conversations closed in the window (their last close in it): count, summed time from
        creation to that close, and how many never had a (non-private) agent message."""
        scope, params = window.scoped("e.created_ms")
        tb = self._t
        row = await self.db.fetchone(
            "SELECT COUNT(*), SUM(t.closed_ms - t.created_ms), "
            f"SUM(CASE WHEN NOT EXISTS (SELECT 1 FROM {tb.messages} m WHERE m.conversation_id = t.id "
            "AND m.sender_type = %s AND m.private = 0) THEN 1 ELSE 0 END) "
            "FROM (SELECT c.id AS id, c.created_ms AS created_ms, MAX(e.created_ms) AS closed_ms "
            f"FROM {tb.conversation_events} e JOIN {tb.conversations} c ON c.id = e.conversation_id "
            f"WHERE e.to_state = %s{scope} GROUP BY c.id, c.created_ms) t",
            [AGENT, State.CLOSED.value, *params],
        )
        if row is None:
            return Closes(0, 0, 0)
        return Closes(count=int(row[0] or 0), total_ms=int(row[1] or 0), ai_resolved=int(row[2] or 0))

    async def _queue_waits(self, window: Window) -> list[int]:
        """Milliseconds from entering `handoff` (in the window) to the very next transition when
        that one is handoff -> human; a queue left any other way (release, close) is no wait. An erasure
        between the two is no transition (the conversation stayed in the queue)."""
        scope, params = window.scoped("e1.created_ms")
        tb = self._t
        rows = await self.db.fetchall(
            f"SELECT e2.created_ms - e1.created_ms FROM {tb.conversation_events} e1 "
            f"JOIN {tb.conversation_events} e2 ON e2.conversation_id = e1.conversation_id AND e2.version = ("
            f"SELECT MIN(n.version) FROM {tb.conversation_events} n WHERE n.conversation_id = e1.conversation_id "
            "AND n.version > e1.version AND n.to_state <> %s) "
            f"JOIN {tb.conversations} c ON c.id = e1.conversation_id "
            f"WHERE e1.to_state = %s AND e2.from_state = %s AND e2.to_state = %s{scope}",
            [ERASED_STATE, State.HANDOFF.value, State.HANDOFF.value, State.HUMAN.value, *params],
        )
        return [int(r[0]) for r in rows]

    async def _first_responses(self, window: Window) -> tuple[int, int]:
        """(count, summed ms) from each conversation's first assignment (in the window) to the
        first non-private agent message at or after it; conversations with no reply yet skipped."""
        scope, params = window.scoped("a.first_ms")
        tb = self._t
        row = await self.db.fetchone(
            "SELECT COUNT(*), SUM(r.reply_ms - r.first_ms) FROM ("
            f"SELECT a.first_ms AS first_ms, (SELECT MIN(m.created_ms) FROM {tb.messages} m "
            "WHERE m.conversation_id = a.conversation_id AND m.sender_type = %s AND m.private = 0 "
            "AND m.created_ms >= a.first_ms) AS reply_ms "
            f"FROM (SELECT conversation_id, MIN(created_ms) AS first_ms FROM {tb.conversation_events} "
            "WHERE to_state = %s GROUP BY conversation_id) a "
            f"JOIN {tb.conversations} c ON c.id = a.conversation_id WHERE 1 = 1{scope}"
            ") r WHERE r.reply_ms IS NOT NULL",
            [AGENT, State.HUMAN.value, *params],
        )
        return (int(row[0] or 0), int(row[1] or 0)) if row else (0, 0)

    async def _messages(self, window: Window) -> dict[str, int]:
        scope, params = window.scoped("m.created_ms")
        tb = self._t
        join = f" JOIN {tb.conversations} c ON c.id = m.conversation_id" if window.team_id is not None else ""
        rows = await self.db.fetchall(
            f"SELECT m.sender_type, COUNT(*) FROM {tb.messages} m{join} WHERE 1 = 1{scope} GROUP BY m.sender_type",
            params,
        )
        counts = dict.fromkeys(SENDER_TYPES, 0)
        counts.update({sender: int(n) for sender, n in rows})
        return counts
