"""What a due state timer checks before it acts, and the event log's entries that are not transitions
(`conversation_marks`: `sla_breached`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from chat.store.db import Database, DuplicateKey, marks
from chat.store.webhooks import Webhooks
from states.ids import new_id

AGENT, CUSTOMER, SYSTEM = "agent", "customer", "system"


@dataclass(frozen=True)
class TimerFacts:
    """What a due timer of a conversation at one version looks at."""

    entered_ms: int  # when the conversation reached that version (its creation for version 0)
    last_customer_ms: int | None  # the customer's newest message, any state
    agent_replied: bool  # a non-private agent message at or after entered_ms


@dataclass(frozen=True)
class Mark:
    """One entry of the event log that is not a transition."""

    id: str
    conversation_id: str
    version: int
    kind: str
    state: str
    agent_id: str | None
    team_id: str | None
    created_ms: int


MARK_COLUMNS = "id, conversation_id, version, kind, state, agent_id, team_id, created_ms"

Position = tuple[int, str]  # (created_ms, id) of the last conversation of a page


class OpenVersion(NamedTuple):
    """An open conversation's current version (TimerReads.open_versions): when it began, as its timers count
    (the queue wait from entering the queue), the customer's newest message, whether an agent replied in it
    (as TimerFacts), and its place in the paging."""

    conversation_id: str
    version: int
    entered_ms: int
    last_customer_ms: int | None
    agent_replied: bool
    position: Position


class TimerReads:
    """The timers' SQL: facts before acting, and the marks they log."""

    def __init__(self, db: Database, webhooks: Webhooks):
        self.db = db
        self._t = db.tables
        self.webhooks = webhooks  # the outbox: an SLA breach is reported in the transaction that logs it

    async def facts(self, conversation_id: str, version: int) -> TimerFacts | None:
        """The facts of a conversation at a version; None when it has no SQL row."""
        t = self._t
        row = await self.db.fetchone(
            f"SELECT c.created_ms, (SELECT e.created_ms FROM {t.conversation_events} e "
            "WHERE e.conversation_id = c.id AND e.version = %s), "
            f"(SELECT MAX(m.created_ms) FROM {t.messages} m WHERE m.conversation_id = c.id AND m.sender_type = %s) "
            f"FROM {t.conversations} c WHERE c.id = %s",
            (version, CUSTOMER, conversation_id),
        )
        if row is None:
            return None
        entered = int(row[1] if row[1] is not None else row[0])
        replied = await self.db.fetchone(
            f"SELECT 1 FROM {t.messages} WHERE conversation_id = %s AND sender_type = %s AND private = 0 "
            "AND created_ms >= %s LIMIT 1",
            (conversation_id, AGENT, entered),
        )
        return TimerFacts(entered, None if row[2] is None else int(row[2]), replied is not None)

    async def noticed_since(self, conversation_id: str, content: str, since_ms: int) -> bool:
        """Is there a system message with this text after `since_ms` (an idle nudge already sent for this
        silence: the index forgets a fired timer, and one armed again must not send it twice)?"""
        row = await self.db.fetchone(
            f"SELECT 1 FROM {self._t.messages} WHERE conversation_id = %s AND sender_type = %s AND created_ms > %s "
            "AND content = %s LIMIT 1",
            (conversation_id, SYSTEM, since_ms, content),
        )
        return row is not None

    async def add_mark(self, conversation_id: str, version: int, kind: str, *, state: str, agent_id: str | None,
                       team_id: str | None, at_ms: int, webhook: dict[str, Any] | None = None) -> bool:
        """Log a mark, and the webhook event `webhook` names (`sla.breached`) in the same transaction when
        a subscription wants it; False when this conversation already has one of this kind at this version."""
        try:
            async with self.db.transaction() as tx:
                await tx.execute(
                    f"INSERT INTO {self._t.conversation_marks} ({MARK_COLUMNS}) "
                    "VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                    (new_id(), conversation_id, version, kind, state, agent_id, team_id, at_ms),
                )
                if webhook is not None and self.webhooks.wants(webhook["type"]):
                    await self.webhooks.record(tx, webhook["type"], conversation_id, webhook["data"], lock=True)
        except DuplicateKey:
            return False
        return True

    async def marks_of(self, conversation_ids: Sequence[str], *, after_version: int = 0,
                       through_version: int | None = None) -> list[Mark]:
        """The marks of these conversations at versions in (after_version, through_version], by conversation and
        version. As many as the transitions of those versions at most (one per kind and version): a caller
        that reads the log a bounded page at a time reads the marks of each page's versions."""
        through = "" if through_version is None else " AND version <= %s"
        rows = await self.db.fetchall(
            f"SELECT {MARK_COLUMNS} FROM {self._t.conversation_marks} "
            f"WHERE conversation_id IN ({marks(conversation_ids)}) AND version > %s{through} "
            "ORDER BY conversation_id, version, created_ms",
            [*conversation_ids, after_version, *([] if through_version is None else [through_version])],
        )
        return [_mark(r) for r in rows]

    async def open_versions(self, state: str, after: Position | None = None, limit: int = 500) -> list[OpenVersion]:
        """Conversations in `state` after `after` (their creation order, on ix_conversations_state): what a
        start arms the missing timers of (armed before an upgrade, or a Redis that lost its index). Entered:
        for `handoff` when it entered the queue, else when its current version began (its creation for
        version 0), as TimerFacts; an agent replied when its newest public message is not older than that
        version."""
        t = self._t
        page = ""
        params: list[Any] = [CUSTOMER, AGENT, state]
        if after is not None:  # `created_ms >= %s` first: each page reads from where the last one ended
            page = " AND c.created_ms >= %s AND (c.created_ms > %s OR c.id > %s)"
            params += [after[0], after[0], after[1]]
        rows = await self.db.fetchall(
            "SELECT c.id, c.version, c.created_ms, c.handoff_ms, c.updated_ms, "
            f"(SELECT e.created_ms FROM {t.conversation_events} e WHERE e.conversation_id = c.id "
            "AND e.version = c.version), "
            f"(SELECT MAX(m.created_ms) FROM {t.messages} m WHERE m.conversation_id = c.id AND m.sender_type = %s), "
            f"(SELECT MAX(m.created_ms) FROM {t.messages} m WHERE m.conversation_id = c.id AND m.sender_type = %s "
            "AND m.private = 0) "
            f"FROM {t.conversations} c WHERE c.state = %s{page} ORDER BY c.created_ms, c.id LIMIT %s",
            [*params, int(limit)],
        )
        return [OpenVersion(r[0], int(r[1]), _entered(state, r), None if r[6] is None else int(r[6]),
                            r[7] is not None and int(r[7]) >= _version_start(r), (int(r[2]), r[0]))
                for r in rows]


def _version_start(row: Any) -> int:
    """When the conversation's current version began (its creation for version 0)."""
    return int(row[5] if row[5] is not None else row[2])


def _entered(state: str, row: Any) -> int:
    if state == "handoff":  # the queue wait counts from entering the queue (a move inside it keeps it)
        return int(row[3] if row[3] is not None else row[4])
    return _version_start(row)


def _mark(row: Any) -> Mark:
    return Mark(row[0], row[1], int(row[2]), row[3], row[4], row[5], row[6], int(row[7]))
