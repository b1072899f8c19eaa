"""Erasure of a customer and the retention purge (PROTOCOL 6): nothing of an erased customer's words
is left in any SQL table, any Redis key or the webhook outbox; counts, states and the anonymised event
log stay; a second erasure changes nothing; webhooks hear `customer.erased`."""

from __future__ import annotations

import time
import uuid

import orjson
import pytest
from aiohttp import web

from chat import keys
from chat.erasure import DAY_MS
from tests.test_webhooks import Clock, Receiver, headers, subscribe


async def sql_hits(store, marker: str) -> list[str]:
    """`table.column` of every text column of every table of the database that holds `marker`."""
    db = store.db
    if db.dialect == "mysql":
        columns = await db.fetchall(
            "SELECT TABLE_NAME, COLUMN_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() "
            "AND DATA_TYPE IN ('char', 'varchar', 'text', 'mediumtext', 'longtext', 'tinytext', 'json')")
    else:
        tables = await db.fetchall("SELECT name FROM sqlite_master WHERE type = 'table'")
        columns = [(name, c[1]) for (name,) in tables for c in await db.fetchall(f'PRAGMA table_info("{name}")')
                   if any(t in (c[2] or "").upper() for t in ("CHAR", "TEXT", "CLOB", "JSON"))]
    hits = []
    for table, column in columns:
        row = await db.fetchone(f"SELECT COUNT(*) FROM {table} WHERE {column} LIKE %s", (f"%{marker}%",))
        if row and row[0]:
            hits.append(f"{table}.{column}")
    return hits


async def redis_hits(redis, marker: str) -> list[str]:
    """Every key of the service's Redis database whose name or value holds `marker`."""
    hits = []
    needle = marker.encode()
    async for key in redis.scan_iter(count=500):
        kind = await redis.type(key)
        kind = kind.decode() if isinstance(kind, bytes) else kind
        if kind == "string":
            values = [await redis.get(key) or b""]
        elif kind == "hash":
            values = [b for pair in (await redis.hgetall(key)).items() for b in pair]
        elif kind == "list":
            values = await redis.lrange(key, 0, -1)
        elif kind == "set":
            values = list(await redis.smembers(key))
        elif kind == "zset":
            values = await redis.zrange(key, 0, -1)
        elif kind == "stream":
            values = [orjson.dumps([str(e) for e in await redis.xrange(key)])]
        else:
            values = []
        if needle in key or any(needle in (v if isinstance(v, bytes) else str(v).encode()) for v in values):
            hits.append(key.decode() if isinstance(key, bytes) else key)
    return hits


@pytest.fixture(params=["sqlite", "mysql"])
async def erasing(request, harness_factory, aiohttp_server):
    """An app (on SQLite or MariaDB) with a webhook whose receiver echoes every body it accepts."""
    database_url = request.getfixturevalue("mysql_database_url") if request.param == "mysql" else None
    h = await harness_factory(database_url=database_url, webhook_delivery=False, webhook_allow_private=True)
    receiver = Receiver()

    async def echo(req: web.Request) -> web.Response:
        await receiver.handle(req)
        return web.Response(body=receiver.requests[-1][1])  # the excerpt then holds the customer's words

    app = web.Application()
    app.router.add_post("/hook", echo)
    server = await aiohttp_server(app, host="127.0.0.1")
    hook = await subscribe(h, f"http://127.0.0.1:{server.port}/hook",
                           ["message.created", "conversation.updated", "csat.submitted", "customer.erased"])
    deliverer = h.app[keys.WEBHOOKS]
    deliverer.clock = Clock()
    yield h, receiver, deliverer
    await h.client.delete(f"/api/v1/webhooks/{hook['id']}", headers=headers(h))


async def words_of(h, user: str, marker: str) -> list[str]:
    """A customer's conversations full of `marker`: metadata, messages, a handoff reason, a rating
    comment, a contact row; returns the conversation ids."""
    ws = await h.connect(user)
    first = (await ws.ok("conversation.start", metadata={"name": f"Li {marker}", "note": marker}))["conversation"]
    await ws.ok("message.send", conversation_id=first["id"], client_msg_id=f"{marker}-1", content=f"I am {marker}")
    await h.drain_ai()
    await ws.ok("handoff.request", conversation_id=first["id"], reason=f"because {marker}")
    await ws.ok("conversation.close", conversation_id=first["id"])
    await ws.ok("csat.submit", conversation_id=first["id"], score=2, comment=f"slow, {marker}")
    second = (await ws.ok("conversation.start", metadata={"email": f"{marker}@example.com"}))["conversation"]
    await ws.ok("message.send", conversation_id=second["id"], client_msg_id="m2", content=f"中文 {marker}")
    await h.drain_ai()
    store = h.app[keys.STORE]
    await store.db.execute(
        f"INSERT INTO {store.db.tables.customer_contacts} (id, user_id, name, email, phone, metadata, created_ms) "
        "VALUES (%s, %s, %s, %s, %s, %s, %s)",
        (str(uuid.uuid4()), user, f"Li {marker}", f"{marker}@example.com", "123", orjson.dumps({"m": marker}).decode(),
         int(time.time() * 1000)))
    return [first["id"], second["id"]]


async def test_nothing_of_an_erased_customer_is_left(erasing):
    h, receiver, deliverer = erasing
    marker, other_marker = f"ZQX{uuid.uuid4().hex[:10]}", f"KEEP{uuid.uuid4().hex[:10]}"
    user, other = f"cust-{uuid.uuid4().hex[:8]}", f"cust-{uuid.uuid4().hex[:8]}"
    cids = await words_of(h, user, marker)
    await words_of(h, other, other_marker)
    await deliverer.drain()  # some delivered (their excerpts echo the words), the rest still pending
    store, redis = h.app[keys.STORE], h.app[keys.REDIS]
    assert await sql_hits(store, marker) and await redis_hits(redis, marker)  # the scan finds words before
    await (await h.connect(user)).ok("message.send", conversation_id=cids[1], client_msg_id="late",
                                     content=f"queued {marker}")  # an outbox row not delivered yet
    await h.drain_ai()
    messages_before = await store.db.fetchall(
        f"SELECT conversation_id, seq, sender_type FROM {store.db.tables.messages} WHERE conversation_id IN (%s, %s) "
        "ORDER BY conversation_id, seq", cids)
    states_before = {c: (await h.repository.get(c)).state for c in cids}

    heard_before = len(receiver.accepted)
    resp = await h.client.delete(f"/api/v1/customers/{user}", headers=headers(h))
    body = await resp.json()
    assert resp.status == 200 and body == {"user_id": user, "conversations": 2, "contacts": 1}

    assert await sql_hits(store, marker) == []  # every text column of every table
    assert await redis_hits(redis, marker) == []
    assert await sql_hits(store, other_marker) and await redis_hits(redis, other_marker)  # others untouched
    # the id itself is left only where it must be: the `customer.erased` event that names it
    assert await sql_hits(store, user) == [f"{store.db.tables.webhook_deliveries}.body"]

    # counts and states stay; the log stays, anonymised, with the erasure at its end
    messages_after = await store.db.fetchall(
        f"SELECT conversation_id, seq, sender_type FROM {store.db.tables.messages} WHERE conversation_id IN (%s, %s) "
        "ORDER BY conversation_id, seq", cids)
    assert messages_after == messages_before
    for cid in cids:
        resp = await h.client.get(f"/api/v1/conversations/{cid}/events", headers=headers(h))
        events = (await resp.json())["items"]
        assert events[-1]["trigger"] == "erase" and events[-1]["to_state"] == "erased"
        assert events[-1]["actor_id"] == "admin-1" and events[-1]["from_state"] == states_before[cid]
        assert all(e["actor_id"] != user for e in events)
        conversation = await (await h.client.get(f"/api/v1/conversations/{cid}", headers=headers(h))).json()
        assert conversation["state"] == states_before[cid] and conversation["metadata"] == {}
        assert conversation["user_id"].startswith("erased-")

    again = await (await h.client.delete(f"/api/v1/customers/{user}", headers=headers(h))).json()
    assert again == {"user_id": user, "conversations": 0, "contacts": 0}

    deliverer.clock.advance(3600)
    await deliverer.drain()
    erased = [b for b in receiver.accepted if b["type"] == "customer.erased"]
    assert [e["data"] for e in erased] == [{"user_id": user, "conversation_ids": cids}]
    late = [b for b in receiver.accepted if b["data"].get("conversation_id") == cids[1] and b["data"].get("erased")]
    assert late  # the undelivered event went out as a notice, without the words
    assert all(marker not in orjson.dumps(b).decode() for b in receiver.accepted[heard_before:])


async def test_retention_purges_the_words_of_long_closed_conversations(harness_factory):
    h = await harness_factory(webhook_delivery=False, retention_days=30)
    marker = f"OLD{uuid.uuid4().hex[:10]}"
    ws = await h.connect("cust-1")
    closed = (await ws.ok("conversation.start", metadata={"note": marker}))["conversation"]["id"]
    await ws.ok("message.send", conversation_id=closed, client_msg_id="1", content=f"old {marker}")
    await h.drain_ai()
    await ws.ok("conversation.close", conversation_id=closed)
    open_ = (await ws.ok("conversation.start", metadata={"note": marker}))["conversation"]["id"]
    await ws.ok("message.send", conversation_id=open_, client_msg_id="2", content=f"open {marker}")
    await h.drain_ai()
    eraser, store = h.app[keys.ERASER], h.app[keys.STORE]

    assert await eraser.purge(int(time.time() * 1000) + 29 * DAY_MS) == 0  # not old enough yet
    assert await eraser.purge(int(time.time() * 1000) + 31 * DAY_MS) == 1
    contents = {r[0]: r[1] for r in await store.db.fetchall(
        f"SELECT conversation_id, MAX(content) FROM {store.db.tables.messages} WHERE conversation_id IN (%s, %s) "
        "GROUP BY conversation_id", (closed, open_))}
    assert contents[closed] == "" and marker in contents[open_]
    assert await h.app[keys.REDIS].exists(f"session:{closed}") == 0
    events = (await (await h.client.get(f"/api/v1/conversations/{closed}/events", headers=headers(h))).json())["items"]
    assert events[-1]["to_state"] == "closed"  # a purge is no transition; the log stays as it was
    assert await eraser.purge(int(time.time() * 1000) + 31 * DAY_MS) == 0  # done once
    off = await harness_factory(webhook_delivery=False)
    assert await off.app[keys.ERASER].purge(int(time.time() * 1000) + 3650 * DAY_MS) == 0  # RETENTION_DAYS=0


async def test_an_erasure_keeps_the_services_own_reasons_for_the_statistics(harness_factory):
    """The words a person gave as a reason go; the reason the service itself recorded (an idle close's
    `inactivity`, which the statistics count apart) stays."""
    from chat.auth import Identity
    from states.repository import SYSTEM

    h = await harness_factory(webhook_delivery=False)
    user = f"cust-{uuid.uuid4().hex[:8]}"
    customer = Identity(user, "customer")
    cid = (await h.ops.conversations.start(customer)).id
    await h.ops.conversations.request_handoff(customer, cid, reason="my account number is 12345")
    await h.ops.conversations.fire(cid, "close", actor=SYSTEM, reason="inactivity")
    resp = await h.client.delete(f"/api/v1/customers/{user}", headers=headers(h))
    assert resp.status == 200
    entries = await h.app[keys.STORE].events.list_of(cid)
    assert [(e.trigger, e.reason) for e in entries] == [
        ("request_handoff", None), ("close", "inactivity"), ("erase", "customer erased")]


async def test_retention_leaves_a_conversation_reopened_after_it_was_picked(harness_factory, monkeypatch):
    """Picked as long closed, reopened by its customer before its turn came: its words stay."""
    h = await harness_factory(webhook_delivery=False, retention_days=30)
    ws = await h.connect("cust-r")
    cid = (await ws.ok("conversation.start"))["conversation"]["id"]
    await ws.ok("message.send", conversation_id=cid, client_msg_id="1", content="still needed")
    await h.drain_ai()
    await ws.ok("conversation.close", conversation_id=cid)
    erasure, store = h.app[keys.STORE].erasure, h.app[keys.STORE]
    scrub = erasure._scrub

    async def reopened_first(tx, conversation_id, **kwargs):  # (in its transaction: SQLite has one writer)
        await tx.execute(f"UPDATE {store.db.tables.conversations} SET state = 'ai', updated_ms = %s "
                         "WHERE id = %s", (int(time.time() * 1000) + 40 * DAY_MS, conversation_id))
        return await scrub(tx, conversation_id, **kwargs)

    monkeypatch.setattr(erasure, "_scrub", reopened_first)
    assert await erasure.purge_closed_before(int(time.time() * 1000) + 31 * DAY_MS, limit=100) == []
    assert "still needed" in [m.content for m in await store.messages.list_of(cid)]
