"""Domain queries over either backend: conversations, messages with gap-free seq, the log."""

from __future__ import annotations

import uuid
import warnings
from contextlib import asynccontextmanager
from typing import AsyncIterator

import orjson

from chat.store.db import Database, DuplicateKey, Tx
from chat.store.models import (
    EVENT_COLUMNS,
    MESSAGE_COLUMNS,
    Message,
    TransitionEvent,
    event_from_row,
    message_from_row,
)
from chat.store.schema import MIGRATIONS, MYSQL_TABLE_OPTIONS, SCHEMA_VERSION_TABLE, render
from states.clock import iso_from_ms, ms_from_iso, now_ms
from states.errors import ConversationNotFound, StaleVersion
from states.record import Conversation
from states.repository import Transition

CONVERSATION_COLUMNS = (
    "id, user_id, state, agent_type, agent_id, team_id, version, last_seq, metadata, handoff_ms, "
    "created_ms, updated_ms"
)


def _ms_or_none(iso: str | None) -> int | None:
    return ms_from_iso(iso) if iso else None


class Store:
    """Every SQL the service runs, behind methods named for what they do."""

    def __init__(self, db: Database):
        self.db = db

    # --- schema ----------------------------------------------------------------------------

    async def upgrade(self) -> list[int]:
        """Create or upgrade the schema; return the versions applied (none when current)."""
        options = f" {MYSQL_TABLE_OPTIONS}" if self.db.dialect == "mysql" else ""
        with warnings.catch_warnings():  # MySQL warns "already exists" on every later run
            warnings.simplefilter("ignore")
            await self.db.execute(SCHEMA_VERSION_TABLE + options)
        row = await self.db.fetchone("SELECT MAX(version) FROM schema_version")
        current = int(row[0] or 0) if row else 0
        applied = []
        for version, tables in MIGRATIONS:
            if version <= current:
                continue
            for table in tables:
                for statement in render(table, self.db.dialect):
                    await self.db.execute(statement)
            try:
                await self.db.execute(
                    "INSERT INTO schema_version (version, applied_ms) VALUES (%s, %s)", (version, now_ms())
                )
            except DuplicateKey:  # another instance upgraded at the same moment
                continue
            applied.append(version)
        return applied

    async def schema_version(self) -> int:
        """The applied schema version (0 before the first upgrade)."""
        row = await self.db.fetchone("SELECT MAX(version) FROM schema_version")
        return int(row[0] or 0) if row else 0

    # --- conversations (the TransitionLog side of states.repository) ----------------------

    @staticmethod
    def _conversation_values(c: Conversation) -> tuple:
        return (
            c.id,
            c.user_id,
            c.state,
            c.agent_type,
            c.agent_id,
            c.team_id,
            c.version,
            0,
            orjson.dumps(c.metadata).decode(),
            # a migrated record in handoff has no handoff_at: it has waited since its last update
            _ms_or_none(c.handoff_at or (c.updated_at if c.state == "handoff" else None)),
            ms_from_iso(c.created_at),
            ms_from_iso(c.updated_at),
        )

    async def _insert_conversation(self, tx: Tx, conversation: Conversation) -> None:
        await tx.execute(
            f"INSERT INTO conversations ({CONVERSATION_COLUMNS}) VALUES "
            "(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            self._conversation_values(conversation),
        )

    async def create_conversation(self, conversation: Conversation) -> None:
        """Insert the mirror row of a new conversation."""
        async with self.db.transaction() as tx:
            await self._insert_conversation(tx, conversation)

    async def ensure_conversation(self, conversation: Conversation) -> None:
        """Give a migrated record its SQL row the first time it is touched."""
        try:
            await self.create_conversation(conversation)
        except DuplicateKey:
            pass

    @asynccontextmanager
    async def record_transition(self, transition: Transition) -> AsyncIterator[None]:
        """Check and move the mirror row, append the log entry; commit when the block succeeds."""
        before, after = transition.before, transition.after
        async with self.db.transaction() as tx:
            moved = await tx.execute(
                "UPDATE conversations SET state = %s, agent_type = %s, agent_id = %s, team_id = %s, "
                "version = %s, handoff_ms = %s, updated_ms = %s WHERE id = %s AND version = %s",
                (
                    after.state,
                    after.agent_type,
                    after.agent_id,
                    after.team_id,
                    after.version,
                    _ms_or_none(after.handoff_at),
                    transition.at_ms,
                    after.id,
                    before.version,
                ),
            )
            if not moved:
                exists = await tx.fetchone("SELECT version FROM conversations WHERE id = %s", (after.id,))
                if exists is not None:
                    raise StaleVersion(after.id, before.version)
                # a migrated record touched for the first time: its row is born already moved
                try:
                    await self._insert_conversation(tx, after)
                except DuplicateKey:
                    raise StaleVersion(after.id, before.version) from None
            try:
                await tx.execute(
                    f"INSERT INTO conversation_events ({EVENT_COLUMNS}) VALUES "
                    "(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                    (
                        transition.id,
                        after.id,
                        after.version,
                        transition.trigger,
                        before.state,
                        after.state,
                        transition.actor.type,
                        transition.actor.id,
                        (transition.reason or None) and transition.reason[:255],
                        after.agent_id,
                        after.team_id,
                        transition.at_ms,
                    ),
                )
            except DuplicateKey:
                raise StaleVersion(after.id, before.version) from None
            yield

    async def load_conversation(self, conversation_id: str) -> Conversation | None:
        """Rebuild the live record from the mirror row (context is not kept in SQL)."""
        row = await self.db.fetchone(
            f"SELECT {CONVERSATION_COLUMNS} FROM conversations WHERE id = %s", (conversation_id,)
        )
        if row is None:
            return None
        return Conversation(
            id=row[0],
            user_id=row[1],
            state=row[2],
            agent_type=row[3],
            agent_id=row[4],
            team_id=row[5],
            version=int(row[6]),
            metadata=orjson.loads(row[8]) if row[8] else {},
            handoff_at=iso_from_ms(int(row[9])) if row[9] is not None else None,
            created_at=iso_from_ms(int(row[10])),
            updated_at=iso_from_ms(int(row[11])),
        )

    async def list_events(self, conversation_id: str) -> list[TransitionEvent]:
        """The transition log of a conversation, oldest first."""
        rows = await self.db.fetchall(
            f"SELECT {EVENT_COLUMNS} FROM conversation_events WHERE conversation_id = %s ORDER BY version",
            (conversation_id,),
        )
        return [event_from_row(r) for r in rows]

    # --- messages --------------------------------------------------------------------------

    async def find_message(self, conversation_id: str, sender_type: str, sender_id: str | None,
                           client_msg_id: str) -> Message | None:
        """The message this sender already stored with this client_msg_id, if any."""
        row = await self.db.fetchone(
            f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE conversation_id = %s AND sender_type = %s "
            "AND sender_id = %s AND client_msg_id = %s",
            (conversation_id, sender_type, sender_id, client_msg_id),
        )
        return message_from_row(row) if row else None

    async def append_message(
        self,
        conversation_id: str,
        *,
        sender_type: str,
        content: str,
        sender_id: str | None = None,
        private: bool = False,
        client_msg_id: str | None = None,
        require_state: str | None = None,
        require_version: int | None = None,
    ) -> tuple[Message, bool]:
        """Store a message with the next seq; return it and whether it is new.

        A resend (same sender, same client_msg_id) returns the stored message. With require_state and
        require_version the write happens only while the mirror row still has them (the row
        lock taken by the UPDATE keeps any transition out until the commit); otherwise
        StaleVersion and nothing is written.
        """
        # no look-up first: a resend fails on the UNIQUE key, rolls its seq back, and the
        # stored message is read then (one round trip less for every new message)
        created_ms = now_ms()
        message_id = str(uuid.uuid4())
        mysql = self.db.dialect == "mysql"
        # MySQL hands the new value back through LAST_INSERT_ID(expr): no SELECT round trip
        bump = "LAST_INSERT_ID(last_seq + 1)" if mysql else "last_seq + 1"
        sql = f"UPDATE conversations SET last_seq = {bump}, updated_ms = %s WHERE id = %s"
        params: tuple = (created_ms, conversation_id)
        if require_state is not None:
            sql += " AND state = %s AND version = %s"
            params += (require_state, require_version)
        try:
            async with self.db.transaction() as tx:
                if not await tx.execute(sql, params):
                    if require_state is not None and await tx.fetchone(
                        "SELECT 1 FROM conversations WHERE id = %s", (conversation_id,)
                    ):
                        raise StaleVersion(conversation_id, require_version or 0)
                    raise ConversationNotFound(conversation_id)
                if mysql:
                    seq = tx.last_insert_id
                else:
                    row = await tx.fetchone("SELECT last_seq FROM conversations WHERE id = %s", (conversation_id,))
                    seq = int(row[0])
                message = Message(
                    id=message_id,
                    conversation_id=conversation_id,
                    seq=seq,
                    sender_type=sender_type,
                    sender_id=sender_id,
                    content=content,
                    private=private,
                    client_msg_id=client_msg_id,
                    created_ms=created_ms,
                )
                await tx.execute(
                    f"INSERT INTO messages ({MESSAGE_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
                    (
                        message.id,
                        conversation_id,
                        message.seq,
                        sender_type,
                        sender_id,
                        content,
                        1 if private else 0,
                        client_msg_id,
                        created_ms,
                    ),
                )
        except DuplicateKey:
            # a resend (or the same message racing in from another socket): the first one stored wins
            if client_msg_id is not None:
                existing = await self.find_message(conversation_id, sender_type, sender_id, client_msg_id)
                if existing is not None:
                    return existing, False
            raise
        return message, True

    async def list_messages(
        self,
        conversation_id: str,
        *,
        after_seq: int = 0,
        limit: int | None = None,
        include_private: bool = True,
    ) -> list[Message]:
        """Messages with seq > after_seq, oldest first."""
        sql = f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE conversation_id = %s AND seq > %s"
        params: list = [conversation_id, after_seq]
        if not include_private:
            sql += " AND private = 0"
        sql += " ORDER BY seq"
        if limit is not None:
            sql += " LIMIT %s"
            params.append(int(limit))
        return [message_from_row(r) for r in await self.db.fetchall(sql, params)]

    async def recent_messages(self, conversation_id: str, limit: int) -> list[Message]:
        """The newest `limit` non-private messages, oldest first (the AI's context)."""
        rows = await self.db.fetchall(
            f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE conversation_id = %s AND private = 0 "
            "ORDER BY seq DESC LIMIT %s",
            (conversation_id, int(limit)),
        )
        return [message_from_row(r) for r in reversed(rows)]

    # --- what a conversation object (C) needs from SQL ------------------------------------

    async def conversation_extras(self, conversation_id: str) -> tuple[int, list[str]]:
        """(last_seq, label titles) of a conversation; (0, []) before its row exists."""
        row = await self.db.fetchone("SELECT last_seq FROM conversations WHERE id = %s", (conversation_id,))
        if row is None:
            return 0, []
        labels = await self.db.fetchall(
            "SELECT l.title FROM conversation_labels cl JOIN labels l ON l.id = cl.label_id "
            "WHERE cl.conversation_id = %s ORDER BY l.title",
            (conversation_id,),
        )
        return int(row[0]), [r[0] for r in labels]

    async def team_exists(self, team_id: str) -> bool:
        """Is there a team with this id?"""
        return await self.db.fetchone("SELECT 1 FROM teams WHERE id = %s", (team_id,)) is not None

    # --- users and labels ------------------------------------------------------------------

    async def remember_user(self, user_id: str, role: str, name: str | None) -> None:
        """Record (or refresh) a token holder in `users` (agents must exist to be assigned)."""
        now = now_ms()
        try:
            async with self.db.transaction() as tx:
                await tx.execute(
                    "INSERT INTO users (id, role, name, active, created_ms, updated_ms) VALUES (%s, %s, %s, 1, %s, %s)",
                    (user_id, role, name, now, now),
                )
        except DuplicateKey:
            await self.db.execute(
                "UPDATE users SET role = %s, name = COALESCE(%s, name), updated_ms = %s WHERE id = %s",
                (role, name, now, user_id),
            )

    async def agent_exists(self, agent_id: str) -> bool:
        """Is there an active agent (or admin) with this id?"""
        row = await self.db.fetchone(
            "SELECT 1 FROM users WHERE id = %s AND role IN ('agent', 'admin') AND active = 1", (agent_id,)
        )
        return row is not None

    async def set_labels(self, conversation_id: str, titles: list[str]) -> list[str]:
        """Replace a conversation's labels by title; return the titles not found (nothing changed then)."""
        wanted = sorted(set(titles))
        found: dict[str, str] = {}
        if wanted:
            marks = ", ".join(["%s"] * len(wanted))
            rows = await self.db.fetchall(f"SELECT id, title FROM labels WHERE title IN ({marks})", wanted)
            found = {title: label_id for label_id, title in rows}
        missing = [t for t in wanted if t not in found]
        if missing:
            return missing
        async with self.db.transaction() as tx:
            await tx.execute("DELETE FROM conversation_labels WHERE conversation_id = %s", (conversation_id,))
            await tx.executemany(
                "INSERT INTO conversation_labels (conversation_id, label_id) VALUES (%s, %s)",
                [(conversation_id, found[t]) for t in wanted],
            )
            await tx.execute("UPDATE conversations SET updated_ms = %s WHERE id = %s", (now_ms(), conversation_id))
        return []

    async def teams_of(self, user_id: str) -> list[str]:
        """The teams a user is a member of (team_members)."""
        rows = await self.db.fetchall("SELECT team_id FROM team_members WHERE user_id = %s", (user_id,))
        return [r[0] for r in rows]

    async def max_chats_of(self, user_id: str) -> int | None:
        """A user's own capacity, when one is set."""
        row = await self.db.fetchone("SELECT max_chats FROM users WHERE id = %s", (user_id,))
        return int(row[0]) if row and row[0] is not None else None

    async def handoff_queue(self, team_id: str | None = None, *, any_team: bool = True,
                            limit: int = 200) -> list[tuple[str, str | None, int]]:
        """Unassigned conversations in handoff, longest waiting first: (id, team_id, handoff_ms)."""
        sql = "SELECT id, team_id, handoff_ms FROM conversations WHERE state = 'handoff'"
        params: list = []
        if team_id is not None:
            sql += " AND team_id = %s"
            params.append(team_id)
        elif not any_team:
            sql += " AND team_id IS NULL"
        sql += " ORDER BY handoff_ms, id LIMIT %s"
        params.append(int(limit))
        return [(r[0], r[1], int(r[2] or 0)) for r in await self.db.fetchall(sql, params)]

    async def waiting_since(self, cutoff_ms: int, limit: int = 200) -> list[str]:
        """Conversations in handoff since before cutoff_ms."""
        rows = await self.db.fetchall(
            "SELECT id FROM conversations WHERE state = 'handoff' AND handoff_ms < %s ORDER BY handoff_ms LIMIT %s",
            (cutoff_ms, int(limit)),
        )
        return [r[0] for r in rows]

    async def list_staff(self) -> list[tuple[str, str, bool, int | None]]:
        """Every agent and admin known to the service: (id, role, active, max_chats)."""
        rows = await self.db.fetchall(
            "SELECT id, role, active, max_chats FROM users WHERE role IN ('agent', 'admin') ORDER BY id"
        )
        return [(r[0], r[1], bool(r[2]), int(r[3]) if r[3] is not None else None) for r in rows]

    async def existing_conversations(self, ids: list[str]) -> set[str]:
        """Which of these conversation ids have a SQL row."""
        if not ids:
            return set()
        marks = ", ".join(["%s"] * len(ids))
        rows = await self.db.fetchall(f"SELECT id FROM conversations WHERE id IN ({marks})", ids)
        return {r[0] for r in rows}

    async def append_batch(self, items: list[dict]) -> list[Message]:
        """Store several unguarded messages in one transaction (group commit).

        `items` are append_message keyword sets (conversation_id included). All or nothing:
        a conversation without a row, or a client_msg_id already stored, raises and writes
        nothing; the caller then stores the items one by one.
        """
        created_ms = now_ms()
        counts: dict[str, int] = {}
        for item in items:
            counts[item["conversation_id"]] = counts.get(item["conversation_id"], 0) + 1
        ids = sorted(counts)  # one lock order for every writer: no deadlock between batches
        marks = ", ".join(["%s"] * len(ids))
        cases = " ".join(["WHEN %s THEN %s"] * len(ids))
        async with self.db.transaction() as tx:
            moved = await tx.execute(
                f"UPDATE conversations SET last_seq = last_seq + CASE id {cases} END, updated_ms = %s "
                f"WHERE id IN ({marks})",
                [v for cid in ids for v in (cid, counts[cid])] + [created_ms] + ids,
            )
            if moved != len(ids):
                raise ConversationNotFound("one of a batch")
            rows = await tx.fetchall(f"SELECT id, last_seq FROM conversations WHERE id IN ({marks})", ids)
            next_seq = {cid: int(last) - counts[cid] + 1 for cid, last in rows}
            messages = []
            for item in items:
                cid = item["conversation_id"]
                messages.append(
                    Message(
                        id=str(uuid.uuid4()),
                        conversation_id=cid,
                        seq=next_seq[cid],
                        sender_type=item["sender_type"],
                        sender_id=item.get("sender_id"),
                        content=item["content"],
                        private=bool(item.get("private", False)),
                        client_msg_id=item.get("client_msg_id"),
                        created_ms=created_ms,
                    )
                )
                next_seq[cid] += 1
            await tx.executemany(
                f"INSERT INTO messages ({MESSAGE_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
                [
                    (m.id, m.conversation_id, m.seq, m.sender_type, m.sender_id, m.content, 1 if m.private else 0,
                     m.client_msg_id, m.created_ms)
                    for m in messages
                ],
            )
        return messages
