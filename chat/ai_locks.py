"""The AI turns' locks (chat.ai_turn): one turn at a time per conversation, across instances.

A turn holds `ai:turn:{id}` (`AI_TURN_LOCK_S`), renewed every third of that while any is held here, so
the lock of a crashed instance soon runs out; one that ran out or was taken is reported, and its turn
stops. A lock is released only by the turn that holds it (its token).

An instance that finds the lock busy with a customer message to answer leaves a flag beside it
(`ai:asked:{…}`, renewed with the lock), and the release tells the holder whether one was left: it
looks again for unanswered messages then (messages announced on its own instance it knows of). A
conversation id whose lock key cannot share a cluster slot with a flag (a `}` in a migrated id) has
none: its release always says "look".
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

# KEYS[1] the lock, KEYS[2] its asked flag (when it has one); ARGV token, ms. Take the lock (1; a flag a lost
# holder left goes: this turn reads every message), or, while another turn holds it, leave the flag (0).
TAKE_SCRIPT = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  if #KEYS > 1 then redis.call('DEL', KEYS[2]) end
  return 1
end
if #KEYS > 1 then redis.call('SET', KEYS[2], '1', 'PX', ARGV[2]) end
return 0
"""

# KEYS[1] the lock, KEYS[2] its asked flag (when it has one); ARGV token. Release the lock only if this turn
# still holds it: 2 when another instance asked meanwhile (the flag goes) or there is no flag to say, 1 when
# none did, 0 when it was not held.
UNLOCK_SCRIPT = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
if #KEYS == 1 then return 2 end
return 1 + redis.call('DEL', KEYS[2])
"""

# Extend a turn lock this instance still holds (KEYS[1] with token ARGV[2]) and its asked flag, if any, to
# ARGV[1] ms; 0 for a lock that expired or was taken since. One lock per call, the calls pipelined: on a
# Redis Cluster the locks of different conversations lie in different slots (states/redis_keys.py).
RENEW_SCRIPT = """
if redis.call('GET', KEYS[1]) ~= ARGV[2] then return 0 end
if #KEYS > 1 then redis.call('PEXPIRE', KEYS[2], ARGV[1]) end
return redis.call('PEXPIRE', KEYS[1], ARGV[1])
"""


class TurnLocks:
    """The turn locks this instance holds; `lost(conversation_id)` hears of one that ran out or was taken."""

    def __init__(self, redis: Redis, lock_s: float, lost: Callable[[str], None]) -> None:
        self._redis = redis
        self._ms = int(1000 * lock_s)
        self._lost = lost
        self._held: dict[str, str] = {}  # conversation id -> the token of its lock held here
        self._keeper: asyncio.Task[None] | None = None
        self._take = redis.register_script(TAKE_SCRIPT)
        self._unlock = redis.register_script(UNLOCK_SCRIPT)

    @property
    def held(self) -> set[str]:
        """The conversations whose lock is held here."""
        return set(self._held)

    async def take(self, conversation_id: str) -> str | None:
        """Take the conversation's lock: its token, or None while another turn holds it (which is asked to
        look again when it is done)."""
        token = uuid.uuid4().hex
        if not await self._take(keys=_keys(conversation_id), args=[token, self._ms]):
            return None
        self._held[conversation_id] = token
        if self._keeper is None or self._keeper.done():
            self._keeper = asyncio.create_task(self._keep(), name="ai-turn-locks")
        return token

    async def release(self, conversation_id: str, token: str) -> bool:
        """Release the lock if it is still this token's: may another instance have asked for a turn meanwhile
        (True also when that is not known)? Redis away: logged, the lock runs out by itself."""
        self._held.pop(conversation_id, None)
        try:
            released = await asyncio.shield(self._unlock(keys=_keys(conversation_id), args=[token]))
        except Exception as exc:  # a cancel still goes through
            log_failure(log, exc, "could not release the AI turn lock of %s (it runs out)", conversation_id)
            return True
        return int(released) != 1

    async def renew(self) -> None:
        """Extend every lock held here; one that ran out or was taken is reported lost."""
        held = list(self._held.items())
        if not held:
            return
        pipe = self._redis.pipeline(transaction=False)
        for conversation_id, token in held:  # EVAL: redis-py's cluster pipeline refuses EVALSHA
            keys = _keys(conversation_id)
            pipe.eval(RENEW_SCRIPT, len(keys), *keys, self._ms, token)
        alive = await pipe.execute()
        for (conversation_id, token), ok in zip(held, alive, strict=True):
            if not ok and self._held.get(conversation_id) == token:
                del self._held[conversation_id]  # reported once (a second cancel would cut the reply's end short)
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


def _keys(conversation_id: str) -> list[str]:
    """The lock, and its asked flag when the conversation id lets it share the lock's cluster slot."""
    asked = redis_keys.ai_asked(conversation_id)
    return [redis_keys.ai_turn(conversation_id)] + ([asked] if asked is not None else [])
