"""Fixtures for the cut-over script tests: the scripts on sys.path and Redis dbs 10-13."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

# Works whatever pytest's import mode: this directory and scripts/ become importable.
if str(Path(__file__).resolve().parent) not in sys.path:
    sys.path.insert(0, str(Path(__file__).resolve().parent))

from script_support import OWN_DBS, add_scripts_to_path, redis_url

add_scripts_to_path()


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
