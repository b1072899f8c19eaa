"""The Redis client: a real server from REDIS_URL, or the embedded in-process one."""

from __future__ import annotations

import redis.asyncio as aioredis

from chat.settings import Settings


def create_redis(settings: Settings, client_name: str | None = None) -> aioredis.Redis:
    """A redis.asyncio client (bytes in, bytes out); fakeredis when no REDIS_URL is set.

    `client_name` shows in CLIENT LIST, so an operator can tell the instances apart."""
    if settings.redis is None:
        import fakeredis  # only the embedded mode needs it

        embedded: aioredis.Redis = fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer())  # a Redis subclass
        return embedded
    # one connection per concurrent command at most; the plain pool is much cheaper per command
    # than the blocking one, and 1024 is far above what one instance keeps in flight
    pool = aioredis.ConnectionPool.from_url(
        settings.redis.url,
        max_connections=1024,
        socket_connect_timeout=5,
        socket_timeout=10,
        health_check_interval=30,
        client_name=client_name,
    )
    return aioredis.Redis(connection_pool=pool)
