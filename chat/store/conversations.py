"""Conversation rows: the SQL mirror of the live record, the TransitionLog side of
states.repository (create, record_transition, load), and the queries on the mirror rows.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from typing import Any

import orjson

from chat.store.db import Database, DuplicateKey, Tx, marks
from chat.store.events import insert_event
from chat.store.labels import Labels
from chat.store.models import CONVERSATION_COLUMNS, ConversationRow
from chat.store.webhooks import Webhooks
from states.clock import iso_from_ms, ms_from_iso
from states.errors import StaleVersion
from states.machine import State
from states.record import Conversation
from states.repository import Transition

QueueEntry = tuple[str, str | None, int]  # (id, team_id, handoff_ms) of a conversation waiting for an agent


def _ms_or_none(iso: str | None) -> int | None:
    return ms_from_iso(iso) if iso else None


def _row_values(c: Conversation) -> tuple[Any, ...]:
    # a migrated record in handoff has no handoff_at: it has waited since its last update
    handoff_at = c.handoff_at or (c.updated_at if c.state == State.HANDOFF else None)
    return (
        c.id, c.user_id, c.state, c.agent_type, c.agent_id, c.team_id, c.version, 0,
        orjson.dumps(c.metadata).decode(), _ms_or_none(handoff_at), ms_from_iso(c.created_at),
        ms_from_iso(c.updated_at),
    )


def _record(row: ConversationRow) -> Conversation:
    """The live record a mirror row stands for (context is not kept in SQL)."""
    return Conversation(
        id=row.id,
        user_id=row.user_id,
        state=row.state,
        agent_type=row.agent_type,
        agent_id=row.agent_id,
        team_id=row.team_id,
        version=int(row.version),
        metadata=orjson.loads(row.metadata) if row.metadata else {},
        handoff_at=iso_from_ms(int(row.handoff_ms)) if row.handoff_ms is not None else None,
        created_at=iso_from_ms(int(row.created_ms)),
        updated_at=iso_from_ms(int(row.updated_ms)),
    )


def transition_data(transition: Transition) -> dict[str, Any]:
    """The `data` of a `conversation.updated` webhook event: the conversation after the move (C
    without last_seq and labels, which the move does not change) and the log entry E."""
    after = transition.after
    conversation = {
        "id": after.id, "user_id": after.user_id, "state": after.state, "agent_type": after.agent_type,
        "agent_id": after.agent_id, "team_id": after.team_id, "version": after.version, "metadata": after.metadata,
        "created_at": after.created_at, "updated_at": after.updated_at,
    }
    event = {
        "id": transition.id, "conversation_id": after.id, "version": after.version, "trigger": transition.trigger,
        "from_state": transition.before.state, "to_state": after.state, "actor_type": transition.actor.type,
        "actor_id": transition.actor.id, "reason": transition.reason or None,
        "created_at": iso_from_ms(transition.at_ms),
    }
    return {"conversation": conversation, "event": event}


class Conversations:
    """Every SQL statement on the conversations table outside the admin listing."""

    def __init__(self, db: Database, labels: Labels, webhooks: Webhooks):
        self.db = db
        self._labels = labels
        self._webhooks = webhooks
        self._events = db.tables.conversation_events
        self._t = t = db.tables.conversations
        self._insert = f"INSERT INTO {t} ({CONVERSATION_COLUMNS}) VALUES ({marks(ConversationRow._fields)})"
        self._move_sql = (
            f"UPDATE {t} SET state = %s, agent_type = %s, agent_id = %s, team_id = %s, "
            "version = %s, handoff_ms = %s, updated_ms = %s WHERE id = %s AND version = %s"
        )

    # --- the TransitionLog of states.repository ------------------------------------------

    async def create(self, conversation: Conversation) -> None:
        """Insert the mirror row of a new conversation."""
        async with self.db.transaction() as tx:
            await tx.execute(self._insert, _row_values(conversation))

    async def ensure(self, conversation: Conversation) -> None:
        """Give a migrated record its SQL row the first time it is touched."""
        with suppress(DuplicateKey):
            await self.create(conversation)

    @asynccontextmanager
    async def record_transition(self, transition: Transition) -> AsyncIterator[None]:
        """Check and move the mirror row, append the log entry; commit when the block succeeds."""
        before = transition.before
        async with self.db.transaction() as tx:
            await self._move(tx, transition)
            try:
                await insert_event(tx, self._events, transition)
            except DuplicateKey:
                raise StaleVersion(before.id, before.version) from None
            if self._webhooks.wants("conversation.updated"):
                await self._webhooks.record(tx, "conversation.updated", before.id, transition_data(transition))
            yield

    async def _move(self, tx: Tx, transition: Transition) -> None:
        before, after = transition.before, transition.after
        moved = await tx.execute(self._move_sql, (
            after.state, after.agent_type, after.agent_id, after.team_id, after.version,
            _ms_or_none(after.handoff_at), transition.at_ms, after.id, before.version,
        ))
        if moved:
            return
        if await tx.fetchone(f"SELECT version FROM {self._t} WHERE id = %s", (after.id,)) is not None:
            raise StaleVersion(after.id, before.version)
        # a migrated record touched for the first time: its row is born already moved
        try:
            await tx.execute(self._insert, _row_values(after))
        except DuplicateKey:
            raise StaleVersion(after.id, before.version) from None

    async def load(self, conversation_id: str) -> Conversation | None:
        """Rebuild the live record from the mirror row (context is not kept in SQL)."""
        row = await self.db.fetchone(
            f"SELECT {CONVERSATION_COLUMNS} FROM {self._t} WHERE id = %s", (conversation_id,)
        )
        return _record(ConversationRow(*row)) if row is not None else None

    # --- reads of the mirror rows -----------------------------------------------------------

    async def existing(self, ids: list[str]) -> set[str]:
        """Which of these conversation ids have a SQL row."""
        if not ids:
            return set()
        rows = await self.db.fetchall(f"SELECT id FROM {self._t} WHERE id IN ({marks(ids)})", ids)
        return {r[0] for r in rows}

    async def extras(self, conversation_id: str) -> tuple[int, list[str]]:
        """(last_seq, label titles) of a conversation, what C adds to the live record; (0, []) before its row exists."""
        row = await self.db.fetchone(f"SELECT last_seq FROM {self._t} WHERE id = %s", (conversation_id,))
        if row is None:
            return 0, []
        labels = await self._labels.titles_of([conversation_id])
        return int(row[0]), labels.get(conversation_id, [])

    async def handoff_queue(self, team_id: str | None = None, *, any_team: bool = True,
                            limit: int = 200) -> list[QueueEntry]:
        """Unassigned conversations in handoff, longest waiting first: (id, team_id, handoff_ms)."""
        sql = f"SELECT id, team_id, handoff_ms FROM {self._t} WHERE state = %s"
        params: list[Any] = [State.HANDOFF.value]
        if team_id is not None:
            sql += " AND team_id = %s"
            params.append(team_id)
        elif not any_team:
            sql += " AND team_id IS NULL"
        sql += " ORDER BY handoff_ms, id LIMIT %s"
        params.append(int(limit))
        return [(r[0], r[1], int(r[2] or 0)) for r in await self.db.fetchall(sql, params)]

    async def waiting_by_team(self) -> dict[str | None, tuple[int, int]]:
        """Unassigned conversations in handoff by team (None: no team): (how many, the oldest handoff_ms)."""
        rows = await self.db.fetchall(
            f"SELECT team_id, COUNT(*), MIN(handoff_ms) FROM {self._t} WHERE state = %s GROUP BY team_id",
            (State.HANDOFF.value,),
        )
        return {r[0]: (int(r[1]), int(r[2] or 0)) for r in rows}

    async def waiting_since(self, cutoff_ms: int, limit: int = 200) -> list[str]:
        """Conversations in handoff since before cutoff_ms."""
        rows = await self.db.fetchall(
            f"SELECT id FROM {self._t} WHERE state = %s AND handoff_ms < %s ORDER BY handoff_ms LIMIT %s",
            (State.HANDOFF.value, cutoff_ms, int(limit)),
        )
        return [r[0] for r in rows]

    async def assigned(self, agent_ids: list[str] | None = None) -> dict[str, set[str]]:
        """The conversations in `human` of every agent (or of these agents), by agent: the truth
        the Redis load sets mirror."""
        sql = f"SELECT agent_id, id FROM {self._t} WHERE state = %s AND agent_id IS NOT NULL"
        params: list[Any] = [State.HUMAN.value]
        if agent_ids is not None:
            if not agent_ids:
                return {}
            sql += f" AND agent_id IN ({marks(agent_ids)})"
            params += agent_ids
        held: dict[str, set[str]] = {}
        for agent_id, conversation_id in await self.db.fetchall(sql, params):
            held.setdefault(agent_id, set()).add(conversation_id)
        return held

    async def states_of(self, ids: list[str]) -> dict[str, tuple[str, str | None]]:
        """(state, agent_id) of each of these conversations that has a SQL row."""
        if not ids:
            return {}
        rows = await self.db.fetchall(f"SELECT id, state, agent_id FROM {self._t} WHERE id IN ({marks(ids)})", ids)
        return {r[0]: (r[1], r[2]) for r in rows}

    async def unanswered_ai(self, after_id: str = "", limit: int = 200) -> list[tuple[str, int]]:
        """Conversations in `ai` whose newest public message is the customer's, by id after
        after_id: (id, seq of that message). A reply is due there unless a turn is running."""
        rows = await self.db.fetchall(
            f"SELECT c.id, m.seq FROM {self._t} c JOIN {self.db.tables.messages} m ON m.conversation_id = c.id "
            "WHERE c.state = %s AND c.id > %s AND m.sender_type = %s AND m.seq = ("
            f"SELECT n.seq FROM {self.db.tables.messages} n WHERE n.conversation_id = c.id AND n.private = 0 "
            "ORDER BY n.seq DESC LIMIT 1) ORDER BY c.id LIMIT %s",
            (State.AI.value, after_id, "customer", int(limit)),
        )
        return [(r[0], int(r[1])) for r in rows]
