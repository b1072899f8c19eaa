"""The subscriber connection's liveness checks keep their schedule: interest that changes all the time
(sockets joining and leaving on a busy instance) must not put off the PING that finds a half-open
connection, or events of other instances are lost for as long as TCP takes to notice (minutes)."""

import asyncio
from typing import Any

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from chat.bus import shard as shard_module
from chat.bus.shard import Shard


class SilentConnection:
    """A half-open connection: commands go out, nothing ever comes back."""

    is_connected = True

    def __init__(self) -> None:
        self.sent: list[tuple[str, ...]] = []

    async def send_command(self, *args: str, check_health: bool = True) -> None:
        self.sent.append(args)


async def test_a_silent_connection_is_given_up_however_often_interest_changes(monkeypatch):
    monkeypatch.setattr(shard_module, "PING_S", 0.05)
    shard = Shard("test", lambda: None, lambda: (), lambda _: None, lambda: None)  # type: ignore[arg-type, return-value]
    conn: Any = SilentConnection()
    shard._check_at = asyncio.get_running_loop().time() + shard_module.PING_S
    shard._heard = False  # nothing arrived since the session began

    async def churn() -> None:  # a change of interest at every turn of the loop
        while True:
            shard._changed.set()
            await asyncio.sleep(0)

    churning = asyncio.create_task(churn())
    try:
        with pytest.raises(RedisConnectionError, match="no answer to PING"):
            async with asyncio.timeout(5):
                while True:
                    await shard._wait_or_ping(conn)
    finally:
        churning.cancel()


class DroppingConnection:
    """Connects, then is lost at the first read."""

    is_connected = True

    async def send_command(self, *args: str, check_health: bool = True) -> None:
        pass

    async def read_response(self, timeout: float | None = None, push_request: bool = False) -> Any:
        raise RedisConnectionError("lost")

    async def disconnect(self) -> None:
        pass


class DroppingPubSub:
    def __init__(self) -> None:
        self.connection: Any = None

    async def connect(self) -> None:
        self.connection = DroppingConnection()

    async def aclose(self) -> None:
        pass


async def test_the_wait_before_reconnecting_starts_short_again_after_each_connection(monkeypatch):
    """Backing off is for a Redis that refuses connections; one that was reached and then lost (a restart, a
    killed client) is tried again at once: else each loss waits longer than the last, up to 2 s of lost events."""
    waits: list[float] = []
    real_sleep = asyncio.sleep

    async def recorded(delay: float, *args: Any) -> None:
        waits.append(delay)
        await real_sleep(0)

    monkeypatch.setattr(shard_module.random, "random", lambda: 0.0)
    monkeypatch.setattr(shard_module.asyncio, "sleep", recorded)
    shard = Shard("test", DroppingPubSub, lambda: (), lambda _: None, lambda: None)  # type: ignore[arg-type]
    shard.start()
    async with asyncio.timeout(5):
        while len(waits) < 5:
            await real_sleep(0)
    await shard.stop()
    assert waits[:5] == [0.05] * 5
