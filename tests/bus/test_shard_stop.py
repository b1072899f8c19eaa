"""A subscriber connection whose read swallows a cancellation (the embedded fakeredis reads under
asyncio.wait_for, which on Python 3.11 can drop a cancellation that lands as a message arrives) must
still let the bus stop: the service hung on SIGTERM under load in the embedded mode."""

import asyncio
from typing import Any

from redis.exceptions import ConnectionError as RedisConnectionError

from chat.bus.shard import Shard


class SwallowingConnection:
    """Confirms each SSUBSCRIBE; its read ignores cancellation and ends only when disconnected."""

    def __init__(self) -> None:
        self.is_connected = True
        self._replies: asyncio.Queue[Any] = asyncio.Queue()
        self.cancellations_swallowed = 0

    async def send_command(self, *args: str, check_health: bool = True) -> None:
        if args[0] == "SSUBSCRIBE":
            for channel in args[1:]:
                self._replies.put_nowait([b"ssubscribe", channel.encode(), 1])

    async def read_response(self, **_: Any) -> Any:
        while True:
            try:
                reply = await self._replies.get()
            except asyncio.CancelledError:
                self.cancellations_swallowed += 1
                continue
            if reply is None:
                raise RedisConnectionError("closed")
            return reply

    async def disconnect(self, **_: Any) -> None:
        self.is_connected = False
        self._replies.put_nowait(None)


class FakePubSub:
    def __init__(self, connection: SwallowingConnection) -> None:
        self.connection = connection

    async def connect(self) -> None:
        return None

    async def aclose(self) -> None:
        await self.connection.disconnect()


async def test_a_shard_stops_although_its_read_swallows_the_cancellation() -> None:
    conn = SwallowingConnection()
    ready = asyncio.Event()
    shard = Shard("redis", lambda: FakePubSub(conn), lambda: ["chat:test:c:1"], lambda _: None,  # type: ignore[arg-type,return-value]
                  ready.set)
    shard.start()
    while not shard.settled:
        await ready.wait()
        ready.clear()
    stopping = asyncio.create_task(shard.stop())
    await asyncio.wait({stopping}, timeout=10)  # a bound on the hang (it never returned), not a timing assertion
    assert stopping.done()
    assert conn.cancellations_swallowed == 1  # the read did drop the cancellation, and the stop still ended
    assert not conn.is_connected
