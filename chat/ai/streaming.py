"""What the HTTP providers share: the call with its retries and timeouts, error bodies, tool calls."""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import aiohttp

from .base import AIError, StreamItem, ToolCall
from .sse import SSEDecodeError, SSEDecoder, SSEEvent

log = logging.getLogger("chat.ai")

# Error bodies are read only to find a code and a message; a proxy's HTML page
# or a runaway body must not fill memory.
ERROR_BODY_MAX_BYTES = 64 * 1024
# A non-streamed JSON reply (a server that ignored the streaming request).
JSON_REPLY_MAX_BYTES = 4 * 1024 * 1024

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
_BAD_KEY_CODES = frozenset({"InvalidApiKey", "invalid_api_key"})

# aiohttp >= 3.10 tells a connect timeout from a read timeout by class.
_CONNECT_TIMEOUT = getattr(aiohttp, "ConnectionTimeoutError", ())


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


def text_of(content: Any) -> str:
    """Text of a message content: a string, or a list of {"text": ...} parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            part["text"] for part in content if isinstance(part, dict) and isinstance(part.get("text"), str)
        )
    return ""


def load_json_object(data: str, provider: str) -> dict[str, Any]:
    """Parse one chunk's JSON; anything but an object is a bad response."""
    try:
        payload = json.loads(data)
    except ValueError:
        raise AIError("bad_response", f"{provider} sent a chunk that is not JSON") from None
    if not isinstance(payload, dict):
        raise AIError("bad_response", f"{provider} sent a chunk that is not a JSON object")
    return payload


@dataclass
class _PartialCall:
    name: str = ""
    pieces: list[str] = field(default_factory=list)
    latest: str = ""
    parsed: dict[str, Any] | None = None

    def arguments(self) -> dict[str, Any]:
        if self.parsed is not None:
            return self.parsed
        # Incremental streams send argument pieces to concatenate; cumulative ones
        # resend the whole string each time. Try the first reading, then the second.
        for candidate in ("".join(self.pieces), self.latest):
            try:
                value = json.loads(candidate)
            except ValueError:
                continue
            if isinstance(value, dict):
                return value
        return {}


class ToolCallAccumulator:
    """Collect tool-call pieces by index until the model finishes the call."""

    def __init__(self) -> None:
        self._calls: dict[int, _PartialCall] = {}

    def add(self, deltas: Any) -> None:
        """Add one chunk's `tool_calls` list."""
        if not isinstance(deltas, list):
            return
        for position, delta in enumerate(deltas):
            if not isinstance(delta, dict):
                continue
            index = delta.get("index", position)
            if not isinstance(index, int):
                index = position
            call = self._calls.setdefault(index, _PartialCall())
            function = delta.get("function") or {}
            if not isinstance(function, dict):
                continue
            name = function.get("name")
            if isinstance(name, str) and name:
                call.name = name
            arguments = function.get("arguments")
            if isinstance(arguments, str) and arguments:
                call.pieces.append(arguments)
                call.latest = arguments
            elif isinstance(arguments, dict):
                call.parsed = arguments

    def drain(self) -> list[ToolCall]:
        """Return the complete calls in index order and forget them."""
        calls = [
            ToolCall(call.name, call.arguments())
            for _, call in sorted(self._calls.items())
            if call.name
        ]
        self._calls.clear()
        return calls


class ReplyParser(Protocol):
    """Turns one attempt's events into stream items."""

    def feed(self, event: SSEEvent) -> list[StreamItem]:
        """Items from one event; raise AIError for an error event."""
        ...

    def finish(self) -> list[StreamItem]:
        """Items left at the end of the body; raise AIError if the reply was cut short."""
        ...


class HTTPStreamProvider:
    """One streamed POST per reply, retried only while nothing has been yielded."""

    name = "http"

    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        url: str,
        connect_timeout_s: float,
        chunk_timeout_s: float,
        max_retries: int,
        retry_base_s: float,
    ) -> None:
        if connect_timeout_s <= 0 or chunk_timeout_s <= 0:
            raise ValueError("timeouts must be positive")
        if max_retries < 0 or retry_base_s < 0:
            raise ValueError("max_retries and retry_base_s must not be negative")
        self._session = session
        self._url = url
        self._connect_timeout_s = connect_timeout_s
        self._chunk_timeout_s = chunk_timeout_s
        self._max_retries = max_retries
        self._retry_base_s = retry_base_s
        self.health: dict[str, Any] = {"status": "ok"}

    def _headers(self) -> dict[str, str]:
        raise NotImplementedError

    def _body(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None) -> dict[str, Any]:
        raise NotImplementedError

    def _reply_parser(self) -> ReplyParser:
        raise NotImplementedError

    def _backoff_s(self, attempt: int) -> float:
        # Full jitter: many replies throttled at once must not retry in lockstep.
        return random.uniform(0.0, self._retry_base_s * 2**attempt)

    async def stream(
        self, messages: list[dict[str, Any]], *, tools: list[dict[str, Any]] | None = None
    ) -> AsyncIterator[StreamItem]:
        """Yield text deltas and complete ToolCalls; raise AIError after retries or mid-stream."""
        body = self._body(messages, tools)
        attempt = 0
        while True:
            yielded = False
            try:
                async for item in self._attempt(body):
                    yielded = True
                    yield item
            except AIError as exc:
                self._note_failure(exc)
                if yielded:
                    # Part of the reply is already with the caller: a retry would
                    # repeat or contradict it.
                    raise self._mid_stream(exc) from exc
                if not exc.retryable or attempt >= self._max_retries:
                    log.warning("%s call failed: %s (attempt %d)", self.name, exc, attempt + 1)
                    raise
                delay_s = self._backoff_s(attempt)
                attempt += 1
                log.warning(
                    "%s call failed: %s; retry %d/%d in %.2fs",
                    self.name, exc, attempt, self._max_retries, delay_s,
                )
                await asyncio.sleep(delay_s)
                continue
            self.health = {"status": "ok"}
            return

    def _note_failure(self, exc: AIError) -> None:
        if exc.status == 401 or exc.code in _BAD_KEY_CODES:
            self.health = {"status": "degraded", "code": exc.code}

    def _mid_stream(self, exc: AIError) -> AIError:
        if exc.code in ("timeout", "stream_error"):
            code, message = exc.code, exc.message
        else:
            code, message = "stream_error", f"{exc.code}: {exc.message}"
        return AIError(code, message, status=exc.status, retryable=False, request_id=exc.request_id)

    async def _attempt(self, body: dict[str, Any]) -> AsyncIterator[StreamItem]:
        # sock_read bounds both the wait for the headers and the silence between
        # two reads of the body; total=None lets a long reply stream as long as it flows.
        timeout = aiohttp.ClientTimeout(
            total=None, connect=self._connect_timeout_s, sock_read=self._chunk_timeout_s
        )
        try:
            async with self._session.post(
                self._url, json=body, headers=self._headers(), timeout=timeout
            ) as response:
                if response.status >= 400:
                    raise error_from_body(
                        response.status, await _read_capped(response, ERROR_BODY_MAX_BYTES)
                    )
                async for item in self._read_reply(response):
                    yield item
        except SSEDecodeError as exc:
            raise AIError("bad_response", str(exc)) from None
        except TimeoutError as exc:  # aiohttp's ServerTimeoutError is a TimeoutError too
            if isinstance(exc, _CONNECT_TIMEOUT):
                raise AIError(
                    "timeout", f"no connection within {self._connect_timeout_s}s", retryable=True
                ) from None
            # Not retried: the caller has already waited chunk_timeout_s.
            raise AIError("timeout", f"no data for {self._chunk_timeout_s}s") from None
        except aiohttp.ClientError as exc:
            raise AIError("connection", f"{type(exc).__name__}: {exc}", retryable=True) from None

    async def _read_reply(self, response: aiohttp.ClientResponse) -> AsyncIterator[StreamItem]:
        parser = self._reply_parser()
        decoder = SSEDecoder()
        # Decided by the first byte, not the Content-Type: a JSON object means the
        # server ignored the streaming request and sent the whole reply at once.
        whole_json: bytearray | None = None
        sniffed = False
        async for chunk in response.content.iter_any():
            if not sniffed and chunk.strip():
                sniffed = True
                if chunk.lstrip().startswith(b"{"):
                    whole_json = bytearray()
            if whole_json is not None:
                whole_json += chunk
                if len(whole_json) > JSON_REPLY_MAX_BYTES:
                    raise AIError("bad_response", "the JSON reply is too large")
                continue
            for event in decoder.feed(chunk):
                for item in parser.feed(event):
                    yield item
        if whole_json is not None:
            events = [SSEEvent(data=whole_json.decode("utf-8", errors="replace"))]
        else:
            events = decoder.flush()
        for event in events:
            for item in parser.feed(event):
                yield item
        for item in parser.finish():
            yield item


async def _read_capped(response: aiohttp.ClientResponse, limit_bytes: int) -> bytes:
    body = bytearray()
    async for chunk in response.content.iter_any():
        body += chunk
        if len(body) >= limit_bytes:
            break
    return bytes(body[:limit_bytes])
