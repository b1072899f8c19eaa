"""The bus on a Redis Cluster (the session's local three masters): sharded channels spread over the
masters, one subscriber connection per master that serves a wanted channel, each instance
receives only its own channels, and a lost subscriber comes back with all of them."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from redis.asyncio.cluster import RedisCluster

from chat.bus import Bus, Interest, ToConversation, ToUser
from states import redis_keys
from tests.bus.recorder import Recorder


@pytest.fixture
async def cluster_client(redis_cluster):
    client = RedisCluster.from_url(redis_cluster.url, client_name=f"bus-test-{uuid.uuid4().hex[:8]}")
    await client.initialize()
    yield client
    await client.aclose()


def spread(client: RedisCluster, interest: Interest, count: int) -> list[str]:
    """Conversation ids whose channels land on every master."""
    ids, masters = [], set()
    for i in range(200):
        cid = f"conv-{i}"
        node = client.get_node_from_key(interest.conversation(cid))
        ids.append(cid)
        masters.add(node.name)
        if len(ids) >= count and len(masters) == 3:
            return ids
    raise AssertionError("the channels did not spread over three masters")


async def test_channels_on_every_master_reach_only_the_instance_that_wants_them(cluster_client):
    prefix = f"bus-cluster:{uuid.uuid4().hex[:8]}"
    names = Interest(prefix)
    cids = spread(cluster_client, names, 6)
    mine, theirs = cids[::2], cids[1::2]
    listener_sink, other_sink = Recorder(), Recorder()
    listener = Bus(cluster_client, listener_sink, Interest(prefix))
    other = Bus(cluster_client, other_sink, Interest(prefix))
    await listener.start()
    await other.start()
    for cid in mine:
        listener.interest.want(names.conversation(cid))
    for cid in theirs:
        other.interest.want(names.conversation(cid))
    await asyncio.wait_for(listener.settled(), timeout=10)
    await asyncio.wait_for(other.settled(), timeout=10)
    publisher = Bus(cluster_client, Recorder(), Interest(prefix))
    await publisher.start()
    for cid in cids:
        await publisher.publish(ToConversation(cid, "cust", {"cid": cid}))
    await listener_sink.until_count(len(mine))
    await other_sink.until_count(len(theirs))
    assert sorted(m.frame["cid"] for m in listener_sink.got) == sorted(mine)
    assert sorted(m.frame["cid"] for m in other_sink.got) == sorted(theirs)
    masters = {cluster_client.get_node_from_key(names.conversation(c)).name for c in mine}
    masters.add(cluster_client.get_node_from_key(names.presence).name)
    assert set(listener._shards) == masters  # one subscriber connection per master it needs
    for bus in (listener, other, publisher):
        await bus.stop()


async def test_a_lost_subscriber_on_one_master_resubscribes_its_channels(cluster_client):
    prefix = f"bus-cluster:{uuid.uuid4().hex[:8]}"
    names = Interest(prefix)
    cids = spread(cluster_client, names, 3)
    sink = Recorder()
    listener = Bus(cluster_client, sink, Interest(prefix))
    await listener.start()
    for cid in cids:
        listener.interest.want(names.conversation(cid))
    await asyncio.wait_for(listener.settled(), timeout=10)
    node = cluster_client.get_node_from_key(names.conversation(cids[0]))
    name = node.connection_kwargs["client_name"]
    victims = [c["id"] for c in await cluster_client.client_list(_type="pubsub", target_nodes=node)
               if c.get("name") == name]
    assert len(victims) == 1  # one subscriber connection on that master
    await cluster_client.client_kill_filter(_id=victims[0], target_nodes=node)
    await asyncio.wait_for(listener.wait_resubscribed(1), timeout=10)
    await asyncio.wait_for(listener.settled(), timeout=10)
    publisher = Bus(cluster_client, Recorder(), Interest(prefix))
    await publisher.start()
    for cid in cids:
        await publisher.publish(ToConversation(cid, "cust", {"cid": cid}))
    await publisher.publish(ToUser("nobody", {"not": "wanted"}))
    await sink.until_count(len(cids))
    assert sorted(m.frame["cid"] for m in sink.got) == sorted(cids)
    for bus in (listener, publisher):
        await bus.stop()


async def test_a_read_in_order_is_routed_to_its_keys_master(cluster_client):
    prefix = f"bus-cluster:{uuid.uuid4().hex[:8]}"
    names = Interest(prefix)
    bus = Bus(cluster_client, Recorder(), Interest(prefix))
    await bus.start()
    script = "redis.call('RPUSH', KEYS[1], ARGV[1]) redis.call('SPUBLISH', ARGV[2], ARGV[3]) return 1"
    cids = spread(cluster_client, names, 6)
    keys = {cid: redis_keys.ai_stream(names.conversation(cid)) for cid in cids}  # the channel's slot
    pushed = await asyncio.gather(*(bus.publish_scripted(ToConversation(cid, "cust", {"n": cid}), script,
                                                           [keys[cid]], [cid], deliver_first=True) for cid in cids))
    for cid in cids:  # one at a time: each script alone in its batch, on its key's master
        message = ToConversation(cid, "cust", {"n": cid})
        assert await bus.publish_scripted(message, script, [keys[cid]], [f"{cid} alone"], deliver_first=True) == 1
    reads = await asyncio.gather(*(bus.read_in_order("LRANGE", keys[cid], 0, -1) for cid in cids))
    assert pushed == [1] * len(cids)
    assert [[item.decode() for item in read] for read in reads] == [[cid, f"{cid} alone"] for cid in cids]
    await cluster_client.delete(*keys.values())
    await bus.stop()
