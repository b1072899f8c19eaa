"""Webhooks (PROTOCOL 6.1): subscriptions over REST, the transactional outbox, signed delivery with
retries in order per conversation, claims shared by instances, and the refusal of private targets.

Delivery is driven by hand: the apps run with their loop off (`webhook_delivery=False`) and the tests
call `drain()` with an injected clock, so retries happen in simulated time and nothing sleeps."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
import sys
import time
import uuid
from collections import defaultdict
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web
from prometheus_client import REGISTRY

from chat import keys
from chat.auth import issue_token
from chat.desk import Desk
from chat.store.messages import Guard
from chat.store.webhooks import skip_locked_supported
from chat.webhooks import LEASE_MS, backoff_ms, private_address, sign
from states.clock import now_iso
from states.errors import StaleVersion
from states.record import Conversation
from tests.conftest import redis_url
from tests.faults.servers import free_port
from tests.test_serve_workers import Supervisor
from tests.wsclient import WS

SECRET = "whsec_test_0123456789abcdef"
TOLERANCE_S = 300


def verify(secret: str, header: str, body: bytes, now_s: int) -> bool:
    """The receiver's check, as docs/protocol.md gives it: a fresh timestamp and a matching HMAC."""
    parts = dict(item.split("=", 1) for item in header.split(","))
    expected = hmac.new(secret.encode(), f"{parts['t']}.".encode() + body, hashlib.sha256).hexdigest()
    return abs(now_s - int(parts["t"])) <= TOLERANCE_S and hmac.compare_digest(expected, parts.get("v1", ""))


class Receiver:
    """A local webhook endpoint: answers from a script (`fail` statuses first, `hang` requests that
    never answer), then 200; records every request it got."""

    def __init__(self, *, fail: list[int] | None = None, hang: int = 0):
        self.fail = list(fail or [])
        self.hang = hang
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.accepted: list[dict[str, Any]] = []
        self.never = asyncio.Event()

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.requests.append((dict(request.headers), body))
        if self.fail:
            return web.Response(status=self.fail.pop(0), text="x" * 2000)
        if self.hang:
            self.hang -= 1
            await self.never.wait()  # the deliverer times out and hangs up
        self.accepted.append(orjson.loads(body))
        return web.Response(text="ok")

    def ids(self) -> list[str]:
        return [orjson.loads(body)["id"] for _, body in self.requests]


@pytest.fixture
async def receiver_url(aiohttp_server):
    async def start(receiver: Receiver) -> str:
        app = web.Application()
        app.router.add_post("/hook", receiver.handle)
        server = await aiohttp_server(app, host="127.0.0.1")
        return f"http://127.0.0.1:{server.port}/hook"

    return start


class Clock:
    """Simulated epoch milliseconds for the deliverer's backoff: the real time (the outbox rows are
    stamped with it) moved on by `advance`."""

    def __init__(self) -> None:
        self.offset_ms = 0

    def __call__(self) -> int:
        return int(time.time() * 1000) + self.offset_ms

    def advance(self, seconds: float) -> None:
        self.offset_ms += int(seconds * 1000)


def headers(h, sub: str = "admin-1", role: str = "admin") -> dict[str, str]:
    return {"Authorization": f"Bearer {h.token(sub, role)}"}


async def subscribe(h, url: str, events: list[str], **extra: Any) -> dict[str, Any]:
    resp = await h.client.post("/api/v1/webhooks", json={"url": url, "events": events, **extra}, headers=headers(h))
    body = await resp.json()
    assert resp.status == 201, body
    return body


async def webhook_app(harness_factory, **overrides: Any):
    """An app whose deliverer is driven by the test (its clock, no jitter)."""
    h = await harness_factory(webhook_delivery=False, webhook_allow_private=True, **overrides)
    deliverer = h.app[keys.WEBHOOKS]
    deliverer.clock, deliverer.rng = Clock(), (lambda: 0.0)
    return h, deliverer


async def talk(h, user: str, n: int) -> str:
    """A conversation of `n` customer messages (each answered by the scripted AI)."""
    ws = await h.connect(user)
    cid = (await ws.ok("conversation.start"))["conversation"]["id"]
    for i in range(n):
        await ws.ok("message.send", conversation_id=cid, client_msg_id=f"m{i}", content=f"message {i}")
        await h.drain_ai()
    return cid


async def outbox_events(h) -> list[tuple[str, str]]:
    """(event_id, type) of every outbox row, in position order."""
    store = h.app[keys.STORE]
    rows = await store.db.fetchall(
        f"SELECT event_id, event_type FROM {store.db.tables.webhook_deliveries} ORDER BY conversation_id, position")
    return [(r[0], r[1]) for r in rows]


async def test_a_delivery_is_signed_and_a_forgery_is_detectable(harness_factory, receiver_url):
    h, deliverer = await webhook_app(harness_factory)
    receiver = Receiver()
    hook = await subscribe(h, await receiver_url(receiver), ["message.created", "conversation.updated"],
                           secret=SECRET)
    assert hook["secret"] == SECRET and hook["events"] == ["message.created", "conversation.updated"]
    cid = await talk(h, "cust-1", 1)
    ws = await h.connect("cust-1")
    await ws.ok("conversation.close", conversation_id=cid)

    assert await deliverer.drain() >= 3
    types = [(b["type"], b["data"].get("seq") or b["data"]["event"]["trigger"]) for b in receiver.accepted]
    assert types == [("message.created", 1), ("message.created", 2), ("conversation.updated", "close"),
                     ("message.created", 3)]  # the customer's, the AI's, the close and its notice
    now_s = deliverer.clock() // 1000
    for request_headers, body in receiver.requests:
        event = orjson.loads(body)
        assert request_headers["X-Chat-Event-Id"] == event["id"] and event["created_at"].endswith("Z")
        assert verify(SECRET, request_headers["X-Chat-Signature"], body, now_s)
        assert not verify(SECRET, request_headers["X-Chat-Signature"], body.replace(b'"id":"', b'"id":"x', 1), now_s)
        assert not verify("whsec_someone_else_000000", request_headers["X-Chat-Signature"], body, now_s)
        assert not verify(SECRET, request_headers["X-Chat-Signature"], body, now_s + TOLERANCE_S + 1)  # a replay
    first = receiver.accepted[0]["data"]
    assert first["conversation_id"] == cid and first["content"] == "message 0" and first["sender_type"] == "customer"
    closed = receiver.accepted[2]["data"]
    assert closed["conversation"]["state"] == "closed" and closed["event"]["to_state"] == "closed"


async def test_retries_after_errors_and_a_timeout_keep_order_and_lose_nothing(harness_factory, receiver_url):
    h, deliverer = await webhook_app(harness_factory, webhook_retry_base_s=5.0)
    deliverer.timeout_s = 1.0  # the hung request's wait: real time, the only one of the test
    receiver = Receiver(fail=[500, 503], hang=1)
    await subscribe(h, await receiver_url(receiver), ["message.created", "conversation.updated"])
    first = await talk(h, "cust-1", 2)
    second = await talk(h, "cust-2", 2)
    made = await outbox_events(h)
    assert len(made) == 8  # 4 messages (2 the customer's, 2 the AI's) in each conversation

    clock = deliverer.clock
    assert await deliverer.drain() == 2  # the head of each line: 500 and 503
    assert await deliverer.drain() == 0  # nothing is due before the backoff
    clock.advance(4.9)
    assert await deliverer.drain() == 0
    clock.advance(0.2)  # 5 s after: the second attempts, one of them timing out
    assert await deliverer.drain() >= 2
    clock.advance(9.9)
    hung = [d for d in await all_deliveries(h) if d["error"] and "timed out" in d["error"]]
    assert len(hung) == 1 and hung[0]["status"] == "pending" and hung[0]["attempts"] == 2
    assert await deliverer.drain() == 0 or receiver.accepted  # the other line went on meanwhile
    clock.advance(0.2)  # 10 s after the timeout: its third attempt
    await deliverer.drain()

    by_id = {b["id"]: b for b in receiver.accepted}
    assert set(by_id) == {event_id for event_id, _ in made}  # every event, de-duplicated, exactly the changes
    assert set(receiver.ids()) == set(by_id)  # nothing invented
    for cid in (first, second):
        seqs = [b["data"]["seq"] for b in dedup(receiver.accepted) if b["data"]["conversation_id"] == cid]
        assert seqs == [1, 2, 3, 4]  # in order per conversation
    deliveries = await all_deliveries(h)
    assert {d["status"] for d in deliveries} == {"delivered"}
    failed_first = [d for d in deliveries if d["attempts"] > 1]
    assert all(d["response_status"] == 200 for d in failed_first)
    assert all(len(d["response_excerpt"] or "") <= 512 for d in deliveries)


def dedup(bodies: list[dict[str, Any]]) -> list[dict[str, Any]]:
    seen: set[str] = set()
    out = []
    for body in bodies:
        if body["id"] not in seen:
            seen.add(body["id"])
            out.append(body)
    return out


async def all_deliveries(h) -> list[dict[str, Any]]:
    out = []
    for hook in (await (await h.client.get("/api/v1/webhooks", headers=headers(h))).json())["items"]:
        resp = await h.client.get(f"/api/v1/webhooks/{hook['id']}/deliveries", params={"limit": 200},
                                  headers=headers(h))
        out += (await resp.json())["items"]
    return out


async def test_after_24_hours_of_failures_a_delivery_is_failed_and_can_be_redelivered(harness_factory, receiver_url):
    h, deliverer = await webhook_app(harness_factory, webhook_retry_base_s=3600.0)
    receiver = Receiver(fail=[500] * 6)
    hook = await subscribe(h, await receiver_url(receiver), ["message.created"])
    await talk(h, "cust-1", 1)
    attempts = 0
    while receiver.fail:
        clock_before = deliverer.clock()
        attempts += await deliverer.drain()
        deliverer.clock.advance(3600 * 2 ** max(attempts - 1, 0))
        assert deliverer.clock() > clock_before
    deliveries = await all_deliveries(h)
    failed = [d for d in deliveries if d["status"] == "failed"]
    assert failed and all(d["next_attempt_at"] is None and d["response_status"] == 500 for d in failed)
    assert failed[0]["attempts"] < 6  # 1 + 2 + 4 + 8 + 16 h: the 24 h were up before the sixth

    url = f"/api/v1/webhooks/{hook['id']}/deliveries/{failed[0]['id']}/redeliver"
    resp = await h.client.post(url, headers=headers(h))
    again = await resp.json()
    assert resp.status == 200 and again["status"] == "pending" and again["attempts"] == 0
    assert {k: again[k] for k in CLEARED} == dict.fromkeys(CLEARED)  # the failure's outcome is gone
    pending = await h.client.post(url, headers=headers(h))
    assert pending.status == 409  # on its way already
    receiver.fail.clear()
    await deliverer.drain()
    assert failed[0]["event_id"] in [b["id"] for b in receiver.accepted]  # the same event id
    missing = await h.client.post(f"/api/v1/webhooks/{hook['id']}/deliveries/nope/redeliver", headers=headers(h))
    assert missing.status == 404

    settled = len(await all_deliveries(h))
    assert await deliverer.prune() == 0  # nothing settled 30 days ago
    deliverer.clock.advance(31 * 24 * 3600)
    assert await deliverer.prune() == settled  # every delivery is settled by now: all go
    assert await all_deliveries(h) == []


CLEARED = ("last_attempt_at", "response_status", "response_excerpt", "error", "delivered_at")  # a redelivery's


async def test_a_redelivered_delivery_keeps_nothing_of_its_last_success_until_its_new_attempt(harness_factory,
                                                                                            receiver_url):
    h, deliverer = await webhook_app(harness_factory)
    receiver = Receiver()
    hook = await subscribe(h, await receiver_url(receiver), ["message.created"])
    await talk(h, "cust-1", 1)
    await deliverer.drain()
    delivered = (await all_deliveries(h))[0]
    assert delivered["status"] == "delivered" and delivered["response_status"] == 200
    assert delivered["response_excerpt"] == "ok" and delivered["delivered_at"] and delivered["last_attempt_at"]

    resp = await h.client.post(f"/api/v1/webhooks/{hook['id']}/deliveries/{delivered['id']}/redeliver",
                               headers=headers(h))
    again = await resp.json()
    assert resp.status == 200 and again["status"] == "pending" and again["attempts"] == 0
    assert {k: again[k] for k in CLEARED} == dict.fromkeys(CLEARED)  # not "delivered at" while pending
    listed = next(d for d in await all_deliveries(h) if d["id"] == delivered["id"])
    assert {k: listed[k] for k in CLEARED} == dict.fromkeys(CLEARED)

    deliverer.clock.advance(1)
    await deliverer.drain()
    settled = next(d for d in await all_deliveries(h) if d["id"] == delivered["id"])
    assert settled["status"] == "delivered" and settled["attempts"] == 1 and settled["response_status"] == 200
    assert settled["delivered_at"] > delivered["delivered_at"]  # the new attempt's outcome
    assert [b["id"] for b in receiver.accepted].count(delivered["event_id"]) == 2


def test_backoff_doubles_from_the_base_with_bounded_jitter():
    assert [backoff_ms(n, 5.0, lambda: 0.0) for n in (1, 2, 3, 4)] == [5000, 10000, 20000, 40000]
    assert backoff_ms(1, 5.0, lambda: 1.0) == 6250


async def test_private_notes_go_only_to_webhooks_that_ask_for_them(harness_factory, receiver_url):
    h, deliverer = await webhook_app(harness_factory)
    public, notes = Receiver(), Receiver()
    await subscribe(h, await receiver_url(public), ["message.created"])
    await subscribe(h, await receiver_url(notes), ["note.created"])
    cust = await h.connect("cust-1")
    cid = (await cust.ok("conversation.start"))["conversation"]["id"]
    agent = await h.connect("agent-1", role="agent")
    await cust.ok("handoff.request", conversation_id=cid)
    await agent.ok("conversation.claim", conversation_id=cid)
    await agent.ok("message.send", conversation_id=cid, client_msg_id="n1", content="internal", private=True)
    await agent.ok("message.send", conversation_id=cid, client_msg_id="p1", content="Hello")
    await deliverer.drain()
    assert [(b["type"], b["data"]["content"]) for b in public.accepted if b["data"]["sender_type"] == "agent"] == [
        ("message.created", "Hello")]
    assert [(b["type"], b["data"]["content"], b["data"]["private"]) for b in notes.accepted] == [
        ("note.created", "internal", True)]


async def test_a_rating_is_sent_as_csat_submitted(harness_factory, receiver_url):
    h, deliverer = await webhook_app(harness_factory)
    receiver = Receiver()
    await subscribe(h, await receiver_url(receiver), ["csat.submitted"])
    ws = await h.connect("cust-1")
    cid = (await ws.ok("conversation.start"))["conversation"]["id"]
    await ws.ok("conversation.close", conversation_id=cid)
    await ws.ok("csat.submit", conversation_id=cid, score=4, comment="fine")
    await deliverer.drain()
    assert [(b["type"], b["data"]["score"], b["data"]["comment"]) for b in receiver.accepted] == [
        ("csat.submitted", 4, "fine")]


async def test_a_crash_between_the_change_and_the_delivery_loses_nothing(harness_factory, receiver_url, tmp_path):
    database_url = f"sqlite:///{tmp_path}/shared.db"
    first, _ = await webhook_app(harness_factory, database_url=database_url)
    receiver = Receiver()
    await subscribe(first, await receiver_url(receiver), ["message.created"])
    await talk(first, "cust-1", 2)
    made = await outbox_events(first)
    await first.client.close()  # gone before it delivered anything
    assert receiver.requests == []

    second, deliverer = await webhook_app(harness_factory, database_url=database_url)
    await deliverer.drain()
    assert sorted(b["id"] for b in receiver.accepted) == sorted(event_id for event_id, _ in made)


async def test_a_claim_whose_holder_died_is_taken_over_when_its_lease_runs_out(harness_factory, receiver_url):
    h, deliverer = await webhook_app(harness_factory)
    receiver = Receiver()
    await subscribe(h, await receiver_url(receiver), ["conversation.updated"])
    ws = await h.connect("cust-1")
    cid = (await ws.ok("conversation.start"))["conversation"]["id"]
    await ws.ok("conversation.close", conversation_id=cid)
    webhooks = h.app[keys.STORE].webhooks
    taken = await webhooks.claim("dead-instance", deliverer.clock(), LEASE_MS, 10)
    assert len(taken) == 1  # claimed, then its holder died before sending
    assert await deliverer.drain() == 0  # leased: nobody else sends it meanwhile
    deliverer.clock.advance(LEASE_MS / 1000 + 1)
    assert await deliverer.drain() == 1
    assert [b["id"] for b in receiver.accepted] == [taken[0].event_id]


async def test_two_instances_deliver_every_event_exactly_once(harness_factory, receiver_url, mysql_database_url):
    a, deliver_a = await webhook_app(harness_factory, database_url=mysql_database_url)
    b, deliver_b = await webhook_app(harness_factory, database_url=mysql_database_url)
    receiver = Receiver()
    hook = await subscribe(a, await receiver_url(receiver), ["message.created"])
    try:
        await b.app[keys.STORE].webhooks.refresh()  # what its poll does: it now writes events too
        cids = [await talk(a if i % 2 else b, f"cust-{i}", 2) for i in range(6)]
        made = {event_id for event_id, _ in await outbox_events(a)} - set()
        deliver_a.batch = deliver_b.batch = 2  # small claims, so both find work
        for _ in range(20):  # both claim at the same moments until the outbox is empty
            while sum(await asyncio.gather(deliver_a.deliver_due(), deliver_b.deliver_due())):
                pass
            if not await a.app[keys.STORE].webhooks.backlog():
                break
            deliver_a.clock.advance(3600)  # a slow machine's failed attempt: its retry is due
            deliver_b.clock.advance(3600)
        counts: dict[str, int] = defaultdict(int)
        for event_id in receiver.ids():
            counts[event_id] += 1
        ours = {b["id"] for b in receiver.accepted}
        assert ours and ours <= made
        assert set(counts.values()) == {1}  # no event twice, with no de-duplication at the receiver
        assert len(ours) == 4 * len(cids)
        assert deliver_a.sent and deliver_b.sent  # both did part of the work
    finally:
        await a.client.delete(f"/api/v1/webhooks/{hook['id']}", headers=headers(a))


async def test_an_instance_that_does_not_deliver_sees_another_ones_subscriptions(harness_factory, receiver_url,
                                                                                  mysql_database_url):
    """WEBHOOK_DELIVERY=false still writes the events its subscriptions want: it re-reads them too."""
    quiet = await harness_factory(database_url=mysql_database_url, webhook_delivery=False, webhook_poll_s=0.05)
    other, _ = await webhook_app(harness_factory, database_url=mysql_database_url)
    webhooks, reread = quiet.app[keys.STORE].webhooks, asyncio.Event()
    refresh = webhooks.refresh

    async def noted() -> None:
        await refresh()
        if webhooks.wants("message.created"):
            reread.set()

    webhooks.refresh = noted
    hook = await subscribe(other, await receiver_url(Receiver()), ["message.created"])
    try:
        await asyncio.wait_for(reread.wait(), 10)
        cid = await talk(quiet, "cust-quiet", 1)
        store = quiet.app[keys.STORE]
        rows = await store.db.fetchall(
            f"SELECT webhook_id FROM {store.db.tables.webhook_deliveries} WHERE conversation_id = %s", (cid,))
        assert rows and {r[0] for r in rows} == {hook["id"]}
    finally:
        await other.client.delete(f"/api/v1/webhooks/{hook['id']}", headers=headers(other))


async def test_a_subscription_deleted_elsewhere_fails_no_write_here(harness_factory, receiver_url,
                                                                     mysql_database_url):
    """Deleted on one instance, still in another's cache: that one's messages are stored all the same."""
    here, _ = await webhook_app(harness_factory, database_url=mysql_database_url, webhook_poll_s=3600)
    there, _ = await webhook_app(harness_factory, database_url=mysql_database_url)
    hook = await subscribe(there, await receiver_url(Receiver()), ["message.created"])
    await here.app[keys.STORE].webhooks.refresh()
    assert (await there.client.delete(f"/api/v1/webhooks/{hook['id']}", headers=headers(there))).status == 204
    assert here.app[keys.STORE].webhooks.wants("message.created")  # not re-read yet
    cid = await talk(here, "cust-stale", 1)
    store = here.app[keys.STORE]
    stored = await store.messages.list_of(cid)
    assert [m.sender_type for m in stored] == ["customer", "ai"]
    assert await store.db.fetchall(
        f"SELECT 1 FROM {store.db.tables.webhook_deliveries} WHERE conversation_id = %s", (cid,)) == []


async def test_a_failed_transaction_writes_no_outbox_row(store):
    webhooks = store.webhooks
    hook = await webhooks.create("https://example.com/hook", ["message.created", "conversation.updated"], None)
    try:
        cid = f"c-{time.time_ns()}"
        await store.conversations.create(Conversation(id=cid, user_id="u1", agent_type="ai",
                                                      created_at=now_iso(), updated_at=now_iso()))
        with pytest.raises(StaleVersion):
            await store.messages.append(cid, sender_type="ai", content="late", guard=Guard(state="human"))
        with pytest.raises(RuntimeError):
            async with store.db.transaction() as tx:
                await webhooks.record(tx, "message.created", cid, {"content": "never"})
                raise RuntimeError("the change fails after the outbox insert")
        table = store.db.tables.webhook_deliveries
        assert await store.db.fetchall(f"SELECT id FROM {table} WHERE conversation_id = %s", (cid,)) == []
        await store.messages.append(cid, sender_type="customer", content="kept", sender_id="u1")
        rows = await store.db.fetchall(f"SELECT event_type, body FROM {table} WHERE conversation_id = %s", (cid,))
        assert [(r[0], orjson.loads(r[1])["data"]["content"]) for r in rows] == [("message.created", "kept")]
    finally:
        await webhooks.delete(hook["id"])


async def test_with_no_webhook_the_message_path_writes_no_outbox_row(store):
    await store.webhooks.refresh()
    assert not store.webhooks.wants("message.created")
    cid = f"c-{time.time_ns()}"
    await store.conversations.create(Conversation(id=cid, user_id="u1", agent_type="ai", created_at=now_iso(),
                                                  updated_at=now_iso()))
    await store.messages.append(cid, sender_type="customer", content="hi", sender_id="u1")
    table = store.db.tables.webhook_deliveries
    assert await store.db.fetchall(f"SELECT id FROM {table} WHERE conversation_id = %s", (cid,)) == []


async def test_private_and_loopback_targets_are_refused_by_default(harness_factory, receiver_url):
    h = await harness_factory(webhook_delivery=False)
    receiver = Receiver()
    url = await receiver_url(receiver)
    for bad in (url, url.replace("127.0.0.1", "localhost"), "http://10.0.0.8/hook", "http://[::1]/hook",
                "http://169.254.169.254/latest", "ftp://example.com/x", "http://user:pw@example.com/"):
        resp = await h.client.post("/api/v1/webhooks", json={"url": bad, "events": ["message.created"]},
                                   headers=headers(h))
        assert resp.status == 400, bad
        assert (await resp.json())["error"]["code"] == "invalid"
    assert (await (await h.client.get("/api/v1/webhooks", headers=headers(h))).json())["items"] == []

    # subscribed while allowed, then refused at delivery (the name resolves to loopback: DNS rebinding)
    hook = await h.app[keys.STORE].webhooks.create(url.replace("127.0.0.1", "localhost"), ["message.created"], None)
    await talk(h, "cust-1", 1)
    deliverer = h.app[keys.WEBHOOKS]
    deliverer.clock = Clock()
    await deliverer.drain()
    assert receiver.requests == []
    resp = await h.client.get(f"/api/v1/webhooks/{hook['id']}/deliveries", headers=headers(h))
    items = (await resp.json())["items"]
    assert items and all(d["status"] == "pending" for d in items)
    assert [d["error"] for d in items if d["attempts"]] == [
        "refused: localhost resolves to a private, loopback or link-local address"]


async def test_a_malformed_url_is_400_and_its_credentials_reach_no_log(harness_factory, caplog):
    h = await harness_factory(webhook_delivery=False)
    for bad in ("http://[oops/", "http://a..b/hook", "https://bot:hunter2@host\u2100/", "http://\u2100.com/",
                "https://example.com:99999/hook", "https://example.com:abc/hook"):
        resp = await h.client.post("/api/v1/webhooks", json={"url": bad, "events": ["message.created"]},
                                   headers=headers(h))
        assert resp.status == 400, bad
        body = await resp.json()
        assert body["error"]["code"] == "invalid" and b"hunter2" not in orjson.dumps(body)
    assert "hunter2" not in caplog.text
    assert (await (await h.client.get("/api/v1/webhooks", headers=headers(h))).json())["items"] == []


def test_what_counts_as_private():
    for address in ("127.0.0.1", "10.1.2.3", "192.168.0.1", "172.16.5.4", "169.254.169.254", "::1", "fe80::1",
                    "::ffff:127.0.0.1", "0.0.0.0", "fc00::1"):
        assert private_address(address), address
    for address in ("93.184.216.34", "2606:4700:4700::1111", "8.8.8.8"):
        assert not private_address(address), address
    assert skip_locked_supported("10.11.19-MariaDB-0+deb12u1") and skip_locked_supported("8.0.36")
    assert not skip_locked_supported("10.5.2-MariaDB") and not skip_locked_supported("5.7.44")


async def test_subscriptions_over_rest(harness_factory):
    h = await harness_factory(webhook_delivery=False, webhook_allow_private=True)
    created = await subscribe(h, "https://example.com/hook", ["conversation.updated", "message.created"])
    assert created["secret"].startswith("whsec_") and len(created["secret"]) > 32
    listed = (await (await h.client.get("/api/v1/webhooks", headers=headers(h))).json())["items"]
    assert listed == [{k: v for k, v in created.items() if k != "secret"}]  # the secret is shown once
    for bad in ({"url": "https://example.com", "events": []}, {"url": "https://example.com", "events": ["nope"]},
                {"url": "https://example.com", "events": ["message.created"], "secret": ""},
                {"url": "https://example.com", "events": ["message.created"], "secret": "s" * 256},
                {"events": ["message.created"]}):
        resp = await h.client.post("/api/v1/webhooks", json=bad, headers=headers(h))
        assert resp.status == 400, bad
    short = await h.client.post("/api/v1/webhooks", headers=headers(h), json={  # PROTOCOL 6.1 sets no minimum
        "url": "https://example.com/short", "events": ["message.created"], "secret": "s3cret"})
    assert short.status == 201 and (await short.json())["secret"] == "s3cret"
    await h.client.delete(f"/api/v1/webhooks/{(await short.json())['id']}", headers=headers(h))
    agent = await h.client.get("/api/v1/webhooks", headers=headers(h, "agent-1", "agent"))
    assert agent.status == 403
    assert (await h.client.get("/api/v1/webhooks/nope/deliveries", headers=headers(h))).status == 404
    assert (await h.client.delete(f"/api/v1/webhooks/{created['id']}", headers=headers(h))).status == 204
    assert (await h.client.delete(f"/api/v1/webhooks/{created['id']}", headers=headers(h))).status == 404
    assert not h.app[keys.STORE].webhooks.wants("message.created")


def test_sign_matches_the_documented_formula():
    body = b'{"id":"e1"}'
    assert sign("k", 1700000000, body) == "t=1700000000,v1=" + hmac.new(
        b"k", b"1700000000." + body, hashlib.sha256).hexdigest()


async def test_a_sigkilled_service_delivers_after_the_restart(harness_factory, receiver_url, tmp_path):
    """The process is SIGKILLed after the changes committed and before its loop looked again; the next
    instance on the same database delivers every event."""
    database_url = f"sqlite:///{tmp_path}/killed.db"
    port, jwt_secret = free_port(), "test-secret-0123456789abcdef0123456789"
    env = {**{k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "DATABASE_URL")},
           "REDIS_URL": redis_url(), "DATABASE_URL": database_url, "JWT_SECRET_KEY": jwt_secret,
           "AI_PROVIDER": "echo", "CHAT_DATA_DIR": str(tmp_path), "WEBHOOK_ALLOW_PRIVATE": "true",
           "WEBHOOK_POLL_S": "3600", "BUS_CHANNEL": f"chat:events:killed:{uuid.uuid4().hex[:8]}"}
    service = Supervisor([sys.executable, "-m", "chat", "serve", "--host", "127.0.0.1", "--port", str(port)], env)
    receiver = Receiver()
    try:
        service.wait_for(lambda lines: any("Running on" in line for line in lines))
        base = f"http://127.0.0.1:{port}"
        admin = {"Authorization": f"Bearer {issue_token(jwt_secret, 'admin-1', 'admin')}"}
        async with aiohttp.ClientSession() as http:
            created = await http.post(f"{base}/api/v1/webhooks", headers=admin,
                                      json={"url": await receiver_url(receiver), "events": ["message.created"]})
            assert created.status == 201
            # a customer of its own: the service shares the tests' Redis database, and with it the start quotas
            customer = f"cust-killed-{uuid.uuid4().hex[:8]}"
            ws = WS(await http.ws_connect(f"{base}/ws?token={issue_token(jwt_secret, customer, 'customer')}"))
            cid = (await ws.ok("conversation.start"))["conversation"]["id"]
            await ws.ok("message.send", conversation_id=cid, client_msg_id="k1", content="before the kill")
            await ws.event("message.created", lambda f: f["data"]["message"]["sender_type"] == "ai")
            service.kill()  # SIGKILL: no shutdown of any kind
            await ws.close()
    finally:
        service.kill()
    assert receiver.requests == []

    restarted, deliverer = await webhook_app(harness_factory, database_url=database_url)
    made = await outbox_events(restarted)
    assert len(made) == 2  # the customer's message and the AI's reply
    await deliverer.drain()
    assert [b["data"]["content"] for b in receiver.accepted][0] == "before the kill"
    assert sorted(b["id"] for b in receiver.accepted) == sorted(event_id for event_id, _ in made)


def sample(name: str, labels: dict[str, str] | None = None) -> float:
    return REGISTRY.get_sample_value(name, labels or {}) or 0.0


async def test_deliveries_are_counted_by_outcome_and_the_backlog_is_a_desk_gauge(harness_factory, receiver_url):
    h, deliverer = await webhook_app(harness_factory, webhook_retry_base_s=5.0)
    receiver = Receiver(fail=[500])
    await subscribe(h, await receiver_url(receiver), ["message.created"])
    await talk(h, "cust-m", 1)  # the customer's message and the AI's reply: two events
    desk = Desk(h.app[keys.STORE], h.app[keys.PRESENCE].roster, h.app[keys.HUB])
    await desk.refresh()
    assert sample("chat_webhook_backlog") == 2
    before = {outcome: sample("chat_webhook_deliveries_total", {"outcome": outcome})
              for outcome in ("delivered", "retry", "failed")}
    lag_count = sample("chat_webhook_delivery_lag_seconds_count")

    assert await deliverer.drain() == 1  # the head of the line fails with 500; the second waits behind it
    deliverer.clock.advance(5.1)
    await deliverer.drain()
    assert len(receiver.accepted) == 2

    assert sample("chat_webhook_deliveries_total", {"outcome": "retry"}) - before["retry"] == 1
    assert sample("chat_webhook_deliveries_total", {"outcome": "delivered"}) - before["delivered"] == 2
    assert sample("chat_webhook_deliveries_total", {"outcome": "failed"}) == before["failed"]
    assert sample("chat_webhook_delivery_lag_seconds_count") - lag_count == 2
    await Desk(h.app[keys.STORE], h.app[keys.PRESENCE].roster, h.app[keys.HUB]).refresh()
    assert sample("chat_webhook_backlog") == 0
