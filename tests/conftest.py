"""Shared fixtures: the real Redis and MariaDB (TEST_REDIS_URL, TEST_DATABASE_URL), SQLite, fakes, and
the running app with its sockets (`harness`).

Every test database is created fresh for the run and dropped after it; Redis tests use
logical database 14 (the script tests use 10-13) and unique ids, never FLUSHALL.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import replace
from urllib.parse import urlsplit, urlunsplit

import pytest
import redis.asyncio as aioredis

from chat import keys
from chat.app import create_app
from chat.auth import issue_token
from chat.settings import Settings, parse_database_url, parse_redis_url
from chat.store import Store, connect
from states.ids import new_id
from tests.legacy_tables import fresh_mysql_database
from tests.wsclient import WS, ScriptedProvider

TEST_REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379")
TEST_DATABASE_URL = os.environ.get("TEST_DATABASE_URL", "mysql://root@127.0.0.1:3306/test")
SERVICE_REDIS_DB = int(os.environ.get("TEST_SERVICE_REDIS_DB", "14"))  # parallel runs: give each its own


def redis_url(db: int = SERVICE_REDIS_DB) -> str:
    """TEST_REDIS_URL with its database number replaced."""
    parts = urlsplit(TEST_REDIS_URL)
    return urlunsplit((parts.scheme, parts.netloc, f"/{db}", "", ""))


@pytest.fixture(scope="session")
def mysql_database_url():
    """A fresh MariaDB/MySQL database for this test run, dropped at the end."""
    with fresh_mysql_database(TEST_DATABASE_URL, prefix="chat_test") as url:
        yield url


@pytest.fixture(params=["mysql", "sqlite"])
def database_url(request, tmp_path):
    """Each store test runs against MariaDB and against SQLite."""
    if request.param == "mysql":
        return request.getfixturevalue("mysql_database_url")
    return f"sqlite:///{tmp_path}/chat.db"


@pytest.fixture
async def store(database_url):
    """A Store on an upgraded schema."""
    db = await connect(parse_database_url(database_url), pool_size=20)
    s = Store(db)
    await s.migrations.upgrade()
    yield s
    await db.close()


@pytest.fixture
async def mysql_store(mysql_database_url):
    """A Store on MariaDB only."""
    db = await connect(parse_database_url(mysql_database_url), pool_size=20)
    s = Store(db)
    await s.migrations.upgrade()
    yield s
    await db.close()


@pytest.fixture
async def redis():
    """A client of the real Redis, database 14."""
    client = aioredis.Redis.from_url(redis_url())
    yield client
    await client.aclose()


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory):
    """A local Redis Cluster of three masters for the whole session (tests/cluster/servers.py);
    `.url` is a REDIS_URL for REDIS_CLUSTER=true. It is private: tests may flush it."""
    from tests.cluster.servers import LocalCluster

    cluster = LocalCluster(tmp_path_factory.mktemp("redis-cluster"))
    cluster.start()
    yield cluster
    cluster.stop()


BUS_CHANNEL = f"chat:events:test:{uuid.uuid4().hex[:8]}"  # pub/sub is server-wide: keep runs apart


@pytest.fixture
def make_settings(tmp_path):
    """Settings for an app on the real servers (or embedded with embedded=True).

    Service tests own Redis database 14: it is flushed before each test that builds
    settings, so presence and load sets never leak from one test into the next.
    """
    import redis as sync_redis

    sync_redis.Redis.from_url(redis_url()).flushdb()

    def make(*, embedded: bool = False, database_url: str | None = None, **overrides) -> Settings:
        if embedded:
            base = Settings.from_env({"CHAT_DATA_DIR": str(tmp_path / "data")})
        else:
            base = Settings.from_env(
                {
                    "REDIS_URL": redis_url(),
                    "DATABASE_URL": database_url or f"sqlite:///{tmp_path}/chat.db",
                    "JWT_SECRET_KEY": "test-secret-0123456789abcdef0123456789",
                    "CHAT_DATA_DIR": str(tmp_path / "data"),
                }
            )
        # the AI sweep answers leftovers of other tests in the shared database: tests that need it ask
        return replace(base, **{"bus_channel": BUS_CHANNEL, "ai_sweep_interval_s": 0, **overrides})

    return make


# --- a running app and its sockets (the service's own tests) --------------------------------

class Harness:
    """One running app and ways to talk to it."""

    def __init__(self, client, app, provider):
        self.client = client
        self.app = app
        self.provider = provider
        self.settings = app[keys.SETTINGS]

    @property
    def ops(self):
        return self.app[keys.OPERATIONS]

    @property
    def repository(self):
        return self.app[keys.CONVERSATIONS]

    def token(self, sub: str, role: str = "customer", **kw) -> str:
        return issue_token(self.settings.jwt_secret_key, sub, role, **kw)

    async def connect(self, sub: str | None = None, role: str = "customer", **kw) -> WS:
        """A socket authenticated by URL token (or not at all when sub is None)."""
        url = "/ws" if sub is None else f"/ws?token={self.token(sub, role, **kw)}"
        return WS(await self.client.ws_connect(url, autoping=True))

    async def drain_ai(self) -> None:
        await self.app[keys.AI_RUNNER].drain()

    @property
    def timers(self):
        return self.app[keys.TIMERS]


@pytest.fixture
def sim_clock():
    """Simulated wall-clock time for the whole service (states.clock.now_ms): move it with advance()."""
    from states.clock import SimulatedClock, set_wall_clock

    clock = SimulatedClock()
    set_wall_clock(clock.ns)
    yield clock
    set_wall_clock(None)


@pytest.fixture
def provider():
    return ScriptedProvider()


@pytest.fixture
def harness_factory(aiohttp_client, make_settings, provider):
    async def make(database_url: str | None = None, provider_=provider, **overrides) -> Harness:
        """provider_=None builds the provider the settings name."""
        app = create_app(make_settings(database_url=database_url, **overrides), ai_provider=provider_)
        client = await aiohttp_client(app)
        await app[keys.BUS].subscribed.wait()
        return Harness(client, app, app[keys.AI_PROVIDER])

    return make


@pytest.fixture
async def harness(harness_factory) -> Harness:
    return await harness_factory()


__all__ = ["new_id", "parse_redis_url", "redis_url"]
