"""Per-user quotas shared by every instance (PROTOCOL 3.7): conversations started per minute.

The count lives in Redis, so a user cannot spread its starts over instances or transports. It is
a sliding window: one sorted-set member per start, scored by the time it was taken. A start adds
its member first and counts second, in one MULTI, so concurrent starts never let more than the
limit through; one over the limit takes its member back out. The MULTI touches the user's one key,
so it runs on a Redis Cluster as it does on one server.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

from redis.asyncio import Redis

from chat.errors import RateLimited
from states import redis_keys

WINDOW_S = 60.0


class ConversationQuota:
    """At most `per_min` conversation starts per user in any 60 s."""

    def __init__(self, redis: Redis, per_min: int, clock: Callable[[], float] = time.time) -> None:
        self.redis = redis
        self.per_min = per_min
        self.clock = clock

    async def take(self, user_id: str) -> None:
        """Count one start for `user_id`, or raise RateLimited (nothing counted) when it is over."""
        key, now = redis_keys.conversation_starts(user_id), self.clock()
        member = f"{now:.6f}:{uuid.uuid4().hex[:8]}"
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.zremrangebyscore(key, "-inf", now - WINDOW_S)
            pipe.zadd(key, {member: now})
            pipe.zcard(key)
            pipe.expire(key, int(WINDOW_S) + 1)
            _, _, count, _ = await pipe.execute()
        if count > self.per_min:
            await self.redis.zrem(key, member)
            raise RateLimited(f"at most {self.per_min} new conversations a minute; try again later")
