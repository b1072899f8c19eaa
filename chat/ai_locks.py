"""The AI turns' locks (chat.ai_turn): one turn at a time per conversation, across instances.

A turn holds `ai:turn:{id}` (`AI_TURN_LOCK_S`), renewed every third of that while any is held here, so
the lock of a crashed instance soon runs out; one that ran out or was taken is reported, and its turn
stops. A lock is released only by the turn that holds it (its token).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable

from redis.asyncio import Redis

from chat.errors import log_failure
from states import redis_keys

log = logging.getLogger(__name__)

# Release the turn lock only if this turn still holds it.
UNLOCK_SCRIPT = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

# Extend a turn lock this instance still holds (KEYS[1] with token ARGV[2]) to ARGV[1] ms; 0 for
# a lock that expired or was taken since. One key per call, the calls pipelined: on a Redis Cluster
# the locks of different conversations lie in different slots (states/redis_keys.py).
RENEW_SCRIPT = """
if redis.call('GET', KEYS[1]) == ARGV[2] then return redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return 0
"""


class TurnLocks:
    """The turn locks this instance holds; `lost(conversation_id)` hears of one that ran out or was taken."""

    def __init__(self, redis: Redis, lock_s: float, lost: Callable[[str], None]) -> None:
        self._redis = redis
        self._ms = int(1000 * lock_s)
        self._lost = lost
        self._held: dict[str, str] = {}  # conversation id -> the token of its lock held here
        self._keeper: asyncio.Task[None] | None = None
        self._unlock = redis.register_script(UNLOCK_SCRIPT)

    @property
    def held(self) -> set[str]:
        """The conversations whose lock is held here."""
        return set(self._held)

    async def take(self, conversation_id: str) -> str | None:
        """Take the conversation's lock: its token, or None while another turn holds it."""
        token = uuid.uuid4().hex
        if not await self._redis.set(redis_keys.ai_turn(conversation_id), token, nx=True, px=self._ms):
            return None
        self._held[conversation_id] = token
        if self._keeper is None or self._keeper.done():
            self._keeper = asyncio.create_task(self._keep(), name="ai-turn-locks")
        return token

    async def release(self, conversation_id: str, token: str) -> None:
        """Release the lock if it is still this token's; Redis away: logged, the lock runs out by itself."""
        self._held.pop(conversation_id, None)
        try:
            await asyncio.shield(self._unlock(keys=[redis_keys.ai_turn(conversation_id)], args=[token]))
        except Exception as exc:  # a cancel still goes through
            log_failure(log, exc, "could not release the AI turn lock of %s (it runs out)", conversation_id)

    async def renew(self) -> None:
        """Extend every lock held here; one that ran out or was taken is reported lost."""
        held = list(self._held.items())
        if not held:
            return
        pipe = self._redis.pipeline(transaction=False)
        for conversation_id, token in held:  # EVAL: redis-py's cluster pipeline refuses EVALSHA
            pipe.eval(RENEW_SCRIPT, 1, redis_keys.ai_turn(conversation_id), self._ms, token)
        alive = await pipe.execute()
        for (conversation_id, token), ok in zip(held, alive, strict=True):
            if not ok and self._held.get(conversation_id) == token:
                self._lost(conversation_id)

    async def close(self) -> None:
        """Stop renewing (shutdown: the turns were cancelled, their locks released or left to run out)."""
        if self._keeper is not None:
            self._keeper.cancel()
            await asyncio.gather(self._keeper, return_exceptions=True)

    async def _keep(self) -> None:
        """Renew the locks every third of their TTL while any is held here."""
        while self._held:
            await asyncio.sleep(self._ms / 3000)
            try:
                await self.renew()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Redis away: try again next time; a lock that ran out stops its turn then
                log.warning("could not renew the AI turn locks: %s", exc)
