"""Messages: the one table every message is written to, with a gap-free seq per conversation.

The seq comes from conversations.last_seq, bumped in the same transaction as the insert: the
row lock it takes orders concurrent writers of a conversation. Every message the service writes
comes through chat.store.writer (group commit: append_batch, each draft with its guard);
append_draft is its one-by-one path. On MySQL each is two round trips (docs/store.md).
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from typing import Any

from chat.store.db import Database, DuplicateKey, RolledBack, Tx, marks
from chat.store.models import MESSAGE_COLUMNS, Message, message_from_row
from chat.store.webhooks import Webhooks
from states.clock import now_ms
from states.errors import ConversationNotFound, StaleVersion
from states.ids import new_id

log = logging.getLogger(__name__)

# How often a message is written when the database rolls its transaction back whole (a deadlock's victim)
WRITE_TRIES = 3


@dataclass(frozen=True)
class Guard:
    """Write only while the mirror row still matches: a state (and its version), an assignee,
    or not a given state; and, for an AI reply, while no AI message came after the newest message
    its turn read (another instance's turn, which took over a lock this one lost). The row lock of
    the seq bump holds it until the commit (every writer of the conversation's messages takes it
    first)."""

    state: str | None = None
    version: int | None = None
    agent_id: str | None = None
    not_state: str | None = None
    no_ai_after: int | None = None  # a seq

    def sql(self, conversations: str, messages: str, conversation_id: str, seq_index: str = "") -> tuple[
            str, tuple[Any, ...]]:
        """The condition on the conversation's row (the tables' names), and its parameters. `seq_index` is the
        messages table's index hint (MySQL) that makes the AI-message check a range read of the conversation's
        newest messages (see _guard_sql)."""
        sql, values = _guard_sql(self, conversations, messages, seq_index)
        return (sql, (*values, conversation_id)) if self.no_ai_after is not None else (sql, values)


@dataclass(frozen=True)
class NewMessage:
    """A message to store: what its sender gives (and the guard it is written under); the store
    adds id, seq and time."""

    conversation_id: str
    sender_type: str
    content: str
    sender_id: str | None = None
    private: bool = False
    client_msg_id: str | None = None
    guard: Guard | None = None
    message_id: str | None = None  # its id when the writer chose it (to find it after a lost answer)

    def stored(self, seq: int, created_ms: int) -> Message:
        """The stored message, with its id (a fresh one unless chosen)."""
        return Message(
            id=self.message_id or new_id(),
            conversation_id=self.conversation_id,
            seq=seq,
            sender_type=self.sender_type,
            sender_id=self.sender_id,
            content=self.content,
            private=self.private,
            client_msg_id=self.client_msg_id,
            created_ms=created_ms,
        )


def _values(m: Message) -> tuple[Any, ...]:
    return (m.id, m.conversation_id, m.seq, m.sender_type, m.sender_id, m.content, 1 if m.private else 0,
            m.client_msg_id, m.created_ms)


@functools.lru_cache(maxsize=4096)  # a customer's guard is the same for every message: built once
def _guard_sql(guard: Guard, conversations: str, messages: str, seq_index: str) -> tuple[str, tuple[Any, ...]]:
    """The condition without the conversation's id, which an AI-message check takes last.

    That check runs inside the UPDATE, so InnoDB reads it with shared next-key locks. It names the
    conversation (not `conversations.id`) and reads the (conversation_id, seq) index from the seq on: a
    range of this conversation's newest messages, whose locks end in the gap its own next message goes
    into. Read from the conversation's first message (what a correlated subquery does), they took the gap
    before it too, where the conversation before it in the index writes its next message: two lanes of
    the writer (chat.store.writer) then deadlocked."""
    parts = [(f"{column} {op} %s", value) for column, op, value in (
        ("state", "=", guard.state), ("version", "=", guard.version), ("agent_id", "=", guard.agent_id),
        ("state", "<>", guard.not_state)) if value is not None]
    if guard.no_ai_after is not None:
        parts.append((f"NOT EXISTS (SELECT 1 FROM {messages}{seq_index} WHERE {messages}.seq > %s "
                      f"AND {messages}.sender_type = 'ai' AND {messages}.conversation_id = %s)", guard.no_ai_after))
    return " AND ".join(p for p, _ in parts) or "1 = 1", tuple(v for _, v in parts)


def _guard_cases(ids: list[str], guards: dict[str, list[tuple[str, tuple[Any, ...]]]]) -> tuple[str, list[Any]]:
    """` AND CASE id WHEN ... THEN (its guards) ... END` for the guarded conversations of a batch."""
    if not guards:
        return "", []
    sql, params = [], []
    for cid in ids:
        conditions = guards.get(cid)
        if conditions:
            sql.append(f"WHEN %s THEN ({' AND '.join(c for c, _ in conditions)})")
            params += [cid, *(v for _, values in conditions for v in values)]
    return f" AND CASE id {' '.join(sql)} ELSE 1 END", params


class Messages:
    """Every SQL statement on messages."""

    def __init__(self, db: Database, webhooks: Webhooks):
        self.db = db
        self._webhooks = webhooks
        self._t = db.tables.messages
        self._c = c = db.tables.conversations
        self._insert_sql = f"INSERT INTO {self._t} ({MESSAGE_COLUMNS}) VALUES ({marks(MESSAGE_COLUMNS.split(','))})"
        self._seq_sql = f"SELECT last_seq FROM {c} WHERE id = %s"
        # MySQL hands the new value back through LAST_INSERT_ID(expr): no SELECT round trip
        bump = "LAST_INSERT_ID(last_seq + 1)" if db.dialect == "mysql" else "last_seq + 1"
        self._bump_sql = f"UPDATE {c} SET last_seq = {bump}, updated_ms = %s WHERE id = %s"
        # the UNIQUE (conversation_id, seq) index (schema.py), by the name MySQL gives it: see _guard_sql
        self._seq_index = " FORCE INDEX (conversation_id)" if db.dialect == "mysql" else ""

    async def find(self, conversation_id: str, sender_type: str, sender_id: str | None,
                   client_msg_id: str) -> Message | None:
        """The message this sender already stored with this client_msg_id, if any."""
        row = await self.db.fetchone(
            f"SELECT {MESSAGE_COLUMNS} FROM {self._t} WHERE conversation_id = %s AND sender_type = %s "
            "AND sender_id = %s AND client_msg_id = %s",
            (conversation_id, sender_type, sender_id, client_msg_id),
        )
        return message_from_row(row) if row else None

    async def append(  # noqa: PLR0913 - the fields of a message and its guard
        self,
        conversation_id: str,
        *,
        sender_type: str,
        content: str,
        sender_id: str | None = None,
        private: bool = False,
        client_msg_id: str | None = None,
        guard: Guard | None = None,
    ) -> tuple[Message, bool]:
        """append_draft with the message's fields."""
        return await self.append_draft(
            NewMessage(conversation_id, sender_type, content, sender_id, private, client_msg_id, guard))

    async def append_draft(self, draft: NewMessage) -> tuple[Message, bool]:
        """Store a message with the next seq; return it and whether it is new.

        A resend (same sender, same client_msg_id) returns the stored message. With a guard the
        write happens only while the mirror row matches it (the row lock taken by the UPDATE keeps
        any transition out until the commit); otherwise StaleVersion and nothing is written.
        """
        # no look-up first: a resend fails on the UNIQUE key, rolls its seq back, and the
        # stored message is read then (one round trip less for every new message)
        try:
            return await self._insert(draft), True
        except DuplicateKey:
            # a resend (or the same message racing in from another socket): the first one stored wins
            if draft.client_msg_id is not None:
                existing = await self.find(draft.conversation_id, draft.sender_type, draft.sender_id,
                                           draft.client_msg_id)
                if existing is not None:
                    return existing, False
            raise

    async def _insert(self, draft: NewMessage) -> Message:
        """One transaction; written again when the database rolled it back whole (InnoDB chose it as a
        deadlock's victim, or a lock wait ran out): nothing of it was written, up to WRITE_TRIES times."""
        tries = 1
        while True:
            created_ms = now_ms()
            try:
                async with self.db.transaction() as tx:
                    seq = await self._next_seq(tx, draft.conversation_id, created_ms, draft.guard)
                    message = draft.stored(seq, created_ms)
                    await self._write(tx, [message])
                return message
            except RolledBack as exc:
                if tries == WRITE_TRIES:
                    raise
                tries += 1
                log.info("a message of %s was rolled back (%s); writing it again", draft.conversation_id, exc)

    async def _write(self, tx: Tx, messages: list[Message]) -> None:
        """Insert the stored messages, the transaction's last statement (sent with its COMMIT), or followed
        by their webhook events when a subscription wants message events."""
        values = [_values(m) for m in messages]
        if self._webhooks.wants_messages():
            await tx.executemany(self._insert_sql, values)
            await self._webhooks.record_message(tx, messages)
        else:
            await tx.executemany_and_commit(self._insert_sql, values)

    async def _next_seq(self, tx: Tx, conversation_id: str, created_ms: int, guard: Guard | None) -> int:
        """Bump last_seq (under the guard) and return it; the row stays locked until the commit."""
        sql = self._bump_sql
        params: tuple[Any, ...] = (created_ms, conversation_id)
        if guard is not None:
            condition, values = guard.sql(self._c, self._t, conversation_id, self._seq_index)
            sql += f" AND {condition}"
            params += values
        if not await tx.execute(sql, params):
            if guard is not None and await tx.fetchone(f"SELECT 1 FROM {self._c} WHERE id = %s", (conversation_id,)):
                raise StaleVersion(conversation_id, guard.version or 0)
            raise ConversationNotFound(conversation_id)
        if self.db.dialect == "mysql":
            return tx.last_insert_id
        row = await tx.fetchone(self._seq_sql, (conversation_id,))
        return int(row[0]) if row else 0

    async def append_batch(self, drafts: list[NewMessage]) -> list[Message]:
        """Store several messages in one transaction (group commit).

        All or nothing: a conversation without a row, a guard that does not hold, or a
        client_msg_id already stored raises and writes nothing; the caller then stores the
        messages one by one (where each meets its own outcome).
        """
        created_ms = now_ms()
        counts: dict[str, int] = {}
        guards: dict[str, list[tuple[str, tuple[Any, ...]]]] = {}
        for draft in drafts:
            counts[draft.conversation_id] = counts.get(draft.conversation_id, 0) + 1
            if draft.guard is not None:
                guards.setdefault(draft.conversation_id, []).append(
                    draft.guard.sql(self._c, self._t, draft.conversation_id, self._seq_index))
        ids = sorted(counts)  # one lock order for every writer: no deadlock between batches
        cases = " ".join(["WHEN %s THEN %s"] * len(ids))
        checks, check_params = _guard_cases(ids, guards)
        async with self.db.transaction() as tx:
            moved, rows = await tx.execute_then_fetchall(
                f"UPDATE {self._c} SET last_seq = last_seq + CASE id {cases} END, updated_ms = %s "
                f"WHERE id IN ({marks(ids)}){checks}",
                [v for cid in ids for v in (cid, counts[cid])] + [created_ms] + ids + check_params,
                f"SELECT id, last_seq FROM {self._c} WHERE id IN ({marks(ids)})", ids)
            if moved != len(ids):
                raise ConversationNotFound("one of a batch")
            next_seq = {cid: int(last) - counts[cid] + 1 for cid, last in rows}
            messages = []
            for draft in drafts:
                messages.append(draft.stored(next_seq[draft.conversation_id], created_ms))
                next_seq[draft.conversation_id] += 1
            await self._write(tx, messages)
        return messages

    async def list_of(self, conversation_id: str, *, after_seq: int = 0, limit: int | None = None,
                      include_private: bool = True) -> list[Message]:
        """Messages with seq > after_seq, oldest first."""
        sql = f"SELECT {MESSAGE_COLUMNS} FROM {self._t} WHERE conversation_id = %s AND seq > %s"
        params: list[Any] = [conversation_id, after_seq]
        if not include_private:
            sql += " AND private = 0"
        sql += " ORDER BY seq"
        if limit is not None:
            sql += " LIMIT %s"
            params.append(int(limit))
        return [message_from_row(r) for r in await self.db.fetchall(sql, params)]

    async def recent(self, conversation_id: str, limit: int) -> list[Message]:
        """The newest `limit` non-private messages, oldest first (the AI's context)."""
        rows = await self.db.fetchall(
            f"SELECT {MESSAGE_COLUMNS} FROM {self._t} WHERE conversation_id = %s AND private = 0 "
            "ORDER BY seq DESC LIMIT %s",
            (conversation_id, int(limit)),
        )
        return [message_from_row(r) for r in reversed(rows)]
