"""Erasure and retention (PROTOCOL 6): every SQL statement that removes a customer's words.

What goes: message contents (and client_msg_ids), conversation metadata, rating comments, the
reasons in the event log, the customer's contact rows and its `users` row, and the outbox bodies
(and response excerpts) about those conversations. What stays so statistics survive: the rows
themselves with their counts, states, senders' types, times and the event log, with the customer's
id replaced by an anonymous one. Each conversation is scrubbed in its own transaction under its row
lock, and the erasure is written to its event log there (trigger `erase`, to_state `erased`, a
marker no statistic counts); a rerun finds nothing left and changes nothing.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from chat.store.db import Database, Tx
from chat.store.webhooks import Webhooks, event_body
from states.clock import now_ms
from states.ids import new_id

ERASED_TEXT = ""  # what a message's content becomes (the column is NOT NULL)
ERASE_TRIGGER = "erase"
ERASED_STATE = "erased"  # the log entry's to_state: a marker, not a state of the machine


@dataclass(frozen=True)
class Erased:
    """What one erasure did."""

    user_id: str
    anonymous_id: str
    conversation_ids: list[str]
    contacts: int


def anonymous_id() -> str:
    """A fresh id that stands for an erased customer (nothing links it to the old one)."""
    return f"erased-{uuid.uuid4().hex[:20]}"


class Erasure:
    """The erasure of a customer and the retention purge of old closed conversations."""

    def __init__(self, db: Database, webhooks: Webhooks):
        self.db = db
        self.webhooks = webhooks
        self._t = db.tables

    async def conversations_of(self, user_id: str) -> list[str]:
        """The ids of a customer's conversations."""
        rows = await self.db.fetchall(f"SELECT id FROM {self._t.conversations} WHERE user_id = %s ORDER BY created_ms",
                                      (user_id,))
        return [r[0] for r in rows]

    async def erase_customer(self, user_id: str, *, actor_type: str, actor_id: str | None) -> Erased:
        """Scrub every conversation of `user_id`, drop its contacts and users row, and queue
        `customer.erased`; idempotent (a second call finds no conversation and no contact)."""
        anonymous = anonymous_id()
        conversation_ids = await self.conversations_of(user_id)
        for conversation_id in conversation_ids:
            async with self.db.transaction() as tx:
                await self._scrub(tx, conversation_id, user_id=user_id, anonymous=anonymous,
                                  log=(actor_type, actor_id))
        async with self.db.transaction() as tx:
            contacts = await tx.execute(f"DELETE FROM {self._t.customer_contacts} WHERE user_id = %s", (user_id,))
            await tx.execute(f"DELETE FROM {self._t.users} WHERE id = %s AND role = %s", (user_id, "customer"))
            if conversation_ids or contacts:
                await tx.execute(f"UPDATE {self._t.csat_responses} SET user_id = %s, comment = NULL WHERE user_id = %s",
                                 (anonymous, user_id))
                if self.webhooks.wants("customer.erased"):
                    await self.webhooks.record(tx, "customer.erased", None, {
                        "user_id": user_id, "conversation_ids": conversation_ids})
        return Erased(user_id, anonymous, conversation_ids, contacts)

    async def purge_closed_before(self, cutoff_ms: int, *, limit: int) -> list[str]:
        """Scrub the contents of up to `limit` conversations closed (last changed) before cutoff_ms and
        not purged since; the ids done (empty: nothing left)."""
        rows = await self.db.fetchall(
            f"SELECT c.id FROM {self._t.conversations} c LEFT JOIN {self._t.conversation_purges} p "
            "ON p.conversation_id = c.id WHERE c.state = %s AND c.updated_ms < %s "
            "AND (p.purged_ms IS NULL OR p.purged_ms < c.updated_ms) ORDER BY c.updated_ms, c.id LIMIT %s",
            ("closed", cutoff_ms, int(limit)))
        done = []
        for (conversation_id,) in rows:
            async with self.db.transaction() as tx:
                if await self._scrub(tx, conversation_id, user_id=None, anonymous=None, log=None,
                                     closed_before=cutoff_ms):
                    done.append(conversation_id)
        return done

    async def _scrub(self, tx: Tx, conversation_id: str, *, user_id: str | None, anonymous: str | None,
                     log: tuple[str, str | None] | None, closed_before: int | None = None) -> bool:
        """Remove the words of one conversation (and, erasing a customer, its id); `log`: the actor of an
        erasure to record in the event log; `closed_before` (retention): only while it is still closed since
        before then, checked under the row lock (a customer may have reopened it since it was picked).
        False when there was nothing to scrub."""
        t, now = self._t, now_ms()
        row = await tx.fetchone(f"SELECT state, version, agent_id, team_id, updated_ms FROM {t.conversations} "
                                "WHERE id = %s " + ("FOR UPDATE" if self.db.dialect == "mysql" else ""),
                                (conversation_id,))
        if row is None:
            return False
        state, version, agent_id, team_id = row[0], int(row[1]), row[2], row[3]
        if closed_before is not None and (state != "closed" or int(row[4]) >= closed_before):
            return False
        await tx.execute(f"UPDATE {t.messages} SET content = %s, client_msg_id = NULL WHERE conversation_id = %s",
                         (ERASED_TEXT, conversation_id))
        # the reasons people wrote go; the service's own (an idle close's `inactivity`) stay for the statistics
        await tx.execute(f"UPDATE {t.conversation_events} SET reason = NULL WHERE conversation_id = %s "
                         "AND actor_type <> %s", (conversation_id, "system"))
        await tx.execute(f"UPDATE {t.csat_responses} SET comment = NULL WHERE conversation_id = %s", (conversation_id,))
        await self._scrub_outbox(tx, conversation_id)
        await tx.execute(f"DELETE FROM {t.conversation_purges} WHERE conversation_id = %s", (conversation_id,))
        await tx.execute(f"INSERT INTO {t.conversation_purges} (conversation_id, purged_ms) VALUES (%s, %s)",
                         (conversation_id, now))
        if anonymous is None:
            await tx.execute(f"UPDATE {t.conversations} SET metadata = NULL WHERE id = %s", (conversation_id,))
            return True
        await tx.execute(f"UPDATE {t.messages} SET sender_id = %s WHERE conversation_id = %s AND sender_id = %s",
                         (anonymous, conversation_id, user_id))
        await tx.execute(f"UPDATE {t.conversation_events} SET actor_id = %s WHERE conversation_id = %s "
                         "AND actor_id = %s", (anonymous, conversation_id, user_id))
        await tx.execute(f"UPDATE {t.csat_responses} SET user_id = %s WHERE conversation_id = %s",
                         (anonymous, conversation_id))
        # the erasure takes the next version, so its log entry has a place in the conversation's history
        await tx.execute(f"UPDATE {t.conversations} SET metadata = NULL, user_id = %s, version = %s WHERE id = %s",
                         (anonymous, version + 1, conversation_id))
        actor_type, actor_id = log or ("system", None)
        await tx.execute(
            f"INSERT INTO {t.conversation_events} (id, conversation_id, version, trigger_name, from_state, to_state, "
            "actor_type, actor_id, reason, agent_id, team_id, created_ms) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            (new_id(), conversation_id, version + 1, ERASE_TRIGGER, state, ERASED_STATE, actor_type,
             actor_id, "customer erased", agent_id, team_id, now))
        return True

    async def _scrub_outbox(self, tx: Tx, conversation_id: str) -> None:
        """Outbox rows about the conversation keep their event id and type; their data becomes a notice."""
        d = self._t.webhook_deliveries
        rows = await tx.fetchall(f"SELECT DISTINCT event_id, event_type, created_ms FROM {d} "
                                 "WHERE conversation_id = %s", (conversation_id,))
        for event_id, event_type, created_ms in rows:
            body = event_body(event_id, event_type, int(created_ms), {"conversation_id": conversation_id,
                                                                      "erased": True})
            await tx.execute(f"UPDATE {d} SET body = %s, response_excerpt = NULL WHERE event_id = %s",
                             (body.decode(), event_id))

