"""The service's main flows on a local three-master Redis Cluster (REDIS_CLUSTER=true): a
conversation from start to close, handoff and agents (presence, routing, claim, reply, release),
the quota, the AI turn and its lock, the live record rebuilt from SQL, presence re-asserted after
the cluster lost it, `db adopt` over every master, two instances sharing one cluster, /health and
the agents API (tests/cluster/test_concurrent.py: the same with concurrent traffic)."""

from __future__ import annotations

import uuid
from dataclasses import replace

import orjson
from redis.asyncio.cluster import RedisCluster

from chat import keys
from chat.adopt import adopt
from states import redis_keys


def is_sender(kind):
    return lambda f: f["data"]["message"]["sender_type"] == kind


def in_state(state):
    return lambda f: f["data"]["conversation"]["state"] == state


async def flush(cluster) -> None:
    """The cluster lost every key (a restart without persistence, on every master)."""
    await cluster.flushall(target_nodes=RedisCluster.PRIMARIES)


async def test_a_conversation_from_the_ai_to_an_agent_and_closed(cluster_harness_factory, cluster):
    h = await cluster_harness_factory(routing="manual")
    cust = await h.connect("cust-1")
    cid = (await cust.ok("conversation.start"))["conversation"]["id"]
    await cust.ok("message.send", conversation_id=cid, client_msg_id="c1", content="hello")
    assert (await cust.event("message.created", is_sender("ai")))["data"]["message"]["content"] == "Hello, world"
    await h.drain_ai()

    agent = await h.connect("agent-1", role="agent")
    await agent.ok("presence.set", status="online")
    await cust.ok("handoff.request", conversation_id=cid)
    assert [c["id"] for c in (await agent.ok("queue.list"))["conversations"]] == [cid]
    claimed = (await agent.ok("conversation.claim", conversation_id=cid))["conversation"]
    assert (claimed["state"], claimed["agent_id"]) == ("human", "agent-1")
    assert await h.app[keys.PRESENCE].assigned_to("agent-1") == [cid]
    await agent.ok("message.send", conversation_id=cid, client_msg_id="a1", content="an agent here")
    assert (await cust.event("message.created", is_sender("agent")))["data"]["message"]["content"] == "an agent here"
    await cust.ok("message.send", conversation_id=cid, client_msg_id="c2", content="thanks")
    assert (await agent.event("message.created", is_sender("customer")))["data"]["message"]["content"] == "thanks"

    released = (await agent.ok("conversation.release", conversation_id=cid))["conversation"]
    assert (released["state"], released["agent_id"]) == ("ai", None)
    assert await h.app[keys.PRESENCE].assigned_to("agent-1") == []
    await agent.ok("conversation.claim", conversation_id=cid)
    closed = (await agent.ok("conversation.close", conversation_id=cid))["conversation"]
    assert closed["state"] == "closed"
    record = orjson.loads(await cluster.get(redis_keys.session(cid)))  # PROTOCOL 5: session:<id>, no tag
    assert record["state"] == "closed" and record["version"] == closed["version"]
    seqs = [m.seq for m in await h.app[keys.STORE].messages.list_of(cid)]
    assert seqs == list(range(1, len(seqs) + 1))  # gapless


async def test_presence_lost_by_the_cluster_comes_back_with_the_heartbeat(cluster_harness, cluster):
    presence = cluster_harness.app[keys.PRESENCE]
    agent = await cluster_harness.connect("agent-1", role="agent", teams=["billing"])
    await agent.ok("presence.set", status="online")
    await flush(cluster)
    assert not (await presence.agents(["agent-1"]))[0].online
    await presence.heartbeat()  # the re-assert script, pipelined, on the {agents} slot
    (state,) = await presence.agents(["agent-1"])
    assert (state.status, state.connected, state.teams) == ("online", True, {"billing"})
    assert await presence.online_ids() == {"agent-1"}


async def test_the_conversation_quota_holds_on_the_cluster(cluster_harness_factory, cluster):
    h = await cluster_harness_factory(conversations_per_user_per_min=2)
    cust = await h.connect("cust-1")
    for _ in range(2):
        await cust.ok("conversation.start")
    refused = await cust.request("conversation.start")
    assert refused["type"] == "error" and refused["code"] == "rate_limited"
    assert await cluster.zcard(redis_keys.conversation_starts("cust-1")) == 2  # the refusal is not counted


async def test_the_echo_provider_answers_under_the_turn_lock(cluster_harness_factory, cluster):
    h = await cluster_harness_factory(provider_=None, ai_provider="echo")
    cust = await h.connect("cust-1")
    cid = (await cust.ok("conversation.start"))["conversation"]["id"]
    await cust.ok("message.send", conversation_id=cid, client_msg_id="c1", content="ping")
    reply = await cust.event("message.created", is_sender("ai"))
    assert "ping" in reply["data"]["message"]["content"]
    await h.drain_ai()
    assert await cluster.exists(redis_keys.ai_turn(cid)) == 0  # released after the turn


async def test_a_lost_live_record_is_rebuilt_from_sql(cluster_harness_factory, cluster):
    h = await cluster_harness_factory(routing="manual")
    cust = await h.connect("cust-1")
    agent = await h.connect("agent-1", role="agent")
    cid = (await cust.ok("conversation.start"))["conversation"]["id"]
    await agent.ok("conversation.claim", conversation_id=cid)
    await flush(cluster)  # the live record, the load set and presence are gone
    rebuilt = await h.repository.get(cid)
    assert (rebuilt.state, rebuilt.agent_id) == ("human", "agent-1")
    record = orjson.loads(await cluster.get(redis_keys.session(cid)))
    assert (record["state"], record["agent_id"], record["version"]) == ("human", "agent-1", rebuilt.version)
    await agent.ok("message.send", conversation_id=cid, client_msg_id="a1", content="still here")
    assert (await cust.event("message.created", is_sender("agent")))["data"]["message"]["content"] == "still here"
    await h.app[keys.PRESENCE].reconcile()  # the sweeper's repair of the load sets from SQL
    assert await h.app[keys.PRESENCE].assigned_to("agent-1") == [cid]
    released = (await agent.ok("conversation.release", conversation_id=cid))["conversation"]
    assert released["version"] == rebuilt.version + 1  # the rebuilt record takes the next transition


async def test_db_adopt_reads_migrated_records_on_every_master(cluster_settings, cluster, tmp_path):
    migrated = [str(uuid.uuid5(uuid.NAMESPACE_URL, f"migrated-{i}")) for i in range(30)]  # fixed: on every master
    for cid in migrated:
        await cluster.set(redis_keys.session(cid), orjson.dumps(
            {"user_id": "legacy", "agent_type": "human", "context": {}, "created_at": "2024-01-01T00:00:00.000Z",
             "updated_at": "2024-01-01T00:00:00.000Z"}))
    assert len({cluster.get_node_from_key(redis_keys.session(cid)).name for cid in migrated}) == 3
    settings = replace(cluster_settings, database=replace(cluster_settings.database, path=str(tmp_path / "a.db")))
    stats = await adopt(settings, batch=7)
    assert (stats.scanned, stats.adopted, stats.present, stats.invalid) == (30, 30, 0, 0)
    again = await adopt(settings, batch=7)
    assert (again.adopted, again.present) == (0, 30)


async def test_two_instances_share_one_cluster(cluster_harness_factory, mysql_database_url):
    a = await cluster_harness_factory(database_url=mysql_database_url, routing="manual")
    b = await cluster_harness_factory(database_url=mysql_database_url, routing="manual")
    cust = await a.connect("cust-1")
    agent = await b.connect("agent-1", role="agent")
    await agent.ok("presence.set", status="online")
    cid = (await cust.ok("conversation.start"))["conversation"]["id"]
    await cust.ok("handoff.request", conversation_id=cid)
    queued = await agent.event("conversation.updated", lambda f: f["data"]["conversation"]["id"] == cid)
    assert queued["data"]["conversation"]["state"] == "handoff"
    await agent.ok("conversation.claim", conversation_id=cid)
    await cust.event("conversation.updated", in_state("human"))
    await agent.ok("message.send", conversation_id=cid, client_msg_id="b1", content="from B")
    assert (await cust.event("message.created", is_sender("agent")))["data"]["message"]["content"] == "from B"
    await cust.ok("message.send", conversation_id=cid, client_msg_id="a1", content="from A")
    assert (await agent.event("message.created", is_sender("customer")))["data"]["message"]["content"] == "from A"


async def test_health_and_the_agents_api_read_the_cluster(cluster_harness_factory):
    h = await cluster_harness_factory(routing="manual", agent_max_chats=4)
    health = await h.client.get("/health")
    assert health.status == 200 and (await health.json())["checks"]["redis"] == "ok"
    agent = await h.connect("agent-1", role="agent")
    await agent.ok("presence.set", status="online")
    cust = await h.connect("cust-1")
    cid = (await cust.ok("conversation.start"))["conversation"]["id"]
    await agent.ok("conversation.claim", conversation_id=cid)
    resp = await h.client.get("/api/v1/agents", headers={"Authorization": f"Bearer {h.token('boss', 'admin')}"})
    assert resp.status == 200
    by_id = {a["agent_id"]: a for a in (await resp.json())["items"]}
    assert by_id["agent-1"] == {"agent_id": "agent-1", "status": "online", "active": True, "max_chats": 4,
                                "active_conversations": 1}


async def test_a_reply_resumed_on_the_other_instance_of_a_cluster(cluster_harness_factory, mysql_database_url,
                                                                 cluster):
    from tests.test_ai_stream import CHUNKS, StepProvider, ask, deltas_until, is_ai_message

    provider = StepProvider(list(CHUNKS))
    a = await cluster_harness_factory(database_url=mysql_database_url, provider_=provider, routing="manual")
    b = await cluster_harness_factory(database_url=mysql_database_url, provider_=provider, routing="manual")
    ws_a, cid, _ = await ask(a)
    provider.allow(3)
    await deltas_until(ws_a, 3)
    key = redis_keys.ai_stream(a.app[keys.HUB].interest.conversation(cid))
    # the stream's key and the conversation's channel share a slot: the delta script runs on one node
    assert cluster.keyslot(key) == cluster.keyslot(a.app[keys.HUB].interest.conversation(cid))
    ws_b = await b.connect("cust-1")
    page = await ws_b.ok("conversation.resume", conversation_id=cid)
    assert page["ai_stream"]["index"] == 2 and page["ai_stream"]["text"] == "".join(CHUNKS[:3])
    provider.allow(len(CHUNKS))
    stored = await ws_b.event("message.created", is_ai_message)
    later = [f["data"] for f in ws_b.events if f["type"] == "ai.delta"]
    assert [d["index"] for d in later] == list(range(3, len(CHUNKS)))
    assert page["ai_stream"]["text"] + "".join(d["delta"] for d in later) == stored["data"]["message"]["content"]
    await a.drain_ai()
