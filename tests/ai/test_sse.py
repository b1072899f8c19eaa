"""The incremental SSE decoder: any framing, any split of the bytes."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chat.ai.sse import SSEDecodeError, SSEDecoder, SSEEvent

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
    pieces = [raw[start:end] for start, end in zip([0, *points], [*points, len(raw)], strict=True)]
    assert decode(*pieces) == decode(raw)
    assert len(decode(raw)) == stream.count("\n\n")
