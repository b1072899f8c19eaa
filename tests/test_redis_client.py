"""The Redis client against a private redis-server the test restarts: the first command after a
restart succeeds (one retry on a fresh connection), and only a dead connection is retried."""

from __future__ import annotations

import asyncio
import shutil
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from chat.redis_client import create_redis, stale_connection_retry
from chat.settings import Settings

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


async def test_the_first_command_after_a_restart_succeeds(private_redis, tmp_path):
    settings = Settings.from_env({"REDIS_URL": f"redis://127.0.0.1:{private_redis.port}/0",
                                  "JWT_SECRET_KEY": "k" * 32, "CHAT_DATA_DIR": str(tmp_path)})
    client = create_redis(settings)
    try:
        await client.set("k", "before")
        assert await client.get("k") == b"before"  # the pool now holds a connection to this process
        subscription = client.pubsub()
        await subscription.subscribe("events")
        await private_redis.stop()
        await private_redis.start()  # empty: --save ""
        assert await client.get("k") is None  # the stale connection is replaced, the GET answered
        assert await client.incr("n") == 1  # ran once
        assert await client.set("lock", "me", nx=True) is True
        # a subscription's drop is left to its owner to see (the bus counts, logs and resubscribes)
        assert subscription.connection is not None and subscription.connection.retry.get_retries() == 0
        await subscription.aclose()
    finally:
        await client.aclose()


def test_only_a_dead_connection_is_retried_and_only_once():
    retry = stale_connection_retry()
    assert retry.get_retries() == 1
    assert RedisConnectionError in retry._supported_errors  # noqa: SLF001 - redis-py has no getter
    assert RedisTimeoutError not in retry._supported_errors  # a timed-out command may still run: never resent
