"""Fixtures for the cut-over tests: Redis dbs 10-13 and a MariaDB schema, each emptied before and after."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from tests.cutover.backups import reset_schema
from tests.cutover.support import OWN_DBS, redis_url


@pytest.fixture
def dbs() -> Iterator[dict[int, redis.Redis]]:
    """Clients for dbs 10-13, each emptied (FLUSHDB, never FLUSHALL) before and after the test."""
    clients = {db: redis.Redis.from_url(redis_url(db)) for db in OWN_DBS}
    for client in clients.values():
        client.flushdb()
    yield clients
    for client in clients.values():
        client.flushdb()
        client.close()


@pytest.fixture
def mysql_url(mysql_database_url):
    """The run's MariaDB database with the full schema and empty tables, before and after."""
    reset_schema(mysql_database_url)
    yield mysql_database_url
    reset_schema(mysql_database_url)
