"""Erasure of a customer and the retention purge (PROTOCOL 6): the SQL side (chat.store.erasure)
and the live records in Redis, which hold the conversations' metadata and AI context.

The SQL is scrubbed first and the Redis keys deleted after: a record read back in between is
rebuilt from the scrubbed rows the next time it is missing.
"""

from __future__ import annotations

import logging
from typing import Any

from chat.bus import Interest
from chat.store import Store
from chat.store.erasure import Erased
from states import redis_keys
from states.clock import now_ms

log = logging.getLogger(__name__)

DAY_MS = 24 * 3600 * 1000
PURGE_BATCH = 200
RETENTION_CHECK_S = 3600.0  # each instance purges at start and hourly (when RETENTION_DAYS is set)


class Eraser:
    """Erases customers on request and purges old closed conversations."""

    def __init__(self, store: Store, redis: Any, interest: Interest, *, retention_days: int):
        self.store = store
        self.redis = redis
        self.interest = interest
        self.retention_days = retention_days

    async def erase(self, user_id: str, *, actor_type: str, actor_id: str | None) -> Erased:
        """Erase a customer everywhere; idempotent."""
        erased = await self.store.erasure.erase_customer(user_id, actor_type=actor_type, actor_id=actor_id)
        await self._forget(erased.conversation_ids)
        await self.redis.delete(redis_keys.conversation_starts(user_id))
        log.info("customer erased: %d conversation(s), %d contact(s)", len(erased.conversation_ids), erased.contacts)
        return erased

    async def _forget(self, conversation_ids: list[str]) -> None:
        """Delete the live keys of these conversations (one command per key: a cluster spreads them)."""
        for conversation_id in conversation_ids:
            for key in (redis_keys.session(conversation_id), redis_keys.ai_turn(conversation_id),
                        redis_keys.ai_stream(self.interest.conversation(conversation_id))):
                await self.redis.delete(key)

    async def purge(self, at_ms: int | None = None) -> int:
        """Scrub every conversation closed more than RETENTION_DAYS ago, in batches, logging progress;
        how many were scrubbed (0 when retention is off)."""
        if self.retention_days <= 0:
            return 0
        cutoff = (at_ms if at_ms is not None else now_ms()) - self.retention_days * DAY_MS
        total = 0
        while done := await self.store.erasure.purge_closed_before(cutoff, limit=PURGE_BATCH):
            await self._forget(done)
            total += len(done)
            log.info("retention: %d conversation(s) closed over %d day(s) ago purged so far", total,
                     self.retention_days)
        return total
