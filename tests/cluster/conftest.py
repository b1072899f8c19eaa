"""Fixtures of the Redis Cluster tests: the app on the session's local three-master cluster
(`redis_cluster`, tests/conftest.py), flushed before each test, and a client of it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import redis

from chat.redis_client import ServiceRedisCluster, create_redis
from chat.settings import Settings, parse_redis_url
from tests.conftest import Harness


@pytest.fixture
def cluster_settings(make_settings, redis_cluster) -> Settings:
    """Settings of an app on the cluster (REDIS_CLUSTER=true); the cluster is flushed first."""
    flush = redis.RedisCluster.from_url(redis_cluster.url)
    try:
        flush.flushall(target_nodes=redis.RedisCluster.PRIMARIES)
    finally:
        flush.close()
    return make_settings(redis=parse_redis_url(redis_cluster.url), redis_cluster=True)


@pytest.fixture
async def cluster(cluster_settings) -> AsyncIterator[ServiceRedisCluster]:
    """The service's own cluster client (what the app gets), to look at the keys."""
    client = create_redis(cluster_settings)
    assert isinstance(client, ServiceRedisCluster)
    await client.initialize()  # the slot map, so tests may ask which node holds a key
    yield client
    await client.aclose()


@pytest.fixture
def cluster_harness_factory(harness_factory, cluster_settings):
    """Apps on the cluster: `await cluster_harness_factory(**setting_overrides)`."""

    async def make(**overrides) -> Harness:
        return await harness_factory(redis=cluster_settings.redis, redis_cluster=True, **overrides)

    return make


@pytest.fixture
async def cluster_harness(cluster_harness_factory) -> Harness:
    """One app on the cluster, with the scripted AI provider."""
    return await cluster_harness_factory()
