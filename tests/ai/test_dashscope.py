"""DashScopeProvider against recorded DashScope responses (no network)."""

from __future__ import annotations

import json
import logging

import aiohttp
import pytest

from chat.ai import TRANSFER_TO_HUMAN_TOOL, DashScopeProvider, Provider, ToolCall, streaming

from . import streams
from .support import USER_HI, calls, collect, collect_until_error

BASE_URL = "https://dashscope.test/api/v1"
URL = BASE_URL + "/services/aigc/text-generation/generation"
API_KEY = "sk-secret-0123456789"


def make(session, **kwargs) -> DashScopeProvider:
    kwargs.setdefault("retry_base_s", 0.0)  # retries without waiting
    return DashScopeProvider(session, api_key=API_KEY, base_url=BASE_URL, **kwargs)


def sse(mock, body: str, *, status: int = 200, content_type: str = "text/event-stream") -> None:
    mock.post(URL, status=status, body=body.encode(), content_type=content_type)


async def test_request_is_the_native_streaming_call(session, mocked):
    sse(mocked, streams.DASHSCOPE_INCREMENTAL)
    provider = make(session, model="qwen-plus", extra_parameters={"temperature": 0.3})

    await collect(provider, tools=[TRANSFER_TO_HUMAN_TOOL])

    (call,) = calls(mocked, URL)
    headers = call.kwargs["headers"]
    assert headers["Authorization"] == f"Bearer {API_KEY}"
    assert headers["X-DashScope-SSE"] == "enable"
    assert headers["Accept"] == "text/event-stream"
    assert call.kwargs["json"] == {
        "model": "qwen-plus",
        "input": {"messages": USER_HI},
        "parameters": {
            "result_format": "message",
            "incremental_output": True,
            "temperature": 0.3,
            "tools": [TRANSFER_TO_HUMAN_TOOL],
        },
    }
    timeout = call.kwargs["timeout"]
    assert (timeout.total, timeout.connect, timeout.sock_read) == (None, 5.0, 30.0)


async def test_no_tools_key_without_tools(session, mocked):
    sse(mocked, streams.DASHSCOPE_INCREMENTAL)
    await collect(make(session))
    (call,) = calls(mocked, URL)
    assert "tools" not in call.kwargs["json"]["parameters"]


@pytest.mark.parametrize(
    ("body", "incremental", "expected"),
    [
        (streams.DASHSCOPE_INCREMENTAL, True, streams.DASHSCOPE_DELTAS),
        (streams.DASHSCOPE_CUMULATIVE, False, streams.DASHSCOPE_DELTAS),
        (streams.DASHSCOPE_TEXT_FORMAT, True, streams.DASHSCOPE_TEXT_DELTAS),
        (streams.DASHSCOPE_TEXT_FORMAT_CUMULATIVE, False, streams.DASHSCOPE_TEXT_DELTAS),
    ],
    ids=["message-incremental", "message-cumulative", "text-incremental", "text-cumulative"],
)
async def test_streams_yield_only_new_text(session, mocked, body, incremental, expected):
    """Incremental chunks as the service asks; cumulative ones (each the whole text) when the parameters
    turn incremental_output off."""
    sse(mocked, body)
    provider = make(session, extra_parameters=None if incremental else {"incremental_output": False})
    assert await collect(provider) == expected
    assert provider.health == {"status": "ok"}
    assert calls(mocked, URL)[0].kwargs["json"]["parameters"]["incremental_output"] is incremental


async def test_an_incremental_piece_that_starts_with_the_text_before_it_is_kept_whole(session, mocked):
    """哈, 哈哈, ，你好: once read as a cumulative stream (the second piece extends the first), which
    dropped text and failed the turn into a handoff."""
    pieces = ["哈", "哈哈", "，你好", "！"]
    chunks = [{"output": {"choices": [{"message": {"content": piece}, "finish_reason": "null"}]}} for piece in pieces]
    chunks[-1]["output"]["choices"][0]["finish_reason"] = "stop"
    sse(mocked, "".join(f"data:{json.dumps(chunk, ensure_ascii=False)}\n\n" for chunk in chunks))
    assert "".join(await collect(make(session))) == "哈哈哈，你好！"


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (streams.DASHSCOPE_JSON_MESSAGE, ["你好！有什么可以帮您的吗？"]),
        (streams.DASHSCOPE_JSON_TEXT, ["Hello! How can I help?"]),
    ],
    ids=["message", "text"],
)
async def test_non_streamed_json_reply_in_both_shapes(session, mocked, body, expected):
    sse(mocked, body, content_type="application/json")
    assert await collect(make(session)) == expected


async def test_incremental_chunk_that_repeats_the_first_is_not_swallowed(session, mocked):
    body = (
        'data:{"output":{"choices":[{"message":{"content":"ha"},"finish_reason":"null"}]}}\n\n'
        'data:{"output":{"choices":[{"message":{"content":"ha"},"finish_reason":"null"}]}}\n\n'
        'data:{"output":{"choices":[{"message":{"content":"!"},"finish_reason":"stop"}]}}\n\n'
    )
    sse(mocked, body)
    assert await collect(make(session)) == ["haha!"]


async def test_tool_call_arguments_streamed_in_pieces(session, mocked):
    sse(mocked, streams.DASHSCOPE_TOOL_CALL)
    items = await collect(make(session), tools=[TRANSFER_TO_HUMAN_TOOL])
    assert items == [ToolCall("transfer_to_human", streams.TOOL_CALL_ARGUMENTS)]


async def test_tool_call_still_pending_when_the_stream_stops_is_yielded_at_the_end(session, mocked):
    body = (
        'data:{"output":{"choices":[{"message":{"content":"One moment.","tool_calls":[{"index":0,'
        '"function":{"name":"transfer_to_human","arguments":"{\\"reason\\": \\"refund\\"}"}}]},'
        '"finish_reason":"null"}]}}\n\n'
        'data:{"output":{"choices":[{"message":{"content":""},"finish_reason":"stop"}]}}\n\n'
    )
    sse(mocked, body)
    items = await collect(make(session))
    assert items == ["One moment.", ToolCall("transfer_to_human", {"reason": "refund"})]


async def test_tool_call_with_cumulative_or_invalid_arguments(session, mocked):
    body = (
        'data:{"output":{"choices":[{"message":{"tool_calls":[{"index":0,"function":{"name":"transfer_to_human",'
        '"arguments":"{\\"reason\\": \\"re"}},{"index":1,"function":{"name":"broken","arguments":"{not json"}}]},'
        '"finish_reason":"null"}]}}\n\n'
        'data:{"output":{"choices":[{"message":{"tool_calls":[{"index":0,"function":{'
        '"arguments":"{\\"reason\\": \\"refund\\"}"}}]},"finish_reason":"tool_calls"}]}}\n\n'
    )
    sse(mocked, body)
    items = await collect(make(session))
    assert items == [ToolCall("transfer_to_human", {"reason": "refund"}), ToolCall("broken", {})]


async def test_error_event_mid_stream_is_not_retried(session, mocked):
    sse(mocked, streams.DASHSCOPE_ERROR_MID_STREAM)
    sse(mocked, streams.DASHSCOPE_INCREMENTAL)  # a retry would wrongly find this
    items, error = await collect_until_error(make(session))
    assert items == ["我"]
    assert error.code == "stream_error"
    assert "DataInspectionFailed" in error.message
    assert error.status == 400
    assert error.retryable is False
    assert error.request_id == "0c9b-8"
    assert len(calls(mocked, URL)) == 1


async def test_error_event_before_any_text_is_retried(session, mocked):
    sse(mocked, streams.DASHSCOPE_ERROR_EVENT_THROTTLED)
    sse(mocked, streams.DASHSCOPE_INCREMENTAL)
    assert await collect(make(session)) == streams.DASHSCOPE_DELTAS
    assert len(calls(mocked, URL)) == 2


async def test_invalid_api_key_is_not_retried_and_degrades_health_until_a_success(session, mocked):
    sse(mocked, streams.DASHSCOPE_401, status=401, content_type="application/json")
    sse(mocked, streams.DASHSCOPE_INCREMENTAL)
    provider = make(session)

    items, error = await collect_until_error(provider)

    assert items == []
    assert (error.code, error.status, error.retryable) == ("InvalidApiKey", 401, False)
    assert error.message == "Invalid API-key provided."
    assert len(calls(mocked, URL)) == 1
    assert provider.health == {"status": "degraded", "code": "InvalidApiKey"}

    assert await collect(provider) == streams.DASHSCOPE_DELTAS
    assert provider.health == {"status": "ok"}


async def test_throttled_then_success_is_retried(session, mocked):
    sse(mocked, streams.DASHSCOPE_429, status=429, content_type="application/json")
    sse(mocked, streams.DASHSCOPE_INCREMENTAL)
    provider = make(session)
    assert await collect(provider) == streams.DASHSCOPE_DELTAS
    assert len(calls(mocked, URL)) == 2
    assert provider.health == {"status": "ok"}


async def test_server_errors_exhaust_the_retries(session, mocked, monkeypatch):
    ceilings_s = []
    monkeypatch.setattr(streaming.random, "uniform", lambda low, high: ceilings_s.append((low, high)) or 0.0)
    for _ in range(3):
        sse(mocked, streams.DASHSCOPE_500, status=500, content_type="application/json")

    items, error = await collect_until_error(make(session, max_retries=2, retry_base_s=0.5))

    assert items == []
    assert (error.code, error.status, error.retryable) == ("InternalError", 500, True)
    assert len(calls(mocked, URL)) == 3
    # Full jitter: uniform(0, base * 2**attempt) before each retry.
    assert ceilings_s == [(0.0, 0.5), (0.0, 1.0)]


async def test_sse_framed_error_body_whatever_its_content_type(session, mocked):
    sse(mocked, streams.DASHSCOPE_400_SSE_FRAMED, status=400, content_type="application/json")
    _, error = await collect_until_error(make(session))
    assert (error.code, error.status, error.retryable) == ("InvalidParameter", 400, False)
    assert error.message == "Role must be in [user, assistant]"
    assert len(calls(mocked, URL)) == 1


async def test_gateway_error_page_is_retried_with_a_generic_code(session, mocked):
    mocked.post(URL, status=502, body=b"<html><body>502 Bad Gateway</body></html>", content_type="text/html")
    _, error = await collect_until_error(make(session, max_retries=0))
    assert (error.code, error.status, error.retryable) == ("http_502", 502, True)
    assert "502 Bad Gateway" in error.message


async def test_connection_error_is_retried(session, mocked):
    mocked.post(URL, exception=aiohttp.ServerDisconnectedError())
    sse(mocked, streams.DASHSCOPE_INCREMENTAL)
    assert await collect(make(session)) == streams.DASHSCOPE_DELTAS
    assert len(calls(mocked, URL)) == 2


async def test_connect_timeout_is_retried_then_reported_as_timeout(session, mocked):
    for _ in range(2):
        mocked.post(URL, exception=aiohttp.ConnectionTimeoutError())
    _, error = await collect_until_error(make(session, max_retries=1))
    assert (error.code, error.retryable) == ("timeout", True)
    assert len(calls(mocked, URL)) == 2


async def test_read_timeout_before_any_text_is_not_retried(session, mocked):
    mocked.post(URL, exception=aiohttp.SocketTimeoutError())
    _, error = await collect_until_error(make(session))
    assert (error.code, error.retryable) == ("timeout", False)
    assert len(calls(mocked, URL)) == 1


async def test_stream_cut_short_after_text_is_a_stream_error(session, mocked):
    cut = streams.DASHSCOPE_INCREMENTAL.split("id:3")[0]
    sse(mocked, cut)
    items, error = await collect_until_error(make(session))
    assert items == ["你好！有什么"]  # the text before the cut, given to the caller before the error
    assert (error.code, error.retryable) == ("stream_error", False)
    assert len(calls(mocked, URL)) == 1


async def test_empty_reply_before_any_text_is_retried(session, mocked):
    sse(mocked, "")
    sse(mocked, streams.DASHSCOPE_INCREMENTAL)
    assert await collect(make(session)) == streams.DASHSCOPE_DELTAS


async def test_chunk_that_is_not_json_is_a_bad_response(session, mocked):
    sse(mocked, "id:1\nevent:result\n:HTTP_STATUS/200\ndata:{oops\n\n")
    _, error = await collect_until_error(make(session))
    assert (error.code, error.retryable) == ("bad_response", False)


async def test_api_key_never_reaches_logs_errors_or_repr(session, mocked, caplog):
    caplog.set_level(logging.DEBUG)
    sse(mocked, streams.DASHSCOPE_429, status=429, content_type="application/json")
    sse(mocked, streams.DASHSCOPE_401, status=401, content_type="application/json")
    provider = make(session)

    _, error = await collect_until_error(provider)

    assert "Throttling.RateQuota" in caplog.text  # the retry was logged
    for text in (caplog.text, str(error), repr(error), repr(provider)):
        assert API_KEY not in text


async def test_is_a_provider(session):
    provider = make(session)
    assert isinstance(provider, Provider)
    assert provider.name == "dashscope"


async def test_rejects_nonsense_settings(session):
    with pytest.raises(ValueError):
        make(session, chunk_timeout_s=0)
    with pytest.raises(ValueError):
        make(session, max_retries=-1)

