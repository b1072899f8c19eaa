"""The embedded Redis: the DIRECT commands, run straight on fakeredis, answer exactly what the
ordinary redis-py way answers (replies, response callbacks, errors), and share the server with it."""

import asyncio

import fakeredis
import pytest
from redis.exceptions import NoScriptError, ResponseError

from chat import keys
from chat.embedded_redis import DIRECT, EmbeddedRedis
from chat.redis_client import create_redis


class Recorder(EmbeddedRedis):
    """Counts the commands that took the ordinary way."""

    def __init__(self) -> None:
        super().__init__()
        self.ordinary: list[str] = []

    async def execute_command(self, *args, **options):
        if args[0] not in DIRECT:
            self.ordinary.append(args[0])
        return await super().execute_command(*args, **options)


async def script(r):
    """A session of every DIRECT command (and a few others), each reply recorded."""
    out = []
    out.append(await r.set("s", "v", ex=100))
    out.append(await r.set("s", "w", nx=True))
    out.append(await r.get("s"))
    out.append(await r.get("missing"))
    out.append(await r.mget(["s", "missing"]))
    out.append(await r.exists("s", "missing"))
    out.append(await r.expire("s", 50))
    out.append(await r.pexpire("s", 50_000))
    out.append(await r.ttl("s") > 0)
    out.append(await r.pttl("s") > 0)
    out.append(await r.incr("n"))
    out.append(await r.incrby("n", 5))
    out.append(await r.decr("n"))
    out.append(await r.hset("h", mapping={"a": 1, "b": "x"}))
    out.append(await r.hget("h", "a"))
    out.append(await r.hgetall("h"))
    out.append(await r.hdel("h", "a"))
    out.append(await r.sadd("set", "a", "b"))
    out.append(await r.srem("set", "a"))
    out.append(await r.smembers("set"))
    out.append(await r.scard("set"))
    out.append(await r.sismember("set", "b"))
    out.append(await r.zadd("z", {"a": 1, "b": 2}))
    out.append(await r.zrange("z", 0, -1, withscores=True))
    out.append(await r.zrangebyscore("z", 1, 1))
    out.append(await r.zscore("z", "b"))
    out.append(await r.zrem("z", "a"))
    out.append(await r.zcard("z"))
    out.append(await r.eval("return redis.call('GET', KEYS[1])", 1, "s"))
    incr = r.register_script("return redis.call('INCRBY', KEYS[1], ARGV[1])")
    out.append(await incr(keys=["n"], args=[10]))  # EVALSHA: NOSCRIPT, then loaded and run
    out.append(await r.publish("nobody", "x"))
    out.append(await r.spublish("nobody", "x"))
    out.append(await r.delete("s", "n", "h", "set", "z"))
    for bad in (r.incr("h2"), r.hget("s2", "f")):
        await r.set("h2", "not a number")
        await r.set("s2", "a string")
        try:
            await bad
        except ResponseError as exc:
            out.append(("error", type(exc).__name__, str(exc)))
    return out


def test_every_direct_command_is_in_the_session():
    assert {"GET", "MGET", "SET", "DEL", "EXISTS", "EXPIRE", "PEXPIRE", "TTL", "PTTL", "INCR", "INCRBY", "DECRBY",
            "HGET", "HSET", "HDEL", "HGETALL", "SADD", "SREM", "SMEMBERS", "SCARD", "SISMEMBER", "ZADD", "ZREM",
            "ZRANGE", "ZRANGEBYSCORE", "ZSCORE", "ZCARD", "EVALSHA", "EVAL", "PUBLISH", "SPUBLISH"} == DIRECT


async def test_direct_commands_answer_what_the_ordinary_way_answers():
    direct, ordinary = Recorder(), fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer())
    try:
        mine = await script(direct)
        assert mine == await script(ordinary)
        assert mine[2] == b"v" and mine[15] == {b"a": b"1", b"b": b"x"}  # bytes, callbacks applied
        assert mine[-2][0] == "error" and "integer" in mine[-2][2]
        assert direct.ordinary == ["SCRIPT LOAD"]  # everything else took the direct way
    finally:
        await direct.aclose()
        await ordinary.aclose()


async def pipelines(r):
    """Pipelines: DIRECT only (replies, an error reply in its place), a transaction, a mixed one."""
    out = []
    pipe = r.pipeline(transaction=False)
    pipe.set("p", "1").incr("p").hset("ph", "f", "v").hgetall("ph")
    pipe.publish("nobody", "x").spublish("nobody", "y").get("p")
    out.append(await pipe.execute())
    pipe.incr("ph").get("p")  # the pipeline is empty again after execute
    replies = await pipe.execute(raise_on_error=False)
    out.append([type(replies[0]).__name__, replies[1]])
    pipe.incr("ph").get("p")
    try:
        await pipe.execute()
    except ResponseError as exc:
        out.append(("raised", str(exc)))
    async with r.pipeline(transaction=True) as tx:
        out.append(await tx.incr("p").get("p").execute())
    mixed = r.pipeline(transaction=False)
    out.append(await mixed.set("m", "1").lpush("l", "a").lrange("l", 0, -1).execute())  # LPUSH is not DIRECT
    return out


async def test_pipelines_answer_what_the_ordinary_way_answers():
    direct, ordinary = EmbeddedRedis(), fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer())
    try:
        mine = await pipelines(direct)
        assert mine == await pipelines(ordinary)
        assert mine[0] == [True, 2, 1, {b"f": b"v"}, 0, 0, b"2"]
        assert mine[1] == ["ResponseError", b"2"] and "Command # 1" in mine[2][1]
    finally:
        await direct.aclose()
        await ordinary.aclose()


async def test_a_pipeline_of_direct_commands_takes_no_pooled_connection():
    r = EmbeddedRedis()
    try:
        pool = r.connection_pool
        await r.pipeline(transaction=False).set("a", 1).get("a").execute()
        assert len(pool._available_connections) + len(pool._in_use_connections) == 0  # the kept one is not the pool's
        await r.pipeline(transaction=True).set("a", 1).execute()
        assert len(pool._available_connections) == 1  # a transaction: the ordinary way
    finally:
        await r.aclose()


async def test_a_missing_script_is_no_script_error():
    r = EmbeddedRedis()
    try:
        with pytest.raises(NoScriptError):
            await r.evalsha("0" * 40, 0)
    finally:
        await r.aclose()


async def test_direct_and_ordinary_commands_share_the_server_and_publishes_reach_subscribers():
    r = EmbeddedRedis()
    try:
        pubsub = r.pubsub()
        await pubsub.subscribe("bus")
        assert (await pubsub.get_message(timeout=1))["type"] == "subscribe"
        async with r.pipeline(transaction=True) as pipe:  # the ordinary way: its own connection
            await pipe.set("k", "from the pipeline").execute()
        assert await r.get("k") == b"from the pipeline"
        assert await r.publish("bus", "hello") == 1
        message = await pubsub.get_message(timeout=1)
        assert message is not None and message["data"] == b"hello"
        await pubsub.ssubscribe("shard")
        assert (await pubsub.get_message(timeout=1))["type"] == "ssubscribe"
        assert await r.spublish("shard", "one") == 1  # DIRECT, alone and in a pipeline
        assert await r.pipeline(transaction=False).spublish("shard", "two").execute() == [1]
        for data in (b"one", b"two"):
            message = await pubsub.get_message(timeout=1)
            assert message is not None and message["data"] == data
        await pubsub.aclose()
    finally:
        await r.aclose()


async def test_a_queued_reply_is_read_at_once_as_fakeredis_reads_it():
    """The bus's subscriber reads what is already queued without waiting: the same replies, an error
    reply raised, and a reply not queued yet still waited for."""
    r = EmbeddedRedis()
    try:
        await r.set("s", "text")
        conn = r.connection_pool.make_connection()
        await conn.connect()
        for command in (("GET", "s"), ("INCR", "s"), ("GET", "s")):
            await conn.send_command(*command)
        assert conn._sock.responses.qsize() == 3
        assert await conn.read_response() == b"text"
        with pytest.raises(ResponseError, match="integer"):
            await conn.read_response()
        assert await conn.read_response(disable_decoding=True) == b"text"
        later = asyncio.create_task(conn.read_response(timeout=1))
        await asyncio.sleep(0)
        assert not later.done()
        await conn.send_command("GET", "s")
        assert await later == b"text"
        await conn.disconnect()
    finally:
        await r.aclose()


async def test_concurrent_direct_commands_each_get_their_own_reply():
    r = EmbeddedRedis()
    try:
        await asyncio.gather(*(r.set(f"k{i}", i) for i in range(50)))
        assert await asyncio.gather(*(r.get(f"k{i}") for i in range(50))) == [str(i).encode() for i in range(50)]
    finally:
        await r.aclose()


def test_the_embedded_mode_uses_it(make_settings):
    assert isinstance(create_redis(make_settings(embedded=True)), EmbeddedRedis)


async def test_the_embedded_mode_end_to_end(harness_factory):
    """Embedded Redis and SQLite together: an AI answer, a handoff, an agent's claim, messages both ways
    in order, and the live record read back (the GET of every message takes the direct way)."""
    h = await harness_factory(embedded=True)
    assert isinstance(h.app[keys.REDIS], EmbeddedRedis) and h.app[keys.STORE].db.dialect == "sqlite"
    agent = await h.connect("agent-1", role="agent")
    await agent.ok("presence.set", status="online")
    cust = await h.connect("cust-1")
    cid = (await cust.ok("conversation.start"))["conversation"]["id"]
    await cust.ok("message.send", conversation_id=cid, client_msg_id="c0", content="hello")
    await cust.event("message.created", lambda f: f["data"]["message"]["sender_type"] == "ai")
    await cust.ok("handoff.request", conversation_id=cid)
    await h.app[keys.ROUTER].drain()
    assigned = await agent.event("conversation.assigned")
    assert assigned["data"]["conversation"]["agent_id"] == "agent-1"
    await agent.ok("message.send", conversation_id=cid, client_msg_id="a1", content="agent here")
    await cust.event("message.created", lambda f: f["data"]["message"]["sender_type"] == "agent")
    sent = [await cust.ok("message.send", conversation_id=cid, client_msg_id=f"c{i}", content=f"m{i}")
            for i in range(1, 4)]
    seqs = [s["message"]["seq"] for s in sent]
    assert seqs == list(range(seqs[0], seqs[0] + 3))  # gapless
    record = await h.repository.get(cid)
    assert record is not None and (record.state, record.agent_id) == ("human", "agent-1")
