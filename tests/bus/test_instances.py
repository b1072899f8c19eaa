"""Two service instances on one Redis: an instance receives a conversation's events only while
one of its sockets needs them, each once, and resubscribes what its sockets need after a lost
subscriber connection."""

from __future__ import annotations

import asyncio

from chat import keys
from chat.bus import Bus, ToConversation, ToUser, redis_bus

MARKER = {"type": "marker", "data": {}}


async def two_instances(harness_factory, mysql_database_url):
    a = await harness_factory(database_url=mysql_database_url, routing="manual")
    b = await harness_factory(database_url=mysql_database_url, routing="manual")
    return a, b


def bus(h) -> Bus:
    return h.app[keys.BUS]


async def settled(*harnesses) -> None:
    for h in harnesses:
        await asyncio.wait_for(bus(h).settled(), timeout=10)


async def mark(sender, receiver_ws, user_id: str) -> None:
    """Publish a marker from `sender` to an agent's sockets and wait for it: on one Redis server
    everything `sender` published before it has reached the other instance by then."""
    await bus(sender).publish(ToUser(user_id, MARKER))
    await receiver_ws.event("marker")


async def mark_conversation(sender, conversation_id: str, owner: str, *receivers) -> None:
    """Publish a marker (named after `sender`) to a conversation's sockets and wait for it on each
    receiver: everything `sender` published on it before has reached them by then."""
    marker = f"marker-{bus(sender).origin.decode()}"
    await bus(sender).publish(ToConversation(conversation_id, owner, {"type": marker, "data": {}}))
    for ws in receivers:
        await ws.event(marker)


def created(ws, content: str) -> list[dict]:
    return [f for f in ws.events if f["type"] == "message.created" and f["data"]["message"]["content"] == content]


async def test_an_instance_without_sockets_of_a_conversation_receives_none_of_its_events(
        harness_factory, mysql_database_url):
    a, b = await two_instances(harness_factory, mysql_database_url)
    cust = await a.connect("cust-a")
    bystander = await b.connect("agent-b", role="agent")  # listens to its own and the agents' channels only
    await settled(a, b)
    before = bus(b).received
    cid = (await cust.ok("conversation.start"))["conversation"]["id"]
    for i in range(5):
        await cust.ok("message.send", conversation_id=cid, client_msg_id=f"m{i}", content=f"hello {i}")
    await cust.event("message.created", lambda f: f["data"]["message"]["sender_type"] == "ai")
    await a.drain_ai()
    await mark(a, bystander, "agent-b")
    assert bus(b).received - before == 1  # the marker only
    assert [f["type"] for f in bystander.events] == []


async def test_every_socket_gets_each_event_once_across_instances(harness_factory, mysql_database_url):
    a, b = await two_instances(harness_factory, mysql_database_url)
    tab_a = await a.connect("cust-1")
    tab_a2 = await a.connect("cust-1")  # never subscribed: a tab on the instance where it started
    tab_b = await b.connect("cust-1")  # the customer's tab on the other instance
    agent_b = await b.connect("agent-1", role="agent")
    agent_b2 = await b.connect("agent-1", role="agent")  # the same agent's second console
    cid = (await tab_a.ok("conversation.start"))["conversation"]["id"]
    await tab_b.ok("conversation.resume", conversation_id=cid)
    await agent_b.ok("conversation.watch", conversation_id=cid)
    await settled(a, b)
    await tab_a.ok("message.send", conversation_id=cid, client_msg_id="k1", content="from a")
    await agent_b.ok("message.send", conversation_id=cid, client_msg_id="n1", content="private", private=True)
    await mark_conversation(b, cid, "cust-1", tab_a, tab_a2)  # the private note (published by b) reached a
    await mark_conversation(a, cid, "cust-1", tab_a, tab_a2, tab_b, agent_b)
    await mark(a, agent_b2, "agent-1")
    sockets = (tab_a, tab_a2, tab_b, agent_b, agent_b2)
    assert [len(created(ws, "from a")) for ws in sockets] == [1, 1, 1, 1, 0]
    assert [len(created(ws, "private")) for ws in sockets] == [0, 0, 0, 1, 0]  # agents only


async def test_the_last_socket_leaving_unsubscribes_the_instance(harness_factory, mysql_database_url):
    a, b = await two_instances(harness_factory, mysql_database_url)
    cust = await a.connect("cust-1")
    agent = await b.connect("agent-1", role="agent")
    other = await b.connect("agent-2", role="agent")
    cid = (await cust.ok("conversation.start"))["conversation"]["id"]
    channel = bus(b).interest.conversation(cid)
    await agent.ok("conversation.watch", conversation_id=cid)
    await other.ok("conversation.watch", conversation_id=cid)
    await agent.ok("conversation.unwatch", conversation_id=cid)
    assert channel in bus(b).interest.wanted  # the other console still watches
    await other.ok("conversation.unwatch", conversation_id=cid)
    await settled(a, b)
    assert channel not in bus(b).interest.wanted
    before = bus(b).received
    await cust.ok("message.send", conversation_id=cid, client_msg_id="k1", content="unheard")
    await mark(a, agent, "agent-1")
    assert bus(b).received - before == 1  # the marker only
    assert created(agent, "unheard") == []


async def test_a_lost_subscriber_resubscribes_what_its_sockets_need(harness_factory, mysql_database_url):
    a, b = await two_instances(harness_factory, mysql_database_url)
    cust = await a.connect("cust-1")
    tab_b = await b.connect("cust-1")
    agent = await b.connect("agent-1", role="agent")
    cid = (await cust.ok("conversation.start"))["conversation"]["id"]
    await tab_b.ok("conversation.resume", conversation_id=cid)
    await agent.ok("conversation.watch", conversation_id=cid)
    await settled(a, b)
    name = f"chat-api-{b.app[keys.INSTANCE_ID]}"
    redis = b.app[keys.REDIS]
    victims = [c["id"] for c in await redis.client_list(_type="pubsub") if c.get("name") == name]
    assert len(victims) == 1  # one subscriber connection per instance
    await redis.client_kill_filter(_id=victims[0])
    await asyncio.wait_for(bus(b).wait_resubscribed(1), timeout=10)
    await settled(b)
    await cust.ok("message.send", conversation_id=cid, client_msg_id="k1", content="after")
    await agent.event("message.created", lambda f: f["data"]["message"]["content"] == "after")
    await tab_b.event("message.created", lambda f: f["data"]["message"]["content"] == "after")


def hold_subscription(b, channel: str) -> tuple[asyncio.Event, asyncio.Event]:
    """Hold instance b's SSUBSCRIBE of the channel until `release` is set; `asked` is set when the
    subscriber is about to send it."""
    shard = bus(b)._shards["redis"]
    send, asked, release = shard._send_groups, asyncio.Event(), asyncio.Event()

    async def held(conn, command, channels):
        channels = list(channels)
        if command == "SSUBSCRIBE" and channel in channels:
            asked.set()
            await release.wait()
        await send(conn, command, channels)

    shard._send_groups = held
    return asked, release


async def test_an_event_published_while_the_subscription_is_on_its_way_is_in_the_replay(
        harness_factory, mysql_database_url):
    a, b = await two_instances(harness_factory, mysql_database_url)
    cust = await a.connect("cust-1")
    agent = await b.connect("agent-1", role="agent")
    probe = await b.connect("agent-2", role="agent")
    cid = (await cust.ok("conversation.start"))["conversation"]["id"]
    await settled(a, b)
    asked, release = hold_subscription(b, bus(b).interest.conversation(cid))
    watch = asyncio.create_task(agent.ok("conversation.watch", conversation_id=cid))
    await asyncio.wait_for(asked.wait(), timeout=10)
    await cust.ok("message.send", conversation_id=cid, client_msg_id="k1", content="between")
    await mark(a, probe, "agent-2")  # "between" went through Redis before b subscribed: not heard live
    release.set()
    replayed = [m["content"] for m in (await watch)["messages"]]
    assert "between" in replayed  # never live (published before Redis had the subscription): so in the replay


async def test_a_subscription_redis_does_not_confirm_delays_the_replay_only_briefly(
        harness_factory, mysql_database_url, monkeypatch):
    monkeypatch.setattr(redis_bus, "LISTEN_WAIT_S", 0.05)
    a, b = await two_instances(harness_factory, mysql_database_url)
    cust = await a.connect("cust-1")
    agent = await b.connect("agent-1", role="agent")
    cid = (await cust.ok("conversation.start"))["conversation"]["id"]
    await cust.ok("message.send", conversation_id=cid, client_msg_id="k1", content="stored")
    await settled(a, b)
    asked, release = hold_subscription(b, bus(b).interest.conversation(cid))
    reply = await agent.ok("conversation.watch", conversation_id=cid)  # answered from the store all the same
    assert asked.is_set()
    assert "stored" in [m["content"] for m in reply["messages"]]
    release.set()
