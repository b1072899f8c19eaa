"""Per-user quotas shared by every instance (PROTOCOL 3.7): conversations started per minute.

The count lives in Redis, so a user cannot spread its starts over instances or transports. It is
a sliding window: one sorted-set member per start, scored by the time it was taken. A start adds
its member first and counts second, in one MULTI, so concurrent starts never let more than the
limit through; one over the limit takes its member back out. The MULTI touches the user's one key,
so it runs on a Redis Cluster as it does on one server.
"""

from __future__ import annotations

import contextlib
import math
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import NamedTuple

from redis.asyncio import Redis

from chat.errors import RateLimited
from states import redis_keys

WINDOW_S = 60.0


class Admission(NamedTuple):
    """What SlidingWindow.take answered: the member counted (None: refused) and, when refused, the
    whole seconds until the oldest counted event leaves the window."""

    member: str | None
    retry_after_s: int = 0


class SlidingWindow:
    """At most `limit` events under one Redis key in any `window_s` (one sorted-set member per event)."""

    def __init__(self, redis: Redis, limit: int, window_s: float, clock: Callable[[], float] = time.time) -> None:
        self.redis = redis
        self.limit = limit
        self.window_s = window_s
        self.clock = clock

    async def take(self, key: str) -> Admission:
        """Count one event under `key`; over the limit it is taken back out and refused."""
        now = self.clock()
        member = f"{now:.6f}:{uuid.uuid4().hex[:8]}"
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.zremrangebyscore(key, "-inf", now - self.window_s)
            pipe.zadd(key, {member: now})
            pipe.zcard(key)
            pipe.zrange(key, 0, 0, withscores=True)
            pipe.expire(key, math.ceil(self.window_s) + 1)
            _, _, count, oldest, _ = await pipe.execute()
        if count <= self.limit:
            return Admission(member)
        await self.redis.zrem(key, member)
        return Admission(None, max(1, math.ceil(oldest[0][1] + self.window_s - now)))

    async def give_back(self, key: str, member: str) -> None:
        """Uncount an event taken before (a login that succeeded is no failure)."""
        await self.redis.zrem(key, member)


class ConversationQuota:
    """At most `per_min` conversation starts per user in any 60 s."""

    def __init__(self, redis: Redis, per_min: int, clock: Callable[[], float] = time.time) -> None:
        self.per_min = per_min
        self.window = SlidingWindow(redis, per_min, WINDOW_S, clock)

    async def take(self, user_id: str) -> str:
        """Count one start for `user_id` (its member in the window), or raise RateLimited (nothing counted)."""
        admission = await self.window.take(redis_keys.conversation_starts(user_id))
        if admission.member is None:
            raise RateLimited(f"at most {self.per_min} new conversations a minute; try again later",
                              retry_after_s=admission.retry_after_s)
        return admission.member

    @contextlib.asynccontextmanager
    async def starting(self, user_id: str) -> AsyncIterator[None]:
        """One start counted while it runs, and given back when it fails: a database outage must not use up
        the allowance of a customer who retries (after it, the next start was refused for a minute)."""
        member = await self.take(user_id)
        try:
            yield
        except BaseException:
            with contextlib.suppress(Exception):  # Redis away too: the member leaves with its window
                await self.window.give_back(redis_keys.conversation_starts(user_id), member)
            raise
