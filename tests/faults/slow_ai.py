"""A slow OpenAI-compatible provider served by the test, so a fault can land mid AI stream."""

from __future__ import annotations

import asyncio
import json

from aiohttp import web

CHUNKS = ("A slow ", "scripted ", "reply ", "in five ", "chunks.")


class SlowAI:
    """POST /chat/completions streams CHUNKS with `pause_s` between them; `streaming` is set while one runs."""

    def __init__(self, pause_s: float = 0.3):
        self.pause_s = pause_s
        self.streaming = asyncio.Event()
        self.started = 0
        self.finished = 0
        self._runner: web.AppRunner | None = None
        self.port = 0

    async def start(self) -> None:
        """Serve on a free port."""
        app = web.Application()
        app.router.add_post("/chat/completions", self._complete)
        self._runner = web.AppRunner(app, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]

    @property
    def base_url(self) -> str:
        """The AI_BASE_URL of the service."""
        return f"http://127.0.0.1:{self.port}"

    async def close(self) -> None:
        """Stop serving."""
        if self._runner is not None:
            await self._runner.cleanup()

    async def _complete(self, request: web.Request) -> web.StreamResponse:
        await request.read()
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        self.started += 1
        try:
            for chunk in CHUNKS:
                payload = {"choices": [{"index": 0, "delta": {"content": chunk}}]}
                await response.write(f"data: {json.dumps(payload)}\n\n".encode())
                self.streaming.set()
                await asyncio.sleep(self.pause_s)  # the provider's own slowness, what the case breaks into
            await response.write(b"data: [DONE]\n\n")
            self.finished += 1
        finally:
            self.streaming.clear()
        return response
