"""DashScopeProvider against a local fake DashScope over real HTTP on 127.0.0.1."""

from __future__ import annotations

import asyncio

import aiohttp

from chat.ai import DashScopeProvider

from .support import USER_HI, collect, collect_until_error

# Every test here must finish well within this; a regression that buffers the
# stream would otherwise deadlock the lockstep test instead of failing it.
GUARD_S = 5.0


def make(session, base_url: str, **kwargs) -> DashScopeProvider:
    kwargs.setdefault("api_key", "sk-fake")
    kwargs.setdefault("retry_base_s", 0.0)  # retries without waiting
    return DashScopeProvider(session, base_url=base_url, **kwargs)


async def test_chunks_arrive_one_by_one_as_the_server_sends_them(session, fake, fake_base_url):
    fake.gate = asyncio.Queue()
    received = []
    async with asyncio.timeout(GUARD_S):
        async for item in make(session, fake_base_url).stream(USER_HI):
            received.append(item)
            fake.log.append(f"got {item}")
            # The server holds the next chunk until this one has reached us.
            fake.gate.put_nowait(None)
    assert received == ["你好", "！我是", "通义千问。"]
    assert fake.log == ["sent 0", "got 你好", "sent 1", "got ！我是", "sent 2", "got 通义千问。", "sent 3"]
    (request,) = fake.requests
    assert request["headers"]["X-DashScope-SSE"] == "enable"
    assert request["json"]["parameters"] == {"result_format": "message", "incremental_output": True}


async def test_chunks_that_arrive_together_come_out_as_one_delta_in_order(session, fake, fake_base_url):
    fake.together = True  # every event of the reply in one write
    async with asyncio.timeout(GUARD_S):
        assert await collect(make(session, fake_base_url)) == ["你好！我是通义千问。"]


async def test_a_reply_that_said_stop_is_complete_though_the_connection_stays_open(session, fake, fake_base_url):
    """A finished reply was read on until the connection closed: a proxy holding it open timed the turn
    out, and the complete reply was lost."""
    fake.hold_open = True
    async with asyncio.timeout(GUARD_S):
        items = await collect(make(session, fake_base_url, chunk_timeout_s=GUARD_S * 2))
    assert "".join(items) == "你好！我是通义千问。"


async def test_one_connection_serves_reply_after_reply(session, fake, fake_base_url):
    """The reader stops at the final chunk, then reads the body to its end: left unread, the connection was
    closed instead of going back to the pool, and every turn paid for a new one (TLS included, in production)."""
    provider = make(session, fake_base_url)
    fake.eof_gate = asyncio.Event()
    async with asyncio.timeout(GUARD_S):
        for _ in range(3):
            fake.eof_gate.clear()
            received = []
            async for item in provider.stream(USER_HI):
                received.append(item)
                if item.endswith("通义千问。"):  # the last piece: the body ends only after the final chunk was read
                    fake.eof_gate.set()
            assert "".join(received) == "你好！我是通义千问。"
    assert len({request["peer"] for request in fake.requests}) == 1


async def test_silence_between_chunks_times_out_without_retry(session, fake, fake_base_url):
    fake.stall_after = 1
    async with asyncio.timeout(GUARD_S):
        items, error = await collect_until_error(make(session, fake_base_url, chunk_timeout_s=0.2))
    assert items == ["你好"]
    assert (error.code, error.retryable) == ("timeout", False)
    assert len(fake.requests) == 1


async def test_keep_alive_comments_alone_time_out_as_silence(session, fake, fake_base_url):
    """A gateway whose upstream is stuck sends SSE comments: bytes, but no piece of the reply."""
    fake.stall_after, fake.keepalive_s = 1, 0.02
    async with asyncio.timeout(GUARD_S):
        items, error = await collect_until_error(make(session, fake_base_url, chunk_timeout_s=0.2))
    assert items == ["你好"]
    assert (error.code, error.retryable) == ("timeout", False)
    assert len(fake.requests) == 1


async def test_silence_before_the_first_chunk_times_out(session, fake, fake_base_url):
    fake.stall_after = 0
    async with asyncio.timeout(GUARD_S):
        items, error = await collect_until_error(make(session, fake_base_url, chunk_timeout_s=0.2))
    assert items == []
    assert error.code == "timeout"
    assert len(fake.requests) == 1


async def test_connection_dropped_mid_stream_is_a_stream_error(session, fake, fake_base_url):
    fake.drop_after = 2
    async with asyncio.timeout(GUARD_S):
        items, error = await collect_until_error(make(session, fake_base_url))
    assert "".join(items) == "你好！我是"  # in one delta or two, as the reads fell
    assert (error.code, error.retryable) == ("stream_error", False)


async def test_throttled_twice_then_streams(session, fake, fake_base_url):
    fake.failures = [(429, "Throttling.RateQuota"), (503, "ServiceUnavailable")]
    async with asyncio.timeout(GUARD_S):
        assert "".join(await collect(make(session, fake_base_url))) == "你好！我是通义千问。"
    assert len(fake.requests) == 3


async def test_wrong_key_degrades_health(session, fake, fake_base_url):
    provider = make(session, fake_base_url, api_key="sk-wrong")
    async with asyncio.timeout(GUARD_S):
        _, error = await collect_until_error(provider)
    assert (error.code, error.status) == ("InvalidApiKey", 401)
    assert provider.health == {"status": "degraded", "code": "InvalidApiKey"}


async def test_abandoned_stream_releases_the_connection(fake, fake_base_url):
    fake.gate = asyncio.Queue()
    # One connection in the pool: a leaked half-read response would block the next call.
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1)) as one_connection:
        provider = make(one_connection, fake_base_url)
        async with asyncio.timeout(GUARD_S):
            stream = provider.stream(USER_HI)
            assert await anext(stream) == "你好"
            await stream.aclose()
            fake.gate = None
            assert "".join(await collect(provider)) == "你好！我是通义千问。"
    assert len(fake.requests) == 2
