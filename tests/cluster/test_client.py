"""The service's Redis Cluster client against the local three-master cluster: it finds every
master from one seed, sends each key to its slot's master, names itself on every node, and a
command on a connection the server dropped is sent again once."""

from __future__ import annotations

import redis
from redis.asyncio.cluster import RedisCluster

from chat.redis_client import create_redis


async def test_one_seed_reaches_every_master(cluster, redis_cluster):
    keys = [f"k:{i}" for i in range(60)]  # enough keys to land on all three masters
    for key in keys:
        await cluster.set(key, key)
    assert [await cluster.get(key) for key in keys] == [key.encode() for key in keys]
    masters = {cluster.get_node_from_key(key).port for key in keys}
    assert masters == set(redis_cluster.ports)
    for node in cluster.get_primaries():  # each key lives on its slot's master, nowhere else
        here = {k.decode() for k in await cluster.keys("k:*", target_nodes=node)}
        assert here == {key for key in keys if cluster.get_node_from_key(key) == node}


async def test_the_client_name_shows_on_every_master(cluster_settings, redis_cluster):
    client = create_redis(cluster_settings, client_name="chat-api-cluster-test")
    try:
        await client.ping(target_nodes=RedisCluster.ALL_NODES)
        listed = await client.client_list(target_nodes=RedisCluster.PRIMARIES)
        names = {entry["name"] for entries in listed.values() for entry in entries}
        assert "chat-api-cluster-test" in names and len(listed) == len(redis_cluster.ports)
    finally:
        await client.aclose()


async def test_a_command_on_a_dropped_connection_is_sent_again_once(cluster, redis_cluster):
    """A master dropped the client's pooled connections (a restart, an idle timeout): the next
    command on each master reconnects and runs once."""
    keys = [f"n:{i}" for i in range(30)]
    for key in keys:
        assert await cluster.incr(key) == 1  # the pool now holds a connection to every master
    for port in redis_cluster.ports:  # each master drops every client but the one asking
        killer = redis.Redis(host="127.0.0.1", port=port)
        try:
            assert killer.client_kill_filter(_type="normal", skipme=True) >= 1
        finally:
            killer.close()
    assert [await cluster.incr(key) for key in keys] == [2] * len(keys)  # answered, each run once
