"""The bus over the real Redis: batched publishing keeps every message, in order."""

import asyncio
import uuid

import pytest
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError

from chat.bus import Bus, BusMessage, ToUser


class Recorder:
    def __init__(self, want: int):
        self.got: list[BusMessage] = []
        self.want = want
        self.done = asyncio.Event()

    def __call__(self, message: BusMessage) -> None:
        self.got.append(message)
        if len(self.got) >= self.want:
            self.done.set()


async def test_concurrent_publishes_arrive_once_and_in_order(redis):
    channel = f"chat:events:test-bus:{uuid.uuid4().hex}"
    sink = Recorder(want=300)
    listener = Bus(redis, sink, channel)
    await listener.start()
    await listener.subscribed.wait()
    publisher = Bus(redis, Recorder(0), channel)
    await asyncio.gather(*(publisher.publish(ToUser("nobody", {"n": i})) for i in range(300)))
    await asyncio.wait_for(sink.done.wait(), timeout=10)
    assert [m.frame["n"] for m in sink.got if isinstance(m, ToUser) and m.frame] == list(range(300))
    await listener.stop()
    await publisher.stop()


async def test_a_malformed_message_is_skipped_and_the_listener_goes_on(redis):
    channel = f"chat:events:test-bus:{uuid.uuid4().hex}"
    sink = Recorder(want=1)
    listener = Bus(redis, sink, channel)
    await listener.start()
    await listener.subscribed.wait()
    await redis.publish(channel, b'{"k": "no-such-kind"}')
    await redis.publish(channel, b"not json")
    await Bus(redis, Recorder(0), channel).publish(ToUser("u1", {"type": "x"}))
    await asyncio.wait_for(sink.done.wait(), timeout=10)
    assert sink.got == [ToUser("u1", {"type": "x"})]
    await listener.stop()


async def test_a_failed_publish_is_raised_to_its_publisher():
    down = aioredis.Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.5)
    bus = Bus(down, Recorder(0), "x")
    with pytest.raises(RedisConnectionError):
        await bus.publish(ToUser("nobody", None))
    await down.aclose()
