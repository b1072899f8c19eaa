"""The bus over the real Redis: batched publishing keeps every envelope, in order."""

import asyncio
import uuid

from chat.bus import Bus


class Recorder:
    def __init__(self, want: int):
        self.got: list[dict] = []
        self.want = want
        self.done = asyncio.Event()

    def deliver(self, envelope: dict) -> int:
        self.got.append(envelope)
        if len(self.got) >= self.want:
            self.done.set()
        return 1


async def test_concurrent_publishes_arrive_once_and_in_order(redis):
    channel = f"chat:events:test-bus:{uuid.uuid4().hex}"
    sink = Recorder(want=300)
    listener = Bus(redis, sink, channel)
    await listener.start()
    await listener.subscribed.wait()
    publisher = Bus(redis, Recorder(0), channel)
    await asyncio.gather(*(publisher.publish({"to": "nobody", "n": i}) for i in range(300)))
    await asyncio.wait_for(sink.done.wait(), timeout=10)
    assert [e["n"] for e in sink.got] == list(range(300))
    await listener.stop()
    await publisher.stop()


async def test_a_failed_publish_is_raised_to_its_publisher():
    import redis.asyncio as aioredis
    import pytest
    from redis.exceptions import ConnectionError as RedisConnectionError

    down = aioredis.Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.5)
    bus = Bus(down, Recorder(0), "x")
    with pytest.raises(RedisConnectionError):
        await bus.publish({"to": "nobody"})
    await down.aclose()
