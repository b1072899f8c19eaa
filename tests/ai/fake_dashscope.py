"""A local stand-in for DashScope's generation endpoint that streams real SSE over HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

GENERATION_PATH = "/api/v1/services/aigc/text-generation/generation"


def sse_event(event_id: int, payload: dict[str, Any], *, event: str = "result", status: int = 200) -> bytes:
    """One event framed as DashScope frames it: no space after the colons, a status comment."""
    data = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
    return f"id:{event_id}\nevent:{event}\n:HTTP_STATUS/{status}\ndata:{data}\n\n".encode()


def message_chunk(text: str, finish_reason: str = "null") -> dict[str, Any]:
    """A result_format=message chunk."""
    return {
        "output": {"choices": [{"message": {"content": text, "role": "assistant"}, "finish_reason": finish_reason}]},
        "usage": {"input_tokens": 11, "output_tokens": 1, "total_tokens": 12},
        "request_id": "fake-request",
    }


@dataclass
class FakeDashScope:
    """Answers like DashScope; a test scripts the reply and can hold each chunk back."""

    api_key: str = "sk-fake"
    chunks: list[str] = field(default_factory=lambda: ["你好", "！我是", "通义千问。"])
    # (status, code) answered, one per request, before any streaming reply.
    failures: list[tuple[int, str]] = field(default_factory=list)
    # When set, chunk i (i >= 1, and the final one) is sent only after a token is put.
    gate: asyncio.Queue | None = None
    # Stop after this many chunks and keep the connection open, or drop it.
    stall_after: int | None = None
    # While stalled, an SSE comment (`: keep-alive`) this often, as gateways send for a stuck upstream.
    keepalive_s: float | None = None
    drop_after: int | None = None
    # Send every event of the reply in one write (as a busy network delivers them together).
    together: bool = False
    # Keep the connection open after the final chunk (a proxy that does not pass the end on).
    hold_open: bool = False
    # When set, the body ends (after the final chunk) only once it is set.
    eof_gate: asyncio.Event | None = None
    requests: list[dict[str, Any]] = field(default_factory=list)
    log: list[str] = field(default_factory=list)
    _released: asyncio.Event = field(default_factory=asyncio.Event)

    def app(self) -> web.Application:
        """The aiohttp application to serve."""
        app = web.Application()
        app.router.add_post(GENERATION_PATH, self.generation)
        return app

    def release(self) -> None:
        """Let stalled handlers finish (at teardown)."""
        self._released.set()

    async def generation(self, request: web.Request) -> web.StreamResponse:
        """POST /services/aigc/text-generation/generation."""
        if request.headers.get("Authorization") != f"Bearer {self.api_key}":
            return self._error(401, "InvalidApiKey", "Invalid API-key provided.")
        body = await request.json()
        peer = request.transport.get_extra_info("peername") if request.transport is not None else None
        self.requests.append({"headers": dict(request.headers), "json": body, "peer": peer})
        if not (body.get("model") and body.get("input", {}).get("messages")):
            return self._error(400, "InvalidParameter", "Required parameter missing")
        if self.failures:
            status, code = self.failures.pop(0)
            return self._error(status, code, "scripted failure")
        if request.headers.get("X-DashScope-SSE") != "enable":
            return web.json_response(message_chunk("".join(self.chunks), "stop"))
        return await self._stream(request)

    async def _stream(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream;charset=UTF-8"})
        await response.prepare(request)
        events = [message_chunk(text) for text in self.chunks] + [message_chunk("", "stop")]
        if self.together:
            await response.write(b"".join(sse_event(index + 1, payload) for index, payload in enumerate(events)))
            await response.write_eof()
            return response
        for index, payload in enumerate(events):
            if index == self.stall_after:
                while self.keepalive_s is not None and not self._released.is_set():
                    await response.write(b": keep-alive\n\n")
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._released.wait(), self.keepalive_s)
                await self._released.wait()
                return response
            if index == self.drop_after:
                assert request.transport is not None
                request.transport.close()
                return response
            if self.gate is not None and index > 0:
                await self.gate.get()
            await response.write(sse_event(index + 1, payload))
            self.log.append(f"sent {index}")
        if self.hold_open:
            await self._released.wait()
        if self.eof_gate is not None:
            await self.eof_gate.wait()
        await response.write_eof()
        return response

    def _error(self, status: int, code: str, message: str) -> web.Response:
        body = {"code": code, "message": message, "request_id": "fake-request"}
        return web.json_response(body, status=status)
