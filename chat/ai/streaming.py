"""The HTTP call the providers share: one streamed POST per reply, its retries and timeouts."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import AsyncIterator
from typing import Any, ClassVar, TypedDict

import aiohttp

from .base import AIError, StreamItem
from .chunks import ReplyParser
from .errors import error_from_body, is_bad_key
from .sse import SSEDecodeError, SSEDecoder, SSEEvent

log = logging.getLogger("chat.ai")

# Error bodies are read only to find a code and a message; a proxy's HTML page
# or a runaway body must not fill memory.
ERROR_BODY_MAX_BYTES = 64 * 1024
# A non-streamed JSON reply (a server that ignored the streaming request).
JSON_REPLY_MAX_BYTES = 4 * 1024 * 1024
# After a reply said it is complete: how long the rest of its body ([DONE], a usage chunk) may take to end.
END_DRAIN_S = 1.0

# aiohttp >= 3.10 tells a connect timeout from a read timeout by class.
_CONNECT_TIMEOUT = getattr(aiohttp, "ConnectionTimeoutError", ())


class CallLimits(TypedDict, total=False):
    """The timeouts and retries a provider constructor takes by keyword (the AI_* settings)."""

    connect_timeout_s: float
    chunk_timeout_s: float
    max_retries: int
    retry_base_s: float


class HTTPStreamProvider:
    """One streamed POST per reply, retried only while nothing has been yielded."""

    name = "http"
    # Where replies are POSTed, below base_url.
    endpoint_path: ClassVar[str] = ""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        api_key: str,
        model: str,
        base_url: str,
        extra: dict[str, Any] | None = None,
        connect_timeout_s: float = 5.0,
        chunk_timeout_s: float = 30.0,
        max_retries: int = 3,
        retry_base_s: float = 0.5,
    ) -> None:
        if connect_timeout_s <= 0 or chunk_timeout_s <= 0:
            raise ValueError("timeouts must be positive")
        if max_retries < 0 or retry_base_s < 0:
            raise ValueError("max_retries and retry_base_s must not be negative")
        self._session = session
        self._api_key = api_key
        self.model = model
        self.base_url = base_url
        self._url = base_url.rstrip("/") + self.endpoint_path
        # Sampling settings and the like (temperature, top_p, max_tokens, seed), merged into each request.
        self._extra = dict(extra or {})
        self._connect_timeout_s = connect_timeout_s
        self._chunk_timeout_s = chunk_timeout_s
        self._max_retries = max_retries
        self._retry_base_s = retry_base_s
        self.health: dict[str, Any] = {"status": "ok"}

    def __repr__(self) -> str:
        # Never the key.
        return f"{type(self).__name__}(model={self.model!r}, base_url={self.base_url!r})"

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
        if is_bad_key(exc):
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
        chunks = response.content.iter_any()
        last: list[SSEEvent] | None = None  # the events left at the end (None: what the decoder holds)
        sniffed = False
        loop = asyncio.get_running_loop()
        heard = loop.time()  # the last event: SSE comments (a gateway's keep-alives) are no reply
        async for chunk in chunks:
            # decided by the first byte, not the Content-Type
            if not sniffed and chunk.strip():
                sniffed = True
                if chunk.lstrip().startswith(b"{"):  # a JSON body: the server ignored the streaming request
                    last = await _whole_json(chunk, chunks)
                    break
            events = decoder.feed(chunk)
            if events:
                heard = loop.time()
            elif loop.time() - heard > self._chunk_timeout_s:  # bytes, but none of the reply: a stuck upstream
                raise AIError("timeout", f"no reply event for {self._chunk_timeout_s}s (only keep-alives)")
            items, error = _items_of(parser, events)
            for item in items:
                yield item
            if error is not None:
                raise error
            if parser.ended:  # complete: what follows ([DONE], usage, a tail cut short) is no part of it
                last = []
                await _drain(chunks)
                break
        items, error = _items_of(parser, last if last is not None else decoder.flush())
        for item in items:
            yield item
        if error is not None:
            raise error
        for item in parser.finish():
            yield item


async def _drain(rest: AsyncIterator[bytes]) -> None:
    """Read what follows the end of a reply to the end of the body, so that the connection goes back to the
    pool; one that a server or proxy holds open is left after END_DRAIN_S (and closed), never timing the
    complete reply out."""
    with contextlib.suppress(TimeoutError, aiohttp.ClientError):
        async with asyncio.timeout(END_DRAIN_S):
            async for _chunk in rest:
                pass


async def _whole_json(first: bytes, rest: AsyncIterator[bytes]) -> list[SSEEvent]:
    """A non-streamed JSON reply, read to its end (at most JSON_REPLY_MAX_BYTES), as one event."""
    body = bytearray(first)
    async for chunk in rest:
        body += chunk
        if len(body) > JSON_REPLY_MAX_BYTES:
            raise AIError("bad_response", "the JSON reply is too large")
    return [SSEEvent(data=body.decode("utf-8", errors="replace"))]


def _items_of(parser: ReplyParser, events: list[SSEEvent]) -> tuple[list[StreamItem], AIError | None]:
    """The items of the events one read brought, adjacent text pieces joined in order: what
    arrived together goes out as one delta (one event, one bus message, one frame), what
    arrives apart still streams piece by piece. An error event comes back beside the items
    before it, which the caller yields first, as it would have yielded them one by one."""
    items: list[StreamItem] = []
    try:
        for event in events:
            for item in parser.feed(event):
                if isinstance(item, str) and items and isinstance(items[-1], str):
                    items[-1] += item
                else:
                    items.append(item)
    except AIError as exc:
        return items, exc
    return items, None


async def _read_capped(response: aiohttp.ClientResponse, limit_bytes: int) -> bytes:
    body = bytearray()
    async for chunk in response.content.iter_any():
        body += chunk
        if len(body) >= limit_bytes:
            break
    return bytes(body[:limit_bytes])
