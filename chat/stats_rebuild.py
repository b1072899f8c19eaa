"""`chat-api stats rebuild`: check every conversation's SQL row against the replay of its event log,
and with `--repair` put the row back where the log leads.

The statistics keep no table of their own: each request computes them from the event log
(chat/store/log_stats.py), so there is nothing derived to rebuild. What can drift is the other
side: a row changed by hand, a restore, an import. This walks the conversations in id order, in
batches, with a progress line per batch, and reports each row whose state, version, agent or team
differs from its replayed log and each log that does not follow on from itself (those are never
repaired: the log is the evidence). A repaired row is written only while it is still at the
version that was read (a live transition meanwhile wins); the Redis live record follows at its next
move or checked read (states/repository.py repairs a record that differs from its row).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from chat.settings import Settings
from chat.store import Store, connect
from chat.store.db import Database, marks
from chat.store.log_stats import Replayed, replay
from chat.store.models import EVENT_COLUMNS, event_from_row
from states.clock import now_ms
from states.machine import AgentType, State


@dataclass
class RebuildReport:
    """What one run found and did."""

    checked: int = 0
    differing: int = 0
    repaired: int = 0
    broken_logs: int = 0
    lines: list[str] = field(default_factory=list)  # one per finding


@dataclass(frozen=True)
class Row:
    """The fields of a conversations row the log decides."""

    id: str
    state: str
    version: int
    agent_id: str | None
    team_id: str | None


class LogCheck:
    """The SQL of the check: rows by id, their logs, and the repair."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._t = db.tables

    async def rows_after(self, after_id: str, limit: int) -> list[Row]:
        """Conversations by id after `after_id`."""
        rows = await self.db.fetchall(
            f"SELECT id, state, version, agent_id, team_id FROM {self._t.conversations} WHERE id > %s "
            "ORDER BY id LIMIT %s", (after_id, int(limit)))
        return [Row(r[0], r[1], int(r[2]), r[3], r[4]) for r in rows]

    async def logs_of(self, ids: list[str]) -> dict[str, list[Any]]:
        """The transition logs of these conversations, oldest first."""
        rows = await self.db.fetchall(
            f"SELECT {EVENT_COLUMNS} FROM {self._t.conversation_events} WHERE conversation_id IN ({marks(ids)}) "
            "ORDER BY conversation_id, version", ids)
        logs: dict[str, list[Any]] = {}
        for row in rows:
            event = event_from_row(row)
            logs.setdefault(event.conversation_id, []).append(event)
        return logs

    async def rewrite(self, row: Row, replayed: Replayed) -> bool:
        """Put the row where its log leads, if it is still as it was read."""
        agent_type = AgentType.AI.value if replayed.state == State.AI else AgentType.HUMAN.value
        if replayed.state == State.CLOSED:
            agent_type = AgentType.HUMAN.value if replayed.agent_id else AgentType.AI.value
        count = await self.db.execute(
            f"UPDATE {self._t.conversations} SET state = %s, version = %s, agent_id = %s, team_id = %s, "
            "agent_type = %s, updated_ms = %s WHERE id = %s AND version = %s",
            (replayed.state, replayed.version, replayed.agent_id, replayed.team_id, agent_type, now_ms(), row.id,
             row.version))
        return count == 1


def compare(row: Row, log: list[Any]) -> tuple[Replayed | None, str | None]:
    """(the replay, what is wrong) of one row and its log; (None, None) when there is no log to go by."""
    if not log:
        return None, (f"{row.id}: version {row.version} but no log entries" if row.version else None)
    replayed = replay(log)
    if replayed.problems:
        return replayed, f"{row.id}: the log is broken: {'; '.join(replayed.problems)}"
    found = (row.state, row.version, row.agent_id, row.team_id)
    wanted = (replayed.state, replayed.version, replayed.agent_id, replayed.team_id)
    if found != wanted:
        return replayed, f"{row.id}: row is {found}, the log says {wanted}"
    return replayed, None


async def rebuild(settings: Settings, *, repair: bool, batch: int = 500,
                  progress: Callable[[RebuildReport], None] | None = None) -> RebuildReport:
    """Check (and with `repair`, fix) every conversation row against its log."""
    db = await connect(settings.database)
    report = RebuildReport()
    try:
        await Store(db).migrations.upgrade()
        check, after = LogCheck(db), ""
        while rows := await check.rows_after(after, batch):
            logs = await check.logs_of([r.id for r in rows])
            for row in rows:
                await _one(check, row, logs.get(row.id, []), report, repair=repair)
            after = rows[-1].id
            if progress is not None:
                progress(report)
        return report
    finally:
        await db.close()


async def _one(check: LogCheck, row: Row, log: list[Any], report: RebuildReport, *, repair: bool) -> None:
    report.checked += 1
    replayed, problem = compare(row, log)
    if problem is None:
        return
    report.lines.append(problem)
    if replayed is None or replayed.problems:
        report.broken_logs += 1
        return
    report.differing += 1
    if repair and await check.rewrite(row, replayed):
        report.repaired += 1
        report.lines.append(f"{row.id}: repaired from the log")
