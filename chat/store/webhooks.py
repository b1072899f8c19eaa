"""Webhook subscriptions and their outbox (PROTOCOL 6.1): every SQL statement on webhooks and
webhook_deliveries.

A change that webhooks report calls `record(tx, ...)` inside the transaction that writes the
change, so the outbox row commits or rolls back with it: a crash can neither lose an event nor
invent one. Which event types any subscription wants is cached (`wants`), so with no webhook the
hot paths pay one set look-up and no SQL.

Delivery (chat.webhooks) claims the head of each (subscription, conversation) line: the pending
row of lowest position, when it is due and not leased. The claim is a lease (lease_owner,
lease_ms) taken by a conditional UPDATE, so two instances never hold the same row; on MySQL 8 /
MariaDB 10.6+ the candidates are first locked with `FOR UPDATE SKIP LOCKED` so claimers do not
queue behind each other. A lease outlives the request timeout; an instance that dies holding one
only delays those rows until it runs out.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import orjson

from chat import render
from chat.store.db import Database, Tx, marks
from states.clock import iso_from_ms, now_ms
from states.ids import new_id

EVENT_TYPES = ("message.created", "note.created", "conversation.updated", "sla.breached", "csat.submitted",
               "customer.erased")
PENDING, DELIVERED, FAILED = "pending", "delivered", "failed"
MESSAGE_EVENTS = frozenset({"message.created", "note.created"})  # what a stored message may be announced as
EXCERPT_BYTES = 512  # of a receiver's response body: no more is ever stored
ERROR_CHARS = 255
WEBHOOK_FIELDS = ("id", "url", "events", "created_at")
DELIVERY_FIELDS = ("id", "webhook_id", "event_id", "event_type", "conversation_id", "status", "attempts",
                   "next_attempt_at", "last_attempt_at", "response_status", "response_excerpt", "error",
                   "delivered_at", "created_at")
_DELIVERY_COLUMNS = ("id, webhook_id, event_id, event_type, conversation_id, status, attempts, next_ms, "
                     "last_attempt_ms, response_status, response_excerpt, error, delivered_ms, created_ms")
_MS_FIELDS = {"next_attempt_at", "last_attempt_at", "delivered_at", "created_at"}

Webhook = dict[str, Any]  # WEBHOOK_FIELDS (and `secret` once, at creation)
Delivery = dict[str, Any]  # DELIVERY_FIELDS


@dataclass(frozen=True)
class Claimed:
    """A delivery this instance holds the lease of: where to send what, and with which secret."""

    id: str
    webhook_id: str
    event_id: str
    url: str
    secret: str
    body: bytes
    attempts: int
    window_ms: int
    lease_owner: str  # this claim's token: only its holder may settle the row


@dataclass(frozen=True)
class Subscription:
    """What the cache keeps of an active subscription."""

    id: str
    events: frozenset[str]


def _delivery(row: tuple[Any, ...]) -> Delivery:
    out = dict(zip(DELIVERY_FIELDS, row, strict=True))
    for name in _MS_FIELDS:
        out[name] = iso_from_ms(int(out[name])) if out[name] is not None else None
    if out["status"] != PENDING:
        out["next_attempt_at"] = None
    return out


def _webhook(row: tuple[Any, ...]) -> Webhook:
    return {"id": row[0], "url": row[1], "events": row[2].split(","), "created_at": iso_from_ms(int(row[3]))}


def event_body(event_id: str, event_type: str, created_ms: int, data: dict[str, Any]) -> bytes:
    """The JSON body of a delivery: `{"id", "type", "created_at", "data"}`."""
    return orjson.dumps({"id": event_id, "type": event_type, "created_at": iso_from_ms(created_ms), "data": data})


class Webhooks:
    """Subscriptions, the outbox written in the changes' transactions, and the deliveries' claims."""

    def __init__(self, db: Database):
        self.db = db
        self._t = db.tables.webhooks
        self._d = db.tables.webhook_deliveries
        self._subscriptions: tuple[Subscription, ...] = ()
        self._wanted: frozenset[str] = frozenset()
        self._skip_locked: bool | None = None  # known after the first claim on MySQL

    # --- the cache of who wants what ---------------------------------------------------------

    def wants(self, event_type: str) -> bool:
        """Whether any active subscription wants this event type (no SQL: the cache)."""
        return event_type in self._wanted

    def wants_messages(self) -> bool:
        """Whether any active subscription wants `message.created` or `note.created` (the cache)."""
        return not self._wanted.isdisjoint(MESSAGE_EVENTS)

    async def refresh(self) -> None:
        """Re-read the subscriptions into the cache (at start, after a change here, and every poll)."""
        rows = await self.db.fetchall(f"SELECT id, events FROM {self._t} ORDER BY created_ms, id")
        subscriptions = tuple(Subscription(r[0], frozenset(r[1].split(","))) for r in rows)
        self._subscriptions = subscriptions
        self._wanted = frozenset(t for s in subscriptions for t in s.events)

    # --- the outbox -------------------------------------------------------------------------

    async def record(self, tx: Tx, event_type: str, conversation_id: str | None, data: dict[str, Any], *,
                     lock: bool = False) -> str | None:
        """Queue an event for every subscription that wants it, inside the caller's transaction `tx`
        (the one writing the change); return the event id, or None when nobody wants it.

        The position in the conversation's line is taken while its row is locked: the message and
        transition writers hold that lock already; other callers (a rating, an SLA breach) pass
        `lock=True` so it is taken here. The SLA timers report a breach with
        `record(tx, "sla.breached", conversation_id, data, lock=True)` in the transaction that writes its
        event-log entry (guarded by `wants("sla.breached")` to cost nothing without a subscriber)."""
        targets = [s.id for s in self._subscriptions if event_type in s.events]
        if not targets:
            return None
        created_ms = now_ms()
        event_id = new_id()
        body = event_body(event_id, event_type, created_ms, data).decode()
        line = conversation_id or ""
        if lock and line and self.db.dialect == "mysql":
            await tx.fetchone(f"SELECT id FROM {self.db.tables.conversations} WHERE id = %s FOR UPDATE", (line,))
        # one statement per subscription: the position is read and written in the same round trip; a
        # subscription deleted on another instance since this one's cache was read gets nothing (and breaks
        # no foreign key, which would fail the change the event belongs to)
        await tx.executemany(
            f"INSERT INTO {self._d} (id, webhook_id, event_id, event_type, conversation_id, position, body, status, "
            "attempts, next_ms, window_ms, created_ms) SELECT %s, w.id, %s, %s, %s, "
            f"(SELECT COALESCE(MAX(position), 0) + 1 FROM {self._d} WHERE conversation_id = %s), %s, %s, 0, %s, %s, %s "
            f"FROM {self._t} w WHERE w.id = %s",
            [(new_id(), event_id, event_type, line, line, body, PENDING, created_ms, created_ms, created_ms,
              webhook_id) for webhook_id in targets],
        )
        return event_id

    async def record_message(self, tx: Tx, messages: Iterable[Any]) -> None:
        """`message.created` (or `note.created` for a private note) for each stored message, when wanted."""
        for message in messages:
            event_type = "note.created" if message.private else "message.created"
            if event_type in self._wanted:
                await self.record(tx, event_type, message.conversation_id, render.message(message))

    # --- subscriptions ------------------------------------------------------------------------

    async def create(self, url: str, events: list[str], secret: str | None) -> Webhook:
        """A new subscription; its secret (generated when not given) is in the result, and only there."""
        webhook_id, created_ms = new_id(), now_ms()
        secret = secret or "whsec_" + secrets.token_hex(24)
        wanted = ",".join(t for t in EVENT_TYPES if t in set(events))
        await self.db.execute(
            f"INSERT INTO {self._t} (id, url, events, secret, created_ms) VALUES (%s, %s, %s, %s, %s)",
            (webhook_id, url, wanted, secret, created_ms))
        await self.refresh()
        return {**_webhook((webhook_id, url, wanted, created_ms)), "secret": secret}

    async def all(self) -> list[Webhook]:
        """Every subscription, oldest first (secrets left out)."""
        rows = await self.db.fetchall(f"SELECT id, url, events, created_ms FROM {self._t} ORDER BY created_ms, id")
        return [_webhook(r) for r in rows]

    async def get(self, webhook_id: str) -> Webhook | None:
        """One subscription (secret left out), or None."""
        row = await self.db.fetchone(f"SELECT id, url, events, created_ms FROM {self._t} WHERE id = %s",
                                     (webhook_id,))
        return _webhook(row) if row else None

    async def delete(self, webhook_id: str) -> bool:
        """Remove a subscription and its deliveries; False when there was none."""
        async with self.db.transaction() as tx:
            await tx.execute(f"DELETE FROM {self._d} WHERE webhook_id = %s", (webhook_id,))
            gone = await tx.execute(f"DELETE FROM {self._t} WHERE id = %s", (webhook_id,))
        await self.refresh()
        return bool(gone)

    # --- deliveries ---------------------------------------------------------------------------

    async def deliveries(self, webhook_id: str, *, limit: int, before: tuple[int, str] | None = None,
                         ) -> tuple[list[Delivery], tuple[int, str] | None]:
        """A subscription's deliveries, newest first by (created_ms, id); the next page's position."""
        sql = f"SELECT {_DELIVERY_COLUMNS} FROM {self._d} WHERE webhook_id = %s"
        params: list[Any] = [webhook_id]
        if before is not None:
            sql += " AND (created_ms < %s OR (created_ms = %s AND id < %s))"
            params += [before[0], before[0], before[1]]
        rows = await self.db.fetchall(sql + " ORDER BY created_ms DESC, id DESC LIMIT %s", [*params, limit + 1])
        items = [_delivery(r) for r in rows[:limit]]
        last = rows[limit - 1] if len(rows) > limit else None
        return items, (int(last[13]), str(last[0])) if last is not None else None

    async def delivery(self, webhook_id: str, delivery_id: str) -> Delivery | None:
        """One delivery of a subscription, or None."""
        row = await self.db.fetchone(f"SELECT {_DELIVERY_COLUMNS} FROM {self._d} WHERE webhook_id = %s AND id = %s",
                                     (webhook_id, delivery_id))
        return _delivery(row) if row else None

    async def redeliver(self, webhook_id: str, delivery_id: str) -> bool:
        """Queue a delivered or failed delivery again (same event id and body) at the end of its
        conversation's line, due now, with a fresh 24 h of retries and no attempt yet: the last outcome
        (its time, status, excerpt, error, delivered_at) is cleared until the new attempt ends. False when
        it is not one (gone, or pending: it is on its way already)."""
        now = now_ms()
        async with self.db.transaction() as tx:
            row = await tx.fetchone(f"SELECT conversation_id FROM {self._d} WHERE webhook_id = %s AND id = %s",
                                    (webhook_id, delivery_id))
            if row is None:
                return False
            top = await tx.fetchone(f"SELECT MAX(position) FROM {self._d} WHERE conversation_id = %s", (row[0],))
            return bool(await tx.execute(
                f"UPDATE {self._d} SET status = %s, attempts = 0, next_ms = %s, window_ms = %s, position = %s, "
                "lease_ms = NULL, lease_owner = NULL, last_attempt_ms = NULL, response_status = NULL, "
                "response_excerpt = NULL, error = NULL, delivered_ms = NULL WHERE id = %s AND status <> %s",
                (PENDING, now, now, int(top[0] or 0) + 1 if top else 1, delivery_id, PENDING)))

    async def claim(self, owner: str, now: int, lease_ms: int, limit: int) -> list[Claimed]:
        """Take the leases of up to `limit` due heads of their lines (one per subscription and
        conversation, so a line is delivered in order) until now + lease_ms, under a token made of
        `owner` (the instance) and a fresh suffix."""
        heads = await self.db.fetchall(
            f"SELECT d.id FROM {self._d} d JOIN (SELECT webhook_id, conversation_id, MIN(position) AS head "
            f"FROM {self._d} WHERE status = %s GROUP BY webhook_id, conversation_id) h "
            "ON h.webhook_id = d.webhook_id AND h.conversation_id = d.conversation_id AND h.head = d.position "
            "WHERE d.status = %s AND d.next_ms <= %s AND (d.lease_ms IS NULL OR d.lease_ms < %s) "
            "ORDER BY d.next_ms, d.id LIMIT %s",
            (PENDING, PENDING, now, now, int(limit) * 4))  # more than taken: a concurrent claimer took some
        candidates = [r[0] for r in heads]
        if not candidates:
            return []
        owner = f"{owner[:40]}/{uuid.uuid4().hex[:16]}"  # one token per claim
        free = "status = %s AND (lease_ms IS NULL OR lease_ms < %s)"
        async with self.db.transaction() as tx:
            # rows another claimer is locking right now are passed over, not waited for
            skip = " FOR UPDATE SKIP LOCKED" if await self._uses_skip_locked(tx) else ""
            chosen = await tx.fetchall(
                f"SELECT id FROM {self._d} WHERE id IN ({marks(candidates)}) AND {free} ORDER BY next_ms, id "
                f"LIMIT %s{skip}", [*candidates, PENDING, now, int(limit)])
            ids = [r[0] for r in chosen]
            if not ids:
                return []
            # the lease itself is what keeps two claimers apart (SKIP LOCKED or not)
            await tx.execute(
                f"UPDATE {self._d} SET lease_owner = %s, lease_ms = %s WHERE id IN ({marks(ids)}) AND {free}",
                [owner, now + lease_ms, *ids, PENDING, now])
        rows = await self.db.fetchall(
            f"SELECT d.id, d.webhook_id, d.event_id, w.url, w.secret, d.body, d.attempts, d.window_ms "
            f"FROM {self._d} d JOIN {self._t} w ON w.id = d.webhook_id "
            f"WHERE d.id IN ({marks(ids)}) AND d.lease_owner = %s AND d.status = %s",
            [*ids, owner, PENDING])
        return [Claimed(r[0], r[1], r[2], r[3], r[4], r[5].encode() if isinstance(r[5], str) else bytes(r[5]),
                        int(r[6]), int(r[7]), owner) for r in rows]

    async def _uses_skip_locked(self, tx: Tx) -> bool:
        if self.db.dialect != "mysql":
            return False  # SQLite: one writer at a time, the conditional UPDATE alone decides
        if self._skip_locked is None:
            row = await tx.fetchone("SELECT VERSION()")
            self._skip_locked = skip_locked_supported(str(row[0]) if row else "")
        return self._skip_locked

    async def settle(self, claimed: Claimed, *, status: str, at_ms: int, next_ms: int | None,
                     response_status: int | None, excerpt: str | None, error: str | None) -> None:
        """Record an attempt's outcome and give the lease back (only while this owner holds it)."""
        await self.db.execute(
            f"UPDATE {self._d} SET status = %s, attempts = attempts + 1, next_ms = %s, last_attempt_ms = %s, "
            "response_status = %s, response_excerpt = %s, error = %s, delivered_ms = %s, lease_ms = NULL, "
            "lease_owner = NULL WHERE id = %s AND lease_owner = %s",
            (status, next_ms if next_ms is not None else at_ms, at_ms, response_status, excerpt,
             error[:ERROR_CHARS] if error else None, at_ms if status == DELIVERED else None, claimed.id,
             claimed.lease_owner))

    async def prune(self, before_ms: int, limit: int = 1000) -> int:
        """Delete up to `limit` delivered or failed deliveries settled before `before_ms`; how many."""
        rows = await self.db.fetchall(
            f"SELECT id FROM {self._d} WHERE status <> %s AND last_attempt_ms < %s LIMIT %s",
            (PENDING, before_ms, int(limit)))
        if not rows:
            return 0
        ids = [r[0] for r in rows]
        return await self.db.execute(f"DELETE FROM {self._d} WHERE id IN ({marks(ids)}) AND status <> %s",
                                     [*ids, PENDING])

    async def backlog(self) -> int:
        """How many deliveries are pending."""
        row = await self.db.fetchone(f"SELECT COUNT(*) FROM {self._d} WHERE status = %s", (PENDING,))
        return int(row[0]) if row else 0


def skip_locked_supported(version: str) -> bool:
    """`SELECT ... FOR UPDATE SKIP LOCKED`: MySQL 8.0.1+, MariaDB 10.6+."""
    numbers = version.split("-")[0].split(".")
    try:
        major, minor = int(numbers[0]), int(numbers[1]) if len(numbers) > 1 else 0
    except ValueError:
        return False
    if "mariadb" in version.lower():
        return (major, minor) >= (10, 6)
    return major >= 8
