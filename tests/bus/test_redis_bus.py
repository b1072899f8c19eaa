"""The bus over the real Redis: sharded channels, each instance receives only what it wants, its
own messages are delivered at once and their echo skipped, and a lost subscriber resubscribes."""

import asyncio
import uuid

import pytest
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from chat.bus import Bus, BusMessage, Interest, ToConversation, ToUser
from chat.redis_client import create_redis
from chat.settings import Settings
from tests.bus.recorder import Recorder
from tests.conftest import redis_url


def is_marker(m: BusMessage) -> bool:
    return isinstance(m, ToUser) and m.frame == {"type": "marker"}


async def started(client, *channels: str, prefix: str) -> tuple[Bus, Recorder]:
    sink = Recorder()
    interest = Interest(prefix)
    bus = Bus(client, sink, interest)
    await bus.start()
    for channel in channels:
        interest.want(channel)
    await asyncio.wait_for(bus.settled(), timeout=10)
    return bus, sink


@pytest.fixture(params=["redis-py", "service"])
async def redis(request, tmp_path):
    """Database 14 of the real Redis, through a plain redis-py client (its pipelines) and through the
    service's own (create_redis: the batches on the connection it keeps, RESP2 subscriptions)."""
    if request.param == "redis-py":
        client = aioredis.Redis.from_url(redis_url())
    else:
        client = create_redis(Settings.from_env({"REDIS_URL": redis_url(), "JWT_SECRET_KEY": "k" * 32,
                                                 "CHAT_DATA_DIR": str(tmp_path)}))
    yield client
    await client.aclose()


@pytest.fixture
def prefix() -> str:
    return f"chat:events:test-bus:{uuid.uuid4().hex}"


async def test_concurrent_publishes_arrive_once_in_order_and_the_publisher_skips_its_echo(redis, prefix):
    names = Interest(prefix)
    listener, far = await started(redis, names.user("nobody"), prefix=prefix)
    publisher, near = await started(redis, names.user("nobody"), prefix=prefix)
    await asyncio.gather(*(publisher.publish(ToUser("nobody", {"n": i})) for i in range(300)))
    assert [m.frame["n"] for m in near.got] == list(range(300))  # delivered here at once, in order
    await far.until(lambda m: m.frame == {"n": 299})  # the last one: the others came before it
    await listener.publish(ToUser("nobody", {"type": "marker"}))  # after every echo on the same channel
    await near.until(is_marker)
    assert [m.frame["n"] for m in far.got if not is_marker(m)] == list(range(300))
    assert [m.frame["n"] for m in near.got if not is_marker(m)] == list(range(300))  # no echo delivered twice
    assert publisher.received == 301  # its 300 echoes (skipped) and the marker
    await listener.stop()
    await publisher.stop()


async def test_an_instance_receives_only_the_channels_it_wants(redis, prefix):
    names = Interest(prefix)
    listener, sink = await started(redis, names.user("mine"), prefix=prefix)
    publisher, _ = await started(redis, prefix=prefix)
    for i in range(20):
        await publisher.publish(ToUser("someone-else", {"n": i}))
        await publisher.publish(ToConversation(f"conv-{i}", "someone-else", {"n": i}))
    await publisher.publish(ToUser("mine", {"type": "marker"}))
    await sink.until(is_marker)
    assert (sink.got, listener.received) == ([ToUser("mine", {"type": "marker"})], 1)
    await listener.stop()
    await publisher.stop()


async def test_a_conversation_goes_to_its_own_channel_only(redis, prefix):
    names = Interest(prefix)
    listener, sink = await started(redis, names.conversation("c1"), prefix=prefix)
    publisher, _ = await started(redis, prefix=prefix)
    await publisher.publish(ToConversation("c2", "cust", {"n": 2}))
    await publisher.publish(ToUser("cust", {"n": 3}))
    await publisher.publish(ToConversation("c1", "cust", {"type": "marker"}, agents_only=True, skip="s1"))
    await sink.until(lambda m: m.frame == {"type": "marker"})
    assert sink.got == [ToConversation("c1", "cust", {"type": "marker"}, agents_only=True, skip="s1")]
    assert listener.received == 1
    await listener.stop()
    await publisher.stop()


async def test_a_dropped_channel_is_left(redis, prefix):
    names = Interest(prefix)
    listener, sink = await started(redis, names.user("a"), prefix=prefix)
    publisher, _ = await started(redis, prefix=prefix)
    listener.interest.drop(names.user("a"))
    listener.interest.want(names.user("marker"))  # left before this one is joined, on one connection
    await asyncio.wait_for(listener.settled(), timeout=10)
    await publisher.publish(ToUser("a", {"n": 1}))
    await publisher.publish(ToUser("marker", {"type": "marker"}))
    await sink.until(is_marker)
    assert listener.received == 1
    await listener.stop()
    await publisher.stop()


async def test_a_malformed_payload_is_skipped_and_the_listener_goes_on(redis, prefix):
    names = Interest(prefix)
    listener, sink = await started(redis, names.user("u1"), prefix=prefix)
    await redis.spublish(names.user("u1"), b"short")
    await redis.spublish(names.user("u1"), b"0123456789abnot json")
    await redis.spublish(names.user("u1"), b'0123456789ab{"k": "no-such-kind"}')
    publisher, _ = await started(redis, prefix=prefix)
    await publisher.publish(ToUser("u1", {"type": "marker"}))
    await sink.until(is_marker)
    assert sink.got == [ToUser("u1", {"type": "marker"})]
    await listener.stop()
    await publisher.stop()


async def test_a_lost_subscriber_resubscribes_every_channel_wanted(prefix):
    name = f"bus-test-{uuid.uuid4().hex[:8]}"
    client = aioredis.Redis.from_url(redis_url(), client_name=name)
    admin = aioredis.Redis.from_url(redis_url())
    names = Interest(prefix)
    listener, sink = await started(client, names.user("a"), names.conversation("c1"), prefix=prefix)
    victims = [c["id"] for c in await admin.client_list(_type="pubsub") if c.get("name") == name]
    assert len(victims) == 1  # one subscriber connection
    await admin.client_kill_filter(_id=victims[0])
    listener.interest.want(names.user("b"))  # wanted while the connection is being lost
    await asyncio.wait_for(listener.wait_resubscribed(1), timeout=10)
    await asyncio.wait_for(listener.settled(), timeout=10)
    publisher, _ = await started(admin, prefix=prefix)
    await publisher.publish(ToConversation("c1", "x", {"n": 1}, agents_only=True))
    await publisher.publish(ToUser("a", {"n": 2}))
    await publisher.publish(ToUser("b", {"type": "marker"}))
    await sink.until(is_marker)
    assert [m.frame.get("n") for m in sink.got] == [1, 2, None]
    assert listener.reconnects >= 1
    await listener.stop()
    await publisher.stop()
    await client.aclose()
    await admin.aclose()


async def test_a_failed_publish_is_raised_to_its_publisher_after_the_local_delivery():
    down = aioredis.Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.5)
    sink = Recorder()
    bus = Bus(down, sink, Interest("x"))
    with pytest.raises(RedisConnectionError):
        await bus.publish(ToUser("nobody", None))
    assert sink.got == [ToUser("nobody", None)]
    await down.aclose()


async def test_publish_soon_delivers_here_and_logs_a_failed_send_without_raising(caplog):
    down = aioredis.Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.5)
    sink = Recorder()
    bus = Bus(down, sink, Interest("x"))
    bus.publish_soon(ToUser("nobody", {"n": 1}))
    assert sink.got == [ToUser("nobody", {"n": 1})]  # delivered here before anything is sent
    await bus.stop()  # sends what is queued: the send fails, and says so in the log
    assert any("was not sent to the other instances" in r.getMessage() for r in caplog.records)
    await down.aclose()


async def test_listening_returns_once_redis_confirmed_the_channel_and_at_once_after(redis, prefix):
    names = Interest(prefix)
    listener, sink = await started(redis, prefix=prefix)
    publisher, _ = await started(redis, prefix=prefix)
    channel = names.conversation("c1")
    listener.interest.want(channel)
    await listener.listening(channel)  # no settled(): this wait alone must make the next publish arrive
    await publisher.publish(ToConversation("c1", "cust", {"type": "marker"}))
    await sink.until(lambda m: m.frame == {"type": "marker"})
    again = listener.listening(channel)
    with pytest.raises(StopIteration):  # already confirmed: returns without suspending (a second tab)
        again.send(None)
    await listener.stop()
    await publisher.stop()


async def test_listening_waits_for_a_channel_left_and_wanted_again(redis, prefix):
    names = Interest(prefix)
    channel = names.conversation("c1")
    listener, sink = await started(redis, channel, prefix=prefix)
    publisher, _ = await started(redis, prefix=prefix)
    listener.interest.drop(channel)
    await asyncio.sleep(0)  # the SUNSUBSCRIBE goes out; its answer has not come back yet
    listener.interest.want(channel)
    await listener.listening(channel)  # waits for the new SSUBSCRIBE's answer, not the old confirmation
    await publisher.publish(ToConversation("c1", "cust", {"type": "marker"}))
    await sink.until(lambda m: m.frame == {"type": "marker"})
    await listener.stop()
    await publisher.stop()


async def test_listening_does_not_wait_while_the_subscriber_is_down():
    down = aioredis.Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.5)
    bus = Bus(down, Recorder(), Interest("x"))
    await bus.start(wait_s=0)
    shard = next(iter(bus._shards.values()))
    while not shard.down:  # its first connection failed
        await asyncio.wait_for(bus._state.wait(), timeout=10)
    bus.interest.want(bus.interest.conversation("c1"))
    await bus.listening(bus.interest.conversation("c1"))  # returns: the command answers from the store
    assert not shard.listening(bus.interest.conversation("c1"))
    await bus.stop()
    await down.aclose()


# ARGV[1] a value, then the channel and the payload: push the value; publish unless it is "no".
PUSH_SCRIPT = """
redis.call('RPUSH', KEYS[1], ARGV[1])
if ARGV[1] == 'no' then return 0 end
redis.call('SPUBLISH', ARGV[2], ARGV[3])
return 1
"""


async def test_deliver_first_delivers_here_before_the_script_runs_whatever_it_decides(redis, prefix):
    bus, sink = await started(redis, prefix=prefix)
    key = f"{prefix}:list"
    refused = ToConversation("c1", "cust", {"n": "no"})
    pending = asyncio.ensure_future(bus.publish_scripted(refused, PUSH_SCRIPT, [key], ["no"], deliver_first=True))
    await asyncio.sleep(0)  # one loop step: the call ran up to its wait for Redis
    assert sink.got == [refused] and not pending.done()
    assert await pending == 0  # refused by the script, and delivered here all the same
    assert await bus.publish_scripted(ToConversation("c1", "cust", {"n": 1}), PUSH_SCRIPT, [key], ["no"]) == 0
    assert sink.got == [refused]  # without deliver_first a refused message is not delivered here
    await redis.delete(key)
    await bus.stop()


async def test_a_read_in_order_sees_the_write_of_every_script_queued_before_it(redis, prefix):
    bus, sink = await started(redis, prefix=prefix)
    key = f"{prefix}:list"
    values = [str(i) for i in range(200)]
    *results, read = await asyncio.gather(
        *(bus.publish_scripted(ToConversation("c1", "cust", {"n": v}), PUSH_SCRIPT, [key], [v], deliver_first=True)
          for v in values),
        bus.read_in_order("LRANGE", key, 0, -1))
    assert results == [1] * len(values)
    assert [item.decode() for item in read] == values  # every push queued before the read, none missing
    assert [m.frame["n"] for m in sink.got] == values
    await redis.delete(key)
    await bus.stop()


async def test_a_script_refused_by_redis_fails_only_its_own_publish(redis, prefix):
    bus, sink = await started(redis, prefix=prefix)
    listener, far = await started(redis, Interest(prefix).user("u"), prefix=prefix)
    key = f"{prefix}:string"
    await redis.set(key, "not a list")
    broken = bus.publish_scripted(ToConversation("c1", "cust", {"n": "x"}), PUSH_SCRIPT, [key], ["x"])
    *_, failed = await asyncio.gather(bus.publish(ToUser("u", {"n": 1})), bus.publish(ToUser("u", {"n": 2})), broken,
                                      return_exceptions=True)  # one batch: queued before its sender ran
    assert isinstance(failed, ResponseError) and "WRONGTYPE" in str(failed)
    await far.until(lambda m: m.frame == {"n": 2})  # the others in its batch went out
    assert [m.frame for m in far.got] == [{"n": 1}, {"n": 2}]
    assert [m.frame for m in sink.got] == [{"n": 1}, {"n": 2}]  # nor was the refused one delivered here
    await redis.delete(key)
    await listener.stop()
    await bus.stop()
