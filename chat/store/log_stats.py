"""Statistics that separate the AI from humans (PROTOCOL 6 "Stats also report"), computed from the
event log alone (conversation_events, plus conversation_marks for the SLA), so they are recomputed
from scratch on every request and stay right after any repair of the log; and the replay of a
conversation's log (what `chat-api stats rebuild` checks the SQL rows against).

Definitions (window [since, until), `team_id` on the conversation's current team):
- time in each state: the time each conversation spent in `ai`, `handoff` and `human` inside the
  window; a state lasts from the transition that entered it (or the creation) to the next one (or
  the end of the window, or now);
- closes by actor: `close` transitions in the window by actor type; a `system` close for `inactivity`
  (the idle timers) is counted as `inactivity`;
- reopen rate: `reopen` transitions / `close` transitions in the window;
- SLA: entries into `human` in the window, and `sla_breached` marks in the window; met rate =
  1 - breached / entries (an entry whose SLA is still running counts as met so far).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from chat.store.db import Database
from chat.store.erasure import ERASED_STATE
from states.clock import now_ms
from states.machine import State, Trigger

TIMED_STATES = (State.AI.value, State.HANDOFF.value, State.HUMAN.value)
CLOSERS = ("customer", "agent", "admin", "ai", "system", "inactivity")
INACTIVITY = "inactivity"


class LogEntry(Protocol):
    """What the replay reads of a transition (chat.store.models.TransitionEvent has it)."""

    @property
    def version(self) -> int: ...  # noqa: D102
    @property
    def from_state(self) -> str: ...  # noqa: D102
    @property
    def to_state(self) -> str: ...  # noqa: D102
    @property
    def agent_id(self) -> str | None: ...  # noqa: D102
    @property
    def team_id(self) -> str | None: ...  # noqa: D102


@dataclass(frozen=True)
class Replayed:
    """Where a conversation's log leads: the state, version, agent and team after its last entry;
    `problems` names each entry that does not follow on from the one before."""

    state: str
    version: int
    agent_id: str | None
    team_id: str | None
    problems: tuple[str, ...] = ()


def replay(entries: Sequence[LogEntry], *, initial_state: str = State.AI.value) -> Replayed:
    """Replay a log (oldest first): each entry must leave the state the previous one entered, with
    the next version. A conversation with no entries is where it started, at version 0."""
    if not entries:
        return Replayed(initial_state, 0, None, None)
    state, version = entries[0].from_state, entries[0].version - 1
    problems = []
    for entry in entries:
        if entry.version != version + 1:
            problems.append(f"version {entry.version} follows {version}")
        if entry.from_state != state:
            problems.append(f"version {entry.version} leaves {entry.from_state}, not {state}")
        # an erasure takes a version but the conversation keeps its state (chat/store/erasure.py)
        state, version = (state if entry.to_state == ERASED_STATE else entry.to_state), entry.version
    last = entries[-1]
    return Replayed(state, version, last.agent_id, last.team_id, tuple(problems))


def state_times(created_ms: int, first_state: str, moves: Iterable[tuple[str, int]], start_ms: int | None,
                end_ms: int) -> dict[str, int]:
    """Milliseconds spent in each state within [start_ms, end_ms): the conversation was in
    `first_state` from `created_ms`, then in each move's state from its time (moves oldest first)."""
    totals = dict.fromkeys(TIMED_STATES, 0)
    state, since = first_state, created_ms
    for to_state, at_ms in [*moves, ("", end_ms)]:
        lo, hi = max(since, start_ms if start_ms is not None else since), min(at_ms, end_ms)
        if state in totals and hi > lo:
            totals[state] += hi - lo
        state, since = to_state, at_ms
    return totals


class LogStats:
    """The log-based figures of GET /api/v1/stats."""

    def __init__(self, db: Database):
        self.db = db
        self._t = db.tables

    async def figures(self, since_ms: int | None, until_ms: int | None, team_id: str | None) -> dict[str, Any]:
        """Time with the AI and with humans, closes by actor, reopen rate, SLA (definitions above)."""
        times = await self._times(since_ms, until_ms, team_id)
        closes, reopened, entries = await self._moves(since_ms, until_ms, team_id)
        breached = await self._breaches(since_ms, until_ms, team_id)
        closed = sum(closes.values())
        ai_ms, human_ms = times[State.AI.value], times[State.HUMAN.value]
        return {
            "time_with_ai_s": round(ai_ms / 1000, 3),
            "time_in_queue_s": round(times[State.HANDOFF.value] / 1000, 3),
            "time_with_humans_s": round(human_ms / 1000, 3),
            "ai_time_share": round(ai_ms / (ai_ms + human_ms), 4) if ai_ms + human_ms else None,
            "closes_by_actor": closes,
            "reopened": reopened,
            "reopen_rate": round(reopened / closed, 4) if closed else 0.0,
            "human_entries": entries,
            "sla_breached": breached,
            "sla_met_rate": round(1 - min(breached, entries) / entries, 4) if entries else None,
        }

    def _scope(self, column: str, since_ms: int | None, until_ms: int | None,
               team_id: str | None) -> tuple[str, list[Any]]:
        sql, params = "", list[Any]()
        for condition, value in ((f" AND {column} >= %s", since_ms), (f" AND {column} < %s", until_ms),
                                 (" AND c.team_id = %s", team_id)):
            if value is not None:
                sql, params = sql + condition, [*params, value]
        return sql, params

    async def _times(self, since_ms: int | None, until_ms: int | None, team_id: str | None) -> dict[str, int]:
        """Every conversation that may have spent time in the window, replayed segment by segment."""
        t, end = self._t, min(until_ms, now_ms()) if until_ms is not None else now_ms()  # never past now
        sql = (f"SELECT c.id, c.created_ms, c.state, e.from_state, e.to_state, e.created_ms FROM {t.conversations} c "
               f"LEFT JOIN {t.conversation_events} e ON e.conversation_id = c.id WHERE c.created_ms < %s")
        params: list[Any] = [end]
        if since_ms is not None:  # a conversation closed before the window spent none of it in a state
            sql += (f" AND (c.state <> %s OR EXISTS (SELECT 1 FROM {t.conversation_events} x "
                    "WHERE x.conversation_id = c.id AND x.created_ms >= %s))")
            params += [State.CLOSED.value, since_ms]
        if team_id is not None:
            sql += " AND c.team_id = %s"
            params.append(team_id)
        rows = await self.db.fetchall(sql + " ORDER BY c.id, e.version", params)
        totals = dict.fromkeys(TIMED_STATES, 0)
        for group in _by_conversation(rows):
            created, current = int(group[0][1]), group[0][2]
            # an erasure is no move: the state goes on (one whose only entry is its erasure never moved)
            moved = [r for r in group if r[4] is not None and r[4] != ERASED_STATE]
            moves = [(r[4], int(r[5])) for r in moved]
            first = moved[0][3] if moved else current
            for state, ms in state_times(created, first, moves, since_ms, end).items():
                totals[state] += ms
        return totals

    async def _moves(self, since_ms: int | None, until_ms: int | None,
                     team_id: str | None) -> tuple[dict[str, int], int, int]:
        """(closes by actor, reopens, entries into human) in the window."""
        t = self._t
        scope, params = self._scope("e.created_ms", since_ms, until_ms, team_id)
        rows = await self.db.fetchall(
            "SELECT e.trigger_name, e.to_state, e.actor_type, CASE WHEN e.reason = %s THEN 1 ELSE 0 END, COUNT(*) "
            f"FROM {t.conversation_events} e JOIN {t.conversations} c ON c.id = e.conversation_id "
            f"WHERE (e.trigger_name IN (%s, %s) OR e.to_state = %s){scope} "
            "GROUP BY e.trigger_name, e.to_state, e.actor_type, CASE WHEN e.reason = %s THEN 1 ELSE 0 END",
            [INACTIVITY, Trigger.CLOSE.value, Trigger.REOPEN.value, State.HUMAN.value, *params, INACTIVITY],
        )
        closes = dict.fromkeys(CLOSERS, 0)
        reopened = entries = 0
        for trigger, to_state, actor, inactive, count in rows:
            if trigger == Trigger.CLOSE.value:
                who = INACTIVITY if int(inactive) and actor == "system" else actor
                closes[who] = closes.get(who, 0) + int(count)
            elif trigger == Trigger.REOPEN.value:
                reopened += int(count)
            if to_state == State.HUMAN.value:
                entries += int(count)
        return closes, reopened, entries

    async def _breaches(self, since_ms: int | None, until_ms: int | None, team_id: str | None) -> int:
        t = self._t
        scope, params = self._scope("k.created_ms", since_ms, until_ms, team_id)
        row = await self.db.fetchone(
            f"SELECT COUNT(*) FROM {t.conversation_marks} k JOIN {t.conversations} c ON c.id = k.conversation_id "
            f"WHERE k.kind = %s{scope}",
            ["sla_breached", *params],
        )
        return int(row[0] or 0) if row else 0


def _by_conversation(rows: list[Any]) -> Iterable[list[Any]]:
    """Rows ordered by conversation id, grouped."""
    group: list[Any] = []
    for row in rows:
        if group and row[0] != group[0][0]:
            yield group
            group = []
        group.append(row)
    if group:
        yield group
