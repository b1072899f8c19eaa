"""Quotas (PROTOCOL 3.2, 3.7): conversation starts per user per minute, counted in Redis across
instances and transports; sockets per user per instance (close 4429)."""

import asyncio
import uuid

import pytest
from aiohttp import WSServerHandshakeError

from chat import keys
from chat.errors import RateLimited
from chat.quotas import WINDOW_S, ConversationQuota
from states import redis_keys


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


async def test_the_quota_allows_per_min_starts_in_any_window(redis):
    clock, user = Clock(), f"u-{uuid.uuid4().hex[:8]}"
    quota = ConversationQuota(redis, 3, clock=clock)
    for _ in range(3):
        await quota.take(user)
        clock.now += 10
    with pytest.raises(RateLimited):
        await quota.take(user)
    assert await redis.zcard(redis_keys.conversation_starts(user)) == 3  # a refusal is not counted
    assert 0 < await redis.ttl(redis_keys.conversation_starts(user)) <= WINDOW_S + 1
    clock.now += WINDOW_S - 20 + 0.001  # the first start left the window
    await quota.take(user)
    await quota.take(f"{user}-other")  # per user


async def test_concurrent_starts_never_pass_the_limit(redis):
    quota, user = ConversationQuota(redis, 5), f"u-{uuid.uuid4().hex[:8]}"
    results = await asyncio.gather(*(quota.take(user) for _ in range(30)), return_exceptions=True)
    assert sum(isinstance(r, str) for r in results) == 5  # the members counted
    assert all(isinstance(r, RateLimited) for r in results if not isinstance(r, str))


async def test_one_limit_over_websocket_and_rest_on_two_instances(harness_factory, mysql_database_url):
    a = await harness_factory(database_url=mysql_database_url, conversations_per_user_per_min=3)
    b = await harness_factory(database_url=mysql_database_url, conversations_per_user_per_min=3)
    ws = await a.connect("cust-q")
    headers = {"Authorization": f"Bearer {b.token('cust-q')}"}
    await ws.ok("conversation.start")
    assert (await b.client.post("/api/v1/sessions", json={}, headers=headers)).status == 201
    await ws.ok("conversation.start")
    refused = await ws.request("conversation.start", metadata={"n": 1})
    assert refused["type"] == "error" and refused["code"] == "rate_limited"
    resp = await b.client.post("/api/v1/sessions", json={}, headers=headers)
    assert resp.status == 429
    body = await resp.json()
    assert body["error"]["code"] == "rate_limited" and body["error"]["message"]
    admin = {"Authorization": f"Bearer {a.token('admin-q', role='admin')}"}
    listed = await (await a.client.get("/api/v1/conversations?user_id=cust-q", headers=admin)).json()
    assert len(listed["items"]) == 3  # nothing was written for the refused starts
    other = await a.connect("cust-other")
    await other.ok("conversation.start")


async def test_a_socket_over_the_users_cap_is_closed_4429(harness_factory):
    h = await harness_factory(ws_max_sockets_per_user=2)
    first, second = await h.connect("cust-s"), await h.connect("cust-s")
    third = await h.connect("cust-s")  # URL token: upgraded, then closed right after authentication
    assert await third.closed() == 4429
    by_frame = await h.connect()
    reply = await by_frame.request("auth", token=h.token("cust-s"))
    assert reply["type"] == "error" and reply["code"] == "rate_limited"
    assert await by_frame.closed() == 4429
    other = await h.connect("cust-t")  # another user is not affected
    await other.ok("conversation.start")
    for ws in (first, second):
        await ws.ok("conversation.start")


async def test_a_refused_socket_leaves_no_trace_in_the_hub(harness_factory):
    h = await harness_factory(ws_max_sockets_per_user=1)
    await h.connect("agent-s", role="agent")
    extra = await h.connect("agent-s", role="agent")
    assert await extra.closed() == 4429
    assert len(h.app[keys.HUB].sockets_of("agent-s")) == 1
    with pytest.raises(WSServerHandshakeError):  # a bad token still fails the handshake first
        await h.client.ws_connect("/ws?token=garbage")


async def test_sockets_authenticating_at_once_cannot_all_pass_the_cap(harness_factory):
    """The account's look waits for SQL; sockets of one user that authenticate meanwhile are
    counted after it, so no more than the cap get in."""
    h = await harness_factory(ws_max_sockets_per_user=1)
    standings = h.app[keys.ACCOUNTS].standings
    original, gate, waiting, all_waiting = standings.check, asyncio.Event(), [], asyncio.Event()

    async def slow_check(user_id):
        waiting.append(user_id)
        if len(waiting) == 3:
            all_waiting.set()
        await gate.wait()
        return await original(user_id)

    standings.check = slow_check
    sockets = [await h.connect() for _ in range(3)]
    replies = [asyncio.ensure_future(ws.request("auth", token=h.token("agent-cap", role="agent"))) for ws in sockets]
    await asyncio.wait_for(all_waiting.wait(), 5)  # every socket is inside the account's look
    gate.set()
    answered = await asyncio.gather(*replies)
    assert sorted(r["type"] for r in answered) == ["error", "error", "result"]
    assert all(r["code"] == "rate_limited" for r in answered if r["type"] == "error")
    refused = [ws for ws, r in zip(sockets, answered, strict=True) if r["type"] == "error"]
    assert [await ws.closed() for ws in refused] == [4429, 4429]
    assert len(h.app[keys.HUB].sockets_of("agent-cap")) == 1


async def test_a_sliding_window_says_when_to_retry_and_takes_back(redis):
    from chat.quotas import SlidingWindow

    clock, key = Clock(), f"quota:test:{uuid.uuid4().hex[:8]}"
    window = SlidingWindow(redis, 2, 900, clock=clock)
    first = await window.take(key)
    clock.now += 100
    second = await window.take(key)
    assert first.member and second.member
    clock.now += 50
    refused = await window.take(key)
    assert refused.member is None and refused.retry_after_s == 750  # the first leaves the window at +900
    assert 0 < await redis.ttl(key) <= 901
    await window.give_back(key, second.member)  # e.g. a login that succeeded
    assert (await window.take(key)).member is not None
    await redis.delete(key)


async def test_a_start_that_fails_gives_its_count_back(harness_factory, monkeypatch):
    """The database away: each failed start used to count, so a customer retrying through the outage was
    refused (rate_limited) for a minute after it ended."""
    from chat.store import DatabaseError

    h = await harness_factory(conversations_per_user_per_min=2)
    ws = await h.connect("cust-down")
    original = h.repository.create

    async def database_down(*args, **kwargs):
        raise DatabaseError("the database is away")

    monkeypatch.setattr(h.repository, "create", database_down)
    for _ in range(3):
        assert (await ws.request("conversation.start"))["code"] == "unavailable"
    assert await h.app[keys.REDIS].zcard(redis_keys.conversation_starts("cust-down")) == 0
    monkeypatch.setattr(h.repository, "create", original)
    await ws.ok("conversation.start")
    await ws.ok("conversation.start")
    assert (await ws.request("conversation.start"))["code"] == "rate_limited"  # the limit still holds
