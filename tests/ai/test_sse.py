"""The SSE decoder and the shared error and tool-call helpers."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chat.ai import ToolCall
from chat.ai.sse import SSEDecodeError, SSEDecoder, SSEEvent
from chat.ai.streaming import ToolCallAccumulator, error_from_body, is_retryable

from . import streams


def decode(*chunks: bytes) -> list[SSEEvent]:
    decoder = SSEDecoder()
    events = []
    for chunk in chunks:
        events += decoder.feed(chunk)
    return events + decoder.flush()


def test_dashscope_framing_without_spaces_and_with_a_status_comment():
    (event,) = decode(b'id:7\nevent:error\n:HTTP_STATUS/429\ndata:{"code":"Throttling"}\n\n')
    assert event == SSEEvent(data='{"code":"Throttling"}', event="error", id="7", comments=("HTTP_STATUS/429",))
    assert event.http_status == 429


def test_one_leading_space_is_dropped_from_a_value():
    assert [e.data for e in decode(b"data: one\n\ndata:  two\n\n")] == ["one", " two"]


def test_defaults_multiline_data_and_state_between_events():
    events = decode(b"event:a\nid:1\ndata:x\ndata:y\n\ndata:z\n\n: just a comment\n\n")
    assert events == [
        SSEEvent(data="x\ny", event="a", id="1"),
        # The event type resets, the last id carries over.
        SSEEvent(data="z", event="message", id="1"),
    ]
    assert events[1].http_status is None


@pytest.mark.parametrize("newline", [b"\n", b"\r\n", b"\r"])
def test_every_newline_style(newline):
    raw = b"data:a" + newline + newline + b"data:b" + newline + newline
    assert [e.data for e in decode(raw)] == ["a", "b"]


def test_crlf_split_between_chunks_is_one_line_end():
    assert [e.data for e in decode(b"data:a\r", b"\n\r", b"\ndata:b\r\n\r\n")] == ["a", "b"]


def test_utf8_character_split_between_chunks():
    raw = "data:你好\n\n".encode()
    assert [e.data for e in decode(raw[:6], raw[6:])] == ["你好"]


def test_byte_order_mark_is_ignored():
    assert [e.data for e in decode(b"\xef\xbb\xbfdata:a\n\n")] == ["a"]


def test_last_event_without_its_blank_line_or_final_newline_is_flushed():
    assert [e.data for e in decode(b"data:a\n\ndata:b")] == ["a", "b"]


def test_nothing_but_comments_dispatches_nothing():
    assert decode(b":HTTP_STATUS/200\n\n\n") == []


def test_an_oversized_event_is_refused():
    decoder = SSEDecoder(max_event_chars=100)
    with pytest.raises(SSEDecodeError):
        decoder.feed(b"data:" + b"x" * 200)
    with pytest.raises(SSEDecodeError):
        SSEDecoder(max_event_chars=100).feed(b"data:" + b"x" * 60 + b"\ndata:" + b"y" * 60 + b"\n")


RECORDED = [
    streams.DASHSCOPE_INCREMENTAL,
    streams.DASHSCOPE_TOOL_CALL,
    streams.DASHSCOPE_ERROR_MID_STREAM,
    streams.OPENAI_TOOL_CALL,
]


@settings(max_examples=150, deadline=None)
@given(
    stream=st.sampled_from(RECORDED),
    crlf=st.booleans(),
    cuts=st.lists(st.integers(min_value=0, max_value=5000), max_size=30),
)
def test_any_split_of_a_stream_gives_the_same_events(stream, crlf, cuts):
    raw = (stream.replace("\n", "\r\n") if crlf else stream).encode()
    points = sorted({cut % (len(raw) + 1) for cut in cuts})
    pieces = [raw[start:end] for start, end in zip([0, *points], [*points, len(raw)])]
    assert decode(*pieces) == decode(raw)
    assert len(decode(raw)) == stream.count("\n\n")


@pytest.mark.parametrize(
    ("status", "code", "expected"),
    [
        (429, "Throttling.RateQuota", True),
        (500, "InternalError", True),
        (503, "", True),
        (408, "", True),
        (400, "InvalidParameter", False),
        (401, "InvalidApiKey", False),
        (429, "insufficient_quota", False),
        (None, "Throttling.RateQuota", True),
        (None, "InternalError.Algo", True),
        (None, "DataInspectionFailed", False),
    ],
)
def test_which_errors_are_retried(status, code, expected):
    assert is_retryable(status, code) is expected


def test_error_body_that_is_neither_json_nor_sse():
    error = error_from_body(503, b"upstream connect error or disconnect/reset before headers")
    assert (error.code, error.status, error.retryable) == ("http_503", 503, True)
    assert "upstream connect error" in error.message


def test_error_body_with_an_sse_status_comment_keeps_the_real_status():
    error = error_from_body(400, streams.DASHSCOPE_400_SSE_FRAMED.encode())
    assert (error.code, error.status, error.request_id) == ("InvalidParameter", 400, "5c6d-13")


def test_tool_calls_without_index_or_name_or_with_object_arguments():
    calls = ToolCallAccumulator()
    calls.add([{"function": {"name": "a", "arguments": {"k": 1}}}, {"function": {"arguments": "{}"}}])
    calls.add("not a list")
    assert calls.drain() == [ToolCall("a", {"k": 1})]
    assert calls.drain() == []
