"""OpenAIProvider against recorded OpenAI-compatible responses (no network)."""

from __future__ import annotations

import pytest

from chat.ai import TRANSFER_TO_HUMAN_TOOL, OpenAIProvider, Provider, ToolCall

from . import streams
from .support import USER_HI, calls, collect, collect_until_error

BASE_URL = "https://llm.test/v1/"
URL = "https://llm.test/v1/chat/completions"
API_KEY = "sk-openai-secret"


def make(session, **kwargs) -> OpenAIProvider:
    kwargs.setdefault("api_key", API_KEY)
    kwargs.setdefault("retry_base_s", 0.0)  # retries without waiting
    return OpenAIProvider(session, base_url=BASE_URL, model="gpt-4o-mini", **kwargs)


def sse(mock, body: str, *, status: int = 200, content_type: str = "text/event-stream") -> None:
    mock.post(URL, status=status, body=body.encode(), content_type=content_type)


async def test_request_is_a_streamed_chat_completion(session, mocked):
    sse(mocked, streams.OPENAI_STREAM)
    await collect(make(session, extra_body={"temperature": 0.2}), tools=[TRANSFER_TO_HUMAN_TOOL])
    (call,) = calls(mocked, URL)
    assert call.kwargs["headers"]["Authorization"] == f"Bearer {API_KEY}"
    assert call.kwargs["json"] == {
        "model": "gpt-4o-mini",
        "messages": USER_HI,
        "temperature": 0.2,
        "stream": True,
        "tools": [TRANSFER_TO_HUMAN_TOOL],
    }


async def test_no_authorization_header_without_a_key(session, mocked):
    sse(mocked, streams.OPENAI_STREAM)
    await collect(make(session, api_key=""))
    (call,) = calls(mocked, URL)
    assert "Authorization" not in call.kwargs["headers"]


async def test_stream_ending_with_done(session, mocked):
    sse(mocked, streams.OPENAI_STREAM)
    provider = make(session)
    assert await collect(provider) == streams.OPENAI_DELTAS
    assert provider.health == {"status": "ok"}


async def test_tool_call_arguments_streamed_in_pieces(session, mocked):
    sse(mocked, streams.OPENAI_TOOL_CALL)
    items = await collect(make(session), tools=[TRANSFER_TO_HUMAN_TOOL])
    assert items == [ToolCall("transfer_to_human", streams.TOOL_CALL_ARGUMENTS)]


async def test_interleaved_tool_calls_are_kept_apart_by_index(session, mocked):
    sse(mocked, streams.OPENAI_TWO_TOOL_CALLS)
    assert await collect(make(session)) == [
        ToolCall("lookup_order", {"order_id": 42}),
        ToolCall("transfer_to_human", {"reason": "refund"}),
    ]


async def test_non_streamed_json_reply(session, mocked):
    sse(mocked, streams.OPENAI_JSON_REPLY, content_type="application/json")
    assert await collect(make(session)) == ["Hello there!"]


async def test_finish_reason_without_done_is_complete(session, mocked):
    sse(mocked, streams.OPENAI_STREAM.replace("data: [DONE]\n\n", ""))
    assert await collect(make(session)) == streams.OPENAI_DELTAS


async def test_stream_cut_short_is_a_stream_error(session, mocked):
    sse(mocked, streams.OPENAI_STREAM.split('"delta":{},')[0].rsplit("data: ", 1)[0])
    items, error = await collect_until_error(make(session))
    assert items == streams.OPENAI_DELTAS
    assert (error.code, error.retryable) == ("stream_error", False)


async def test_error_object_mid_stream(session, mocked):
    sse(mocked, streams.OPENAI_ERROR_MID_STREAM)
    items, error = await collect_until_error(make(session))
    assert items == ["Hel"]
    assert (error.code, error.retryable) == ("stream_error", False)
    assert "server_error" in error.message
    assert len(calls(mocked, URL)) == 1


async def test_invalid_key_is_not_retried_and_degrades_health(session, mocked):
    sse(mocked, streams.OPENAI_401, status=401, content_type="application/json")
    provider = make(session)
    _, error = await collect_until_error(provider)
    assert (error.code, error.status, error.retryable) == ("invalid_api_key", 401, False)
    assert provider.health == {"status": "degraded", "code": "invalid_api_key"}
    assert len(calls(mocked, URL)) == 1


async def test_rate_limit_then_success_is_retried(session, mocked):
    sse(mocked, streams.OPENAI_429, status=429, content_type="application/json")
    sse(mocked, streams.OPENAI_STREAM)
    assert await collect(make(session)) == streams.OPENAI_DELTAS
    assert len(calls(mocked, URL)) == 2


async def test_exhausted_quota_is_not_retried(session, mocked):
    body = (
        '{"error":{"message":"You exceeded your current quota.",'
        '"type":"insufficient_quota","code":"insufficient_quota"}}'
    )
    sse(mocked, body, status=429, content_type="application/json")
    _, error = await collect_until_error(make(session))
    assert (error.code, error.retryable) == ("insufficient_quota", False)
    assert len(calls(mocked, URL)) == 1


async def test_server_errors_exhaust_the_retries(session, mocked):
    for _ in range(3):
        sse(mocked, '{"error":{"message":"upstream failed","type":"server_error","code":null}}', status=503)
    _, error = await collect_until_error(make(session, max_retries=2))
    assert (error.code, error.status, error.retryable) == ("server_error", 503, True)
    assert len(calls(mocked, URL)) == 3


async def test_is_a_provider(session):
    provider = make(session)
    assert isinstance(provider, Provider)
    assert provider.name == "openai"
    assert API_KEY not in repr(provider)


async def test_base_url_is_required(session):
    with pytest.raises(ValueError):
        OpenAIProvider(session, api_key="", base_url="", model="m")


def test_the_reply_has_ended_at_a_finish_reason_or_done():
    """What the reader stops at (a server or proxy may keep the connection open after it)."""
    from chat.ai.openai import OpenAIReply
    from chat.ai.sse import SSEEvent

    reply = OpenAIReply()
    reply.feed(SSEEvent(data='{"choices":[{"delta":{"content":"Hi"},"finish_reason":null}]}'))
    assert not reply.ended
    reply.feed(SSEEvent(data='{"choices":[{"delta":{},"finish_reason":"stop"}]}'))
    assert reply.ended
    done = OpenAIReply()
    done.feed(SSEEvent(data="[DONE]"))
    assert done.ended


async def test_a_tail_cut_short_after_the_end_is_no_part_of_the_reply(session, mocked):
    """What follows the final chunk is not read as the reply: a `data: [DO` cut short there once turned a
    complete reply into bad_response (an interrupted turn, a failure counted towards the handoff)."""
    body = ('data: {"choices":[{"delta":{"content":"All done."},"finish_reason":null}]}\n\n'
            'data: {"choices":[{"delta":{},"finish_reason":"stop"}]}\n\n'
            'data: [DO')
    sse(mocked, body)
    assert await collect(make(session)) == ["All done."]
