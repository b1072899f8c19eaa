"""Provider error bodies and events turned into AIError, and which errors are worth a retry."""

from __future__ import annotations

import json
from typing import Any

from .base import AIError
from .sse import SSEDecodeError, SSEDecoder, SSEEvent

# Codes that mean "try again" when no HTTP status says so, as in an error event
# inside a 200 stream without DashScope's :HTTP_STATUS comment.
_RETRYABLE_PREFIXES = ("Throttling", "InternalError")
_RETRYABLE_CODES = frozenset(
    {
        "SystemError",
        "ServiceUnavailable",
        "ModelServiceFailed",
        "RequestTimeOut",
        "server_error",
        "rate_limit_exceeded",
        "overloaded_error",
    }
)
# A 429 that no retry can fix: the account is out of credit.
_NEVER_RETRY_CODES = frozenset({"insufficient_quota", "Arrearage"})
# Refused keys, which leave the provider degraded until a reply succeeds.
_BAD_KEY_CODES = frozenset({"InvalidApiKey", "invalid_api_key"})


def is_bad_key(error: AIError) -> bool:
    """Whether the provider refused the API key: a 401, or a bad-key code in any status."""
    return error.status == 401 or error.code in _BAD_KEY_CODES


def is_retryable(status: int | None, code: str) -> bool:
    """Whether an error is worth another attempt: 408, 429, 5xx, or a transient code."""
    if code in _NEVER_RETRY_CODES:
        return False
    if status is not None and status >= 400:
        return status in (408, 429) or status >= 500
    return code.startswith(_RETRYABLE_PREFIXES) or code in _RETRYABLE_CODES


def error_from_payload(payload: Any, *, status: int | None) -> AIError:
    """Build an AIError from a DashScope {code, message} or OpenAI {error: {...}} body."""
    code = message = request_id = None
    if isinstance(payload, dict):
        request_id = payload.get("request_id") or payload.get("id")
        error = payload.get("error")
        if isinstance(error, dict):
            code = error.get("code") or error.get("type")
            message = error.get("message")
        elif isinstance(error, str):
            message = error
        else:
            code = payload.get("code")
            message = payload.get("message")
    code = str(code) if code not in (None, "") else (f"http_{status}" if status else "bad_response")
    message = str(message) if message else "the provider returned an error without a message"
    return AIError(
        code,
        message,
        status=status,
        retryable=is_retryable(status, code),
        request_id=str(request_id) if request_id else None,
    )


def error_from_event(event: SSEEvent, *, status: int | None = None) -> AIError:
    """Build an AIError from an SSE error event; its :HTTP_STATUS comment wins over `status`."""
    status = event.http_status or status
    try:
        payload = json.loads(event.data)
    except ValueError:
        payload = {"message": event.data[:500]}
    return error_from_payload(payload, status=status)


def error_from_body(status: int, body: bytes) -> AIError:
    """Build an AIError from a 4xx/5xx body: plain JSON or SSE-framed, whatever its Content-Type."""
    text = body.decode("utf-8", errors="replace").strip()
    if text.startswith("{"):
        try:
            return error_from_payload(json.loads(text), status=status)
        except ValueError:
            pass
    else:
        decoder = SSEDecoder()
        try:
            events = decoder.feed(body) + decoder.flush()
        except SSEDecodeError:
            events = []
        for event in events:
            error = error_from_event(event, status=status)
            # The real HTTP status of the response is the one to act on.
            error.status = status
            error.retryable = is_retryable(status, error.code)
            return error
    snippet = " ".join(text.split())[:200]
    message = f"HTTP {status}" + (f": {snippet}" if snippet else "")
    return AIError(f"http_{status}", message, status=status, retryable=is_retryable(status, ""))


def incomplete_reply() -> AIError:
    """The body ended before the provider said the reply was finished."""
    # Retryable: if nothing was yielded yet, a fresh attempt is safe.
    return AIError("stream_error", "the stream ended before the reply finished", retryable=True)
