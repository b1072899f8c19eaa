"""Provider errors: which are retried, how error bodies and events become AIError."""

from __future__ import annotations

import pytest

from chat.ai import AIError
from chat.ai.errors import error_from_body, error_from_event, incomplete_reply, is_bad_key, is_retryable
from chat.ai.sse import SSEEvent

from . import streams


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


@pytest.mark.parametrize(
    ("status", "code", "expected"),
    [(401, "anything", True), (400, "InvalidApiKey", True), (None, "invalid_api_key", True), (403, "Forbidden", False)],
)
def test_which_errors_mean_a_refused_key(status, code, expected):
    assert is_bad_key(AIError(code, "x", status=status)) is expected


def test_error_event_status_comment_wins_and_a_non_json_body_is_the_message():
    event = SSEEvent(data="not json", event="error", comments=("HTTP_STATUS/503",))
    error = error_from_event(event, status=200)
    assert (error.code, error.status, error.retryable, error.message) == ("http_503", 503, True, "not json")


def test_openai_error_object_and_plain_string_error():
    error = error_from_body(429, streams.OPENAI_429.encode())
    assert (error.code, error.retryable) == ("rate_limit_exceeded", True)
    assert error_from_body(400, b'{"error": "bad thing"}').message == "bad thing"


def test_incomplete_reply_is_a_retryable_stream_error():
    error = incomplete_reply()
    assert (error.code, error.retryable) == ("stream_error", True)
