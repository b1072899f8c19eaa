"""The Redis client: a real server from REDIS_URL (a Redis Cluster with REDIS_CLUSTER=true), or the
embedded in-process one."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any, cast

import redis.asyncio as aioredis
from redis.asyncio.client import PubSub
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ClusterDownError, ResponseError, SlotNotCoveredError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from chat.settings import Settings

BATCH_TIMEOUT_S = 10.0  # the longest ServiceRedis.send_batch waits for a batch's replies (socket_timeout's value)


def stale_connection_retry() -> Retry:
    """Re-send a command once, on a fresh connection, when its pooled connection turns out to be
    dead (the first command after a Redis restart or failover); nothing else is retried.

    Why this never doubles an effect: a connection the server closed (a restart) carried nothing
    the new server ran, so the re-sent command runs once. A timeout is not retried: a command
    that timed out may still run, and re-sending an INCR, a PUBLISH or a Lua script would run it
    twice. The rare reset after the server ran the command but before its reply arrives is left:
    the service's Redis writes are conditional or idempotent (SET NX takes a lock once, the
    version CAS script applies one transition once, SADD/SREM/HSET/EXPIRE converge), so a re-run
    can only report "taken" or `conflict` for a change that was made, never make it twice; and
    PUBLISH repeats an event clients already dedupe by seq and version."""
    return Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,))


def create_redis(settings: Settings, client_name: str | None = None) -> aioredis.Redis:
    """A redis.asyncio client (bytes in, bytes out); fakeredis when no REDIS_URL is set; a
    ServiceRedisCluster when REDIS_CLUSTER is set.

    `client_name` shows in CLIENT LIST, so an operator can tell the instances apart."""
    if settings.redis is None:
        from chat.embedded_redis import EmbeddedRedis  # only the embedded mode needs fakeredis

        embedded: aioredis.Redis = EmbeddedRedis()  # a Redis subclass
        return embedded
    # one connection per concurrent command at most; the plain pool is much cheaper per command
    # than the blocking one, and 1024 is far above what one instance keeps in flight
    options: dict[str, Any] = {"socket_connect_timeout": 5, "socket_timeout": 10, "health_check_interval": 30,
                               "client_name": client_name}
    if settings.redis_cluster:
        # the cluster client answers the same commands as a Redis (redis-py gives the two no common
        # type); what differs is where keys may meet: see states/redis_keys.py
        cluster = ServiceRedisCluster.from_url(settings.redis.url, max_connections=1024,
                                               retry=stale_connection_retry(), **options)
        return cast(aioredis.Redis, cluster)
    pool = aioredis.ConnectionPool.from_url(settings.redis.url, max_connections=1024, retry=stale_connection_retry(),
                                            **options)
    # RESP2 for the subscriptions: a RESP3 push costs redis-py three times the CPU of an array (it renders
    # each one for a debug log), on every bus message an instance receives (a cluster's node connections
    # stay on RESP3: redis-py's cluster client gives them maintenance-notification handlers, which need it)
    subscriber_pool = aioredis.ConnectionPool.from_url(settings.redis.url, max_connections=8, protocol=2, **options)
    # send_batch's one connection, without a timeout per reply (a batch has one, BATCH_TIMEOUT_S, for all)
    batch_pool = aioredis.ConnectionPool.from_url(settings.redis.url, max_connections=1, retry=stale_connection_retry(),
                                                  **{**options, "socket_timeout": None})
    return ServiceRedis(pool, subscriber_pool, batch_pool)


class ServiceRedis(aioredis.Redis):
    """The service's client: commands are retried once on a dead pooled connection; subscriptions
    come from a pool without that retry, so the bus listener sees a dropped subscription itself
    (it counts it, logs it and resubscribes) instead of redis-py resubscribing behind its back."""

    def __init__(self, pool: aioredis.ConnectionPool, subscriber_pool: aioredis.ConnectionPool,
                 batch_pool: aioredis.ConnectionPool) -> None:
        super().__init__(connection_pool=pool)
        self.auto_close_connection_pool = True  # the pools are this client's own
        self._subscriber_pool = subscriber_pool
        self._batch_pool = batch_pool
        self._batch_connection: Any = None  # send_batch's, taken from its pool once and kept
        self._batch_turn = asyncio.Lock()  # one batch at a time on it (the bus sends one at a time anyway)

    async def send_batch(self, commands: Sequence[tuple[Any, ...]]) -> list[Any]:
        """What a pipeline without a transaction does, on a connection kept for the batches (the bus's
        publisher sends one at a time): one write, the replies read in order, an error reply in its
        command's place, BATCH_TIMEOUT_S for the whole batch. Without a pooled connection taken and given
        back, a pipeline object built and a timeout armed for every reply, a batch costs a third less of
        this process's CPU (docs/performance.md). A dead connection is replaced and the batch re-sent once,
        as any command (stale_connection_retry); a batch that timed out is not re-sent."""
        async with self._batch_turn:
            conn = self._batch_connection
            if conn is None:
                conn = self._batch_connection = await self._batch_pool.get_connection()  # type: ignore[no-untyped-call]
            try:
                async with asyncio.timeout(BATCH_TIMEOUT_S):  # a read cut short closes the connection (redis-py)
                    return cast(list[Any], await conn.retry.call_with_retry(
                        lambda: self._send_batch(conn, commands), lambda _error: conn.disconnect()))
            except TimeoutError:
                raise RedisTimeoutError(f"no answer from Redis to a batch in {BATCH_TIMEOUT_S}s") from None

    async def _send_batch(self, conn: Any, commands: Sequence[tuple[Any, ...]]) -> list[Any]:
        await conn.send_packed_command(conn.pack_commands(commands), check_health=False)
        replies: list[Any] = []
        try:
            for command in commands:
                try:
                    replies.append(await self.parse_response(conn, command[0]))
                except ResponseError as exc:
                    replies.append(exc)
        finally:
            if len(replies) < len(commands):  # the rest would answer the next batch's commands
                await conn.disconnect(nowait=True)
        return replies

    def pubsub(self, **kwargs: Any) -> PubSub:
        """A subscription on the pool without retries."""
        return PubSub(self._subscriber_pool, event_dispatcher=self._event_dispatcher, **kwargs)

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        """Close the pools."""
        await super().aclose(close_connection_pool)
        await self._subscriber_pool.aclose()
        self._batch_connection = None
        await self._batch_pool.aclose()


async def send_batch(redis: aioredis.Redis | RedisCluster, commands: Sequence[tuple[Any, ...]]) -> list[Any]:
    """Send the commands in one pipeline without a transaction: their replies in order, an error reply in
    its command's place. On the service's single-server client, on the connection it keeps for this."""
    if isinstance(redis, ServiceRedis):
        return await redis.send_batch(commands)
    pipe = redis.pipeline(transaction=False)
    for command in commands:
        pipe.execute_command(*command)
    replies: list[Any] = await pipe.execute(raise_on_error=False)
    for reply in replies:  # the cluster's pipeline puts a lost connection in the replies too: raised, as above
        if isinstance(reply, Exception) and not isinstance(reply, ResponseError):
            raise reply
    return replies


class ServiceRedisCluster(RedisCluster):
    """The service's Redis Cluster client (REDIS_CLUSTER=true): the seed node of REDIS_URL tells it
    the others and which holds each slot; a command goes to the master of its key's slot.

    The retry policy is the single server's (stale_connection_retry): a command is re-sent once
    when its connection turns out dead (after re-reading the slot map, so a failed-over master's
    replacement answers), or when the cluster says it is down or the client knows no owner of
    the slot (the command did not run); a timeout is never re-sent. redis-py's cluster pipeline
    reads the retry list of its own class and re-sends a whole pipeline once on a timeout too:
    every pipeline the service sends is idempotent (ZADD/SADD/SREM/HSET of given values, reads,
    the presence re-assert and turn-lock renew scripts, a quota's own member) or an SPUBLISH that
    clients dedupe by seq and version. The bus subscribes on each master with connections of its
    own, without retries (chat/bus/redis_bus.py)."""

    # redis-py's list with TimeoutError left out (its type is that exact tuple, hence the ignore)
    ERRORS_ALLOW_RETRY = (RedisConnectionError, ClusterDownError, SlotNotCoveredError)  # type: ignore[assignment]
