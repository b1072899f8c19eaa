"""The Redis client against a private redis-server the test restarts: the first command after a
restart succeeds (one retry on a fresh connection), and only a dead connection is retried; the
Redis Cluster client (REDIS_CLUSTER=true) is built with the same policy (tests/cluster runs it)."""

from __future__ import annotations

import asyncio
import shutil
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from redis.asyncio.connection import SSLConnection
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from chat.redis_client import ServiceRedisCluster, create_redis, send_batch, stale_connection_retry
from chat.settings import Settings, SettingsError

READY = b"Ready to accept connections"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PrivateRedis:
    """A redis-server on its own port and directory, without persistence."""

    def __init__(self, directory: Path, port: int) -> None:
        self.directory, self.port = directory, port
        self.process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        self.process = await asyncio.create_subprocess_exec(
            "redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
            "--dir", str(self.directory), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )
        assert self.process.stdout is not None
        async with asyncio.timeout(10):  # wait on its own "ready" line, not on a clock
            while READY not in (line := await self.process.stdout.readline()):
                assert line, "redis-server exited before it was ready"

    async def stop(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.terminate()
            await self.process.wait()


@pytest.fixture
async def private_redis(tmp_path) -> AsyncIterator[PrivateRedis]:
    # ./dev test installs redis-server (Debian's package) when it is missing: never a skip
    assert shutil.which("redis-server") is not None, "redis-server is not installed (./dev test installs it)"
    server = PrivateRedis(tmp_path, free_port())
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def client(private_redis, tmp_path):
    """The service's client (create_redis) of the private server."""
    settings = Settings.from_env({"REDIS_URL": f"redis://127.0.0.1:{private_redis.port}/0",
                                  "JWT_SECRET_KEY": "k" * 32, "CHAT_DATA_DIR": str(tmp_path)})
    service_client = create_redis(settings)
    yield service_client
    await service_client.aclose()


async def test_the_first_command_after_a_restart_succeeds(private_redis, client):
    await client.set("k", "before")
    assert await client.get("k") == b"before"  # the pool now holds a connection to this process
    assert await send_batch(client, [("GET", "k")]) == [b"before"]  # and the batches' kept one
    subscription = client.pubsub()
    await subscription.subscribe("events")
    await private_redis.stop()
    await private_redis.start()  # empty: --save ""
    assert await client.get("k") is None  # the stale connection is replaced, the GET answered
    assert await client.incr("n") == 1  # ran once
    assert await client.set("lock", "me", nx=True) is True
    assert await send_batch(client, [("INCR", "n"), ("GET", "n")]) == [2, b"2"]  # its kept one too, once
    # a subscription's drop is left to its owner to see (the bus counts, logs and resubscribes)
    assert subscription.connection is not None and subscription.connection.retry.get_retries() == 0
    await subscription.aclose()


async def test_a_batch_answers_each_command_in_its_place(client, tmp_path):
    replies = await send_batch(client, [("SET", "k", "v"), ("EVAL", "return redis.call('LLEN', KEYS[1])", 1, "k"),
                                        ("GET", "k")])
    assert replies[0] is True and replies[2] == b"v"
    assert isinstance(replies[1], ResponseError) and "WRONGTYPE" in str(replies[1])  # in its place, not raised
    # on the cluster's pipeline the same (tests/cluster); here the embedded client's pipeline
    embedded = create_redis(Settings.from_env({"JWT_SECRET_KEY": "k" * 32, "CHAT_DATA_DIR": str(tmp_path)}))
    assert isinstance((await send_batch(embedded, [("SET", "k", "v"), ("LLEN", "k")]))[1], ResponseError)
    await embedded.aclose()


async def test_a_batch_cancelled_while_it_waits_leaves_no_reply_behind(client):
    waiting = asyncio.create_task(send_batch(client, [("BLPOP", "queue", 0)]))
    while b"cmd=blpop" not in await client.execute_command("CLIENT", "LIST"):  # the batch waits in Redis
        assert not waiting.done()
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    await client.rpush("queue", "late")  # an answer to the cancelled batch, were it still on its connection
    assert await send_batch(client, [("PING",)]) == [True]  # the next batch's own answer
    assert await client.lrange("queue", 0, -1) == [b"late"]  # nobody popped it


async def test_a_batch_without_an_answer_times_out_whole_and_the_next_one_is_answered(client, monkeypatch):
    monkeypatch.setattr("chat.redis_client.BATCH_TIMEOUT_S", 0.2)  # the time under test: Redis never answers
    with pytest.raises(RedisTimeoutError):
        await send_batch(client, [("PING",), ("BLPOP", "queue", 0)])
    await client.rpush("queue", "late")
    assert await send_batch(client, [("PING",)]) == [True]  # its own answer, on a new connection
    assert await client.lrange("queue", 0, -1) == [b"late"]  # the timed-out BLPOP was not left waiting


class StubPipeline:
    """A cluster pipeline's answers: redis-py's puts a lost connection among the replies too."""

    def __init__(self, replies: list) -> None:
        self.replies, self.commands = replies, []

    def execute_command(self, *args) -> None:
        self.commands.append(args)

    async def execute(self, raise_on_error: bool = True) -> list:
        return self.replies


class StubCluster:
    def __init__(self, replies: list) -> None:
        self.replies = replies

    def pipeline(self, transaction: bool = True) -> StubPipeline:
        return StubPipeline(self.replies)


async def test_a_pipeline_batch_raises_a_lost_connection_and_keeps_error_replies_in_place():
    refused = ResponseError("WRONGTYPE")
    assert await send_batch(StubCluster([1, refused]), [("SPUBLISH", "c", "p"), ("EVAL", "s", 0)]) == [1, refused]
    with pytest.raises(RedisConnectionError):  # not a result: the publisher's callers see the failure
        await send_batch(StubCluster([1, RedisConnectionError("lost")]), [("SPUBLISH", "c", "p"), ("GET", "k")])


def test_only_a_dead_connection_is_retried_and_only_once():
    retry = stale_connection_retry()
    assert retry.get_retries() == 1
    assert RedisConnectionError in retry._supported_errors  # noqa: SLF001 - redis-py has no getter
    assert RedisTimeoutError not in retry._supported_errors  # a timed-out command may still run: never resent


def cluster_settings(**env: str) -> Settings:
    return Settings.from_env({"JWT_SECRET_KEY": "k" * 32, "REDIS_CLUSTER": "true", **env})


async def test_redis_cluster_names_a_seed_node_and_keeps_the_policy():
    settings = cluster_settings(REDIS_URL="rediss://:pw@10.0.0.5:7000/0?ssl_ca_certs=/ca.pem")
    assert settings.redis_cluster and "(a cluster node)" in settings.describe() and "pw" not in settings.describe()
    client = create_redis(settings, client_name="chat-api-x")
    try:
        assert isinstance(client, ServiceRedisCluster)
        assert client.retry.get_retries() == 1  # nothing is connected until the first command
        assert RedisConnectionError in client.ERRORS_ALLOW_RETRY
        assert RedisTimeoutError not in client.ERRORS_ALLOW_RETRY  # a timed-out command may still run
        (seed,) = client.startup_nodes
        assert (seed.host, seed.port) == ("10.0.0.5", 7000)
        options = seed.connection_kwargs
        assert options["client_name"] == "chat-api-x" and options["password"] == "pw"
        assert (options["socket_timeout"], options["socket_connect_timeout"]) == (10, 5)
        assert seed.connection_class is SSLConnection and options["ssl_ca_certs"] == "/ca.pem"
    finally:
        await client.aclose()


@pytest.mark.parametrize(("env", "variable", "message"), [
    ({}, "REDIS_CLUSTER", "needs REDIS_URL"),
    ({"REDIS_URL": "redis://10.0.0.5:7000/3"}, "REDIS_URL", "only database 0"),
    ({"REDIS_URL": "unix:///run/redis.sock"}, "REDIS_URL", "over TCP"),
    ({"REDIS_URL": "redis://10.0.0.5:7000", "REDIS_CLUSTER": "yes please"}, "REDIS_CLUSTER", "true or false"),
])
def test_a_cluster_setting_that_cannot_work_is_refused(env, variable, message):
    with pytest.raises(SettingsError) as refused:
        cluster_settings(**env)
    assert refused.value.variable == variable and message in str(refused.value)


def test_one_server_by_default():
    settings = Settings.from_env({"JWT_SECRET_KEY": "k" * 32, "REDIS_URL": "redis://127.0.0.1:6379/3"})
    assert not settings.redis_cluster
    assert not isinstance(create_redis(settings), ServiceRedisCluster)
