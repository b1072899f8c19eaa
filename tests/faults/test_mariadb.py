"""Database and dependency faults: MariaDB restarted mid-load; Redis and MariaDB slowed and stalled."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import pytest

from tests.faults.load import Connect, Load, Plan, run_case
from tests.faults.servers import MariaDB, RedisServer, Services, TcpProxy
from tests.faults.slow_ai import SlowAI

LATENCY_S = 0.02
STALL_S = 3.0


async def test_mariadb_restart(services: Services, mariadb: MariaDB, http: aiohttp.ClientSession,
                               sql: Connect) -> None:
    """mariadbd stops (clean shutdown) and starts again mid-load: nothing acked is lost, nothing stuck."""
    service = await services.start("svc")
    load = Load(http, [service.url], Plan(), "mariadb-restart")

    async def fault() -> None:
        await asyncio.to_thread(mariadb.restart)

    await run_case(load, fault, sql)


async def test_mariadb_restart_mid_ai_stream(services: Services, mariadb: MariaDB, slow_ai: SlowAI,
                                             http: aiohttp.ClientSession, sql: Connect) -> None:
    """mariadbd restarts after the last message is acknowledged, while the replies to it stream: the
    turns that cannot store their reply are answered later (or handed over), nothing stuck."""
    service = await services.start("svc", AI_PROVIDER="openai", AI_BASE_URL=slow_ai.base_url, AI_MODEL="slow")
    load = Load(http, [service.url], Plan(customers=10, messages=4, break_at=1.0), "mariadb-restart-mid-ai")

    async def fault() -> None:
        await slow_ai.streaming.wait()
        await asyncio.to_thread(mariadb.restart)

    await run_case(load, fault, sql)


@pytest.fixture
async def proxies(redis_server: RedisServer, mariadb: MariaDB) -> AsyncIterator[tuple[TcpProxy, TcpProxy]]:
    """TCP proxies in front of the case's Redis and of MariaDB."""
    pair = (TcpProxy(redis_server.port), TcpProxy(mariadb.port))
    for proxy in pair:
        await proxy.start()
    yield pair
    for proxy in pair:
        await proxy.close()


async def test_slow_dependencies(services: Services, service_env: dict[str, str], proxies: tuple[TcpProxy, TcpProxy],
                                 http: aiohttp.ClientSession, sql: Connect) -> None:
    """Every byte to Redis and MariaDB delayed, then Redis stalled for a few seconds, then MariaDB:
    commands wait or fail `unavailable` and are retried; the books balance."""
    redis_proxy, db_proxy = proxies
    database_url = service_env["DATABASE_URL"].rsplit("/", 1)
    service = await services.start("svc", REDIS_URL=f"redis://127.0.0.1:{redis_proxy.port}/0",
                             DATABASE_URL=f"mysql://root@127.0.0.1:{db_proxy.port}/{database_url[1]}")
    load = Load(http, [service.url], Plan(), "slow-deps")

    async def fault() -> None:
        redis_proxy.latency_s = db_proxy.latency_s = LATENCY_S
        for proxy in (redis_proxy, db_proxy):
            proxy.stall(STALL_S)
            await proxy.resumed()
        redis_proxy.latency_s = db_proxy.latency_s = 0.0

    await run_case(load, fault, sql)
