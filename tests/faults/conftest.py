"""Fixtures of the fault-injection suite: private Redis and MariaDB servers, the service as
child processes, a slow AI provider and the HTTP session of the clients.

MariaDB is started once per session (it costs seconds) and each case gets its own database;
Redis is started per case. Nothing here uses the shared servers of the other tests.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import aiohttp
import pytest

from tests.faults.load import SECRET, Connect
from tests.faults.servers import MariaDB, RedisServer, Services
from tests.faults.slow_ai import SlowAI


@pytest.fixture(scope="session")
def mariadb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MariaDB]:
    """A private mariadbd for the whole session."""
    server = MariaDB(tmp_path_factory.mktemp("mariadb"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A private, empty redis-server for one case."""
    server = RedisServer(tmp_path / "redis")
    server.start()
    yield server
    server.crash()


@pytest.fixture
def database(mariadb: MariaDB) -> Iterator[str]:
    """A fresh database on the private MariaDB; dropped after the case."""
    name = mariadb.create_database(f"faults_{uuid.uuid4().hex[:10]}")
    yield name
    if mariadb.process.running:
        conn = mariadb.connect()
        with conn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS {name}")
        conn.close()


@pytest.fixture
def sql(mariadb: MariaDB, database: str) -> Connect:
    """Connections to the case's database (fresh each time: the server may restart)."""
    return lambda: mariadb.connect(database)


@pytest.fixture
def service_env(mariadb: MariaDB, database: str, redis_server: RedisServer) -> dict[str, str]:
    """The environment every instance of the case shares (edit it before starting one)."""
    return {
        "DATABASE_URL": f"mysql://root@127.0.0.1:{mariadb.port}/{database}",
        "REDIS_URL": redis_server.url,
        "JWT_SECRET_KEY": SECRET,
        "BUS_CHANNEL": f"faults:{uuid.uuid4().hex[:8]}",
    }


@pytest.fixture
def services(tmp_path: Path, service_env: dict[str, str]) -> Iterator[Services]:
    """The case's service instances, killed after it."""
    started = Services(tmp_path, service_env)
    yield started
    started.stop()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    """The clients' HTTP session (no connection limit: hundreds of sockets)."""
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        yield session


@pytest.fixture
async def slow_ai() -> AsyncIterator[SlowAI]:
    """A slow OpenAI-compatible provider in the test's loop."""
    provider = SlowAI()
    await provider.start()
    yield provider
    await provider.close()


@pytest.fixture(autouse=True)
def wall_time(request: pytest.FixtureRequest) -> Iterator[Callable[[], float]]:
    """Print each case's wall time."""
    began = time.monotonic()
    yield lambda: time.monotonic() - began
    print(f"[time] {request.node.name}: {time.monotonic() - began:.1f}s")
