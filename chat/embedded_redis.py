"""The embedded mode's in-process Redis: fakeredis, with its hottest commands run directly.

Through redis-py, a fakeredis command costs what a network round trip costs in Python: a
connection taken from the pool and given back, the command encoded to RESP, fakeredis parsing
the RESP back into words, the reply queued and awaited, the retry wrapper around it all (about
45 µs for a GET, more than the real Redis costs the client). The commands of DIRECT (the live
record's GET, the bus's SPUBLISH and the few other plain key commands, none of which blocks,
subscribes or belongs to a MULTI) skip all of that, alone or in a pipeline outside a transaction:
they run at once on one fakeredis connection kept for them, and their reply goes through the same
redis-py response callbacks (about 8 µs for a GET). Every other command, transactions and
subscriptions take redis-py's ordinary way, on the same in-process server.
"""

from __future__ import annotations

from typing import Any

import fakeredis
from redis.asyncio.client import Pipeline
from redis.client import EMPTY_RESPONSE, NEVER_DECODE
from redis.exceptions import AuthenticationError, RedisError, ResponseError

RaiseErrorTypes = (ResponseError, AuthenticationError)  # the error replies fakeredis' read_response raises

# Plain key commands that never block, subscribe, or change the connection's state: their reply
# is there as soon as fakeredis has run them. GET is the one of every message (the live record),
# SPUBLISH the bus's (chat.bus publishes every message on its conversation's sharded channel).
DIRECT = frozenset({
    "GET", "MGET", "SET", "DEL", "EXISTS", "EXPIRE", "PEXPIRE", "TTL", "PTTL", "INCR", "INCRBY", "DECRBY",
    "HGET", "HSET", "HDEL", "HGETALL", "SADD", "SREM", "SMEMBERS", "SCARD", "SISMEMBER", "ZADD", "ZREM",
    "ZRANGE", "ZRANGEBYSCORE", "ZSCORE", "ZCARD", "EVALSHA", "EVAL", "PUBLISH", "SPUBLISH",
})


class EmbeddedRedis(fakeredis.FakeAsyncRedis):
    """A fakeredis client (bytes in, bytes out) on its own in-process server."""

    def __init__(self) -> None:
        super().__init__(server=fakeredis.FakeServer(), connection_class=_Connection)
        self._direct: Any = None  # the connection of the DIRECT commands, made on first use

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        """Run a DIRECT command at once on the kept connection; any other the ordinary way."""
        if args[0] not in DIRECT:
            return await super().execute_command(*args, **options)  # type: ignore[no-untyped-call]
        return self.run_direct(await self.direct_connection(), args, options)

    def pipeline(self, transaction: bool = True, shard_hint: str | None = None) -> Pipeline:
        """A pipeline whose DIRECT commands run at once when it is executed (see _DirectPipeline)."""
        return _DirectPipeline(self, transaction, shard_hint)

    async def direct_connection(self) -> Any:
        """The fakeredis connection (FakeAsyncRedisConnection) the DIRECT commands run on."""
        if self._direct is None:
            conn = self.connection_pool.make_connection()  # type: ignore[no-untyped-call]
            await conn.connect()
            self._direct = conn
        return self._direct

    def run_direct(self, conn: Any, args: tuple[Any, ...], options: dict[str, Any]) -> Any:
        """Run one DIRECT command and parse its reply as redis-py's parse_response does (fakeredis
        queues an error reply as redis-py's exception)."""
        encode = conn.encoder.encode
        socket = conn._sock  # fakeredis' in-process socket: runs a command from its words, queues the reply
        words = [arg if isinstance(arg, bytes) else encode(arg) for arg in args]
        if args[0] == "SPUBLISH" and len(words) == 3:  # the bus's, one per message: straight to the subscribers
            with socket._server.lock:
                return socket.spublish(words[1], words[2])
        socket._process_command(words)
        response = socket.responses.get_nowait()
        if isinstance(response, RedisError):
            if EMPTY_RESPONSE in options:
                return options[EMPTY_RESPONSE]
            raise response
        if not options.pop(NEVER_DECODE, False):
            response = conn._decode(response)
        options.pop(EMPTY_RESPONSE, None)
        options.pop("keys", None)
        callback = self.response_callbacks.get(args[0])
        return callback(response, **options) if callback else response

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        """Close the kept connection and the pool."""
        if self._direct is not None:
            await self._direct.disconnect()
            self._direct = None
        await super().aclose(close_connection_pool)


class _DirectPipeline(Pipeline):
    """A pipeline of DIRECT commands only, outside a transaction (MULTI/EXEC or WATCH) and without
    scripts to load, runs them one after the other on the client's kept connection: nothing runs
    between them (no await), and the replies are what redis-py's pipeline returns (an error reply
    in its place, the first one raised when raise_on_error). Any other pipeline runs as usual."""

    def __init__(self, client: EmbeddedRedis, transaction: bool, shard_hint: str | None) -> None:
        super().__init__(client.connection_pool, client.response_callbacks, transaction, shard_hint)
        self._client = client

    async def execute(self, raise_on_error: bool = True) -> list[Any]:
        """Run the queued commands; then the pipeline is empty again."""
        stack = self.command_stack
        if (self.is_transaction or self.explicit_transaction or self.watching or self.scripts
                or not all(args[0] in DIRECT for args, _ in stack)):
            return await super().execute(raise_on_error)
        try:
            conn = await self._client.direct_connection()
            replies: list[Any] = []
            for args, options in stack:
                try:
                    replies.append(self._client.run_direct(conn, args, dict(options)))
                except ResponseError as exc:
                    replies.append(exc)
            if raise_on_error:
                self.raise_first_error(stack, replies)
            return replies
        finally:
            await self.reset()  # type: ignore[no-untyped-call]  # redis-py leaves it unannotated


class _Connection(fakeredis.FakeAsyncRedisConnection):
    """fakeredis' connection, whose reply already queued is taken at once: the bus's subscriber reads
    one message after the other (every SPUBLISH above), each of which fakeredis would read through
    two more coroutines and a readiness check."""

    # redis-py's parameters; fakeredis' own override takes **kwargs, which mypy holds against them
    async def read_response(  # type: ignore[override]
            self, disable_decoding: bool = False, timeout: float | None = None, *,
            disconnect_on_error: bool = True, push_request: bool | None = False) -> Any:
        """The next reply; one already queued without waiting, as fakeredis returns it."""
        socket = self._sock
        if socket is None or disable_decoding or socket.responses.empty():
            return await super().read_response(disable_decoding=disable_decoding, timeout=timeout,
                                               disconnect_on_error=disconnect_on_error, push_request=push_request)
        response = socket.responses.get_nowait()
        if isinstance(response, RaiseErrorTypes):
            raise response
        return self._decode(response)
