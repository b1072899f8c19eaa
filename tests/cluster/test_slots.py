"""Where the keys land on a Redis Cluster (the server's own CLUSTER KEYSLOT): the keys each script
or MULTI uses share a slot, and the keys of different conversations spread over the masters."""

from __future__ import annotations

from states import redis_keys

AGENTS = ["agent-1", "a{b}", "{x}", "张三", "x" * 200]  # braces in an id never move its keys


async def slot(cluster, key: str) -> int:
    return int(await cluster.cluster_keyslot(key))


async def test_every_agent_key_is_in_the_one_slot_of_the_agents_tag(cluster):
    agent_keys = [redis_keys.AGENTS_ONLINE, redis_keys.AGENTS_LEASE, redis_keys.AGENTS_LAST_ASSIGNED]
    for agent in AGENTS:
        agent_keys += [redis_keys.presence(agent), redis_keys.agent_load(agent)]
    assert {await slot(cluster, key) for key in agent_keys} == {await slot(cluster, redis_keys.AGENTS_TAG)}


async def test_the_presence_script_and_multi_run_on_the_cluster(cluster):
    """The re-assert script's keys (presence hash + online set) and the status script's (presence hash +
    online + lease) are accepted by the cluster as one slot: no CROSSSLOT."""
    from chat.presence import REASSERT_SCRIPT, SET_STATUS_SCRIPT

    for agent in AGENTS:
        done = await cluster.eval(REASSERT_SCRIPT, 2, redis_keys.presence(agent), redis_keys.AGENTS_ONLINE,
                                  agent, "online", b'["t"]', 3, 1000, 1)
        assert done == 1
        stamp = await cluster.eval(SET_STATUS_SCRIPT, 3, redis_keys.presence(agent), redis_keys.AGENTS_ONLINE,
                                   redis_keys.AGENTS_LEASE, agent, "away", b'["t"]', 3, 1000, 2000)
        assert int(stamp) > 1
    assert await cluster.zcard(redis_keys.AGENTS_ONLINE) == 0


async def test_the_turn_locks_scripts_run_on_the_cluster(cluster):
    """The take, renew and release scripts touch the lock and its asked flag: one slot. An id whose lock key
    no hash tag can match (a `}` in what the cluster hashes) has no flag: its release always says "look"."""
    from chat.ai_locks import TurnLocks

    here, elsewhere = TurnLocks(cluster, 15, lambda _: None), TurnLocks(cluster, 15, lambda _: None)
    for cid in ["conversation-1", *AGENTS, "x}y", "a{}b"]:
        asked = redis_keys.ai_asked(cid)
        assert asked is None or await slot(cluster, asked) == await slot(cluster, redis_keys.ai_turn(cid))
        token = await here.take(cid)
        assert token and await elsewhere.take(cid) is None
        await here.renew()
        assert await here.release(cid, token) is True  # asked by the busy take
        token = await here.take(cid)
        assert token and await here.release(cid, token) is (asked is None)
    assert redis_keys.ai_asked("x}y") is None and redis_keys.ai_asked("a{}b") is None


async def test_conversation_keys_spread_over_the_masters(cluster):
    cids = [f"conversation-{i}" for i in range(40)]  # fixed ids: 40 random ones may share a slot by chance
    for key_of in (redis_keys.session, redis_keys.ai_turn):
        assert len({await slot(cluster, key_of(cid)) for cid in cids}) == len(cids)  # no tag binds them
        assert len({cluster.get_node_from_key(key_of(cid)).name for cid in cids}) == 3
    # the live record key is PROTOCOL 5's session:<id> (what the migration writes), untagged
    assert redis_keys.session("c1") == "session:c1"
