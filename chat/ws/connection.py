"""One socket's sending side and frame parsing: the per-connection send queue drained by one
writer task, replies and errors, and closing. Both phases (auth, session) use it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import WSCloseCode, web

from chat import metrics
from chat.errors import ChatError, Invalid
from chat.settings import Settings

log = logging.getLogger(__name__)

CLOSE_AUTH_FAILED = 4401
CLOSE_AUTH_TIMEOUT = 4408
CLOSE_TOO_MANY_SOCKETS = 4429
CLOSE_SLOW_CLIENT = WSCloseCode.TRY_AGAIN_LATER  # 1013: the client could not keep up


@dataclass(frozen=True, slots=True)
class Incoming:
    """A well-formed frame: its id (if any), its type and the whole object."""

    id: int | None
    type: str
    body: dict[str, Any]


class Connection:
    """An open socket: what is queued for it and how it closes."""

    def __init__(self, ws: web.WebSocketResponse, settings: Settings):
        self.id = uuid.uuid4().hex
        self.ws = ws
        self.user_id: str | None = None  # for log lines, once a session is open
        self._queue: asyncio.Queue[str] = asyncio.Queue(maxsize=settings.ws_send_queue_max)
        self._writer: asyncio.Task[None] | None = None
        self._closer: asyncio.Task[None] | None = None  # kept so the close task is not garbage-collected
        self.closing = False

    # --- sending ---------------------------------------------------------------------------

    def start_writer(self) -> None:
        """Start the one task that writes to the socket."""
        self._writer = asyncio.create_task(self._write_loop(), name=f"ws-writer-{self.id}")

    async def _write_loop(self) -> None:
        try:
            while True:
                text = await self._queue.get()
                await self.ws.send_str(text)
        except (ConnectionError, RuntimeError, asyncio.CancelledError):
            return  # the socket is gone; the read loop cleans up

    def send_text(self, text: str) -> None:
        """Queue a frame; a client too slow to drain its queue is disconnected, never waited for."""
        if self.closing:
            return
        try:
            self._queue.put_nowait(text)
        except asyncio.QueueFull:
            metrics.WS_SLOW_CLIENTS.inc()
            log.info("closing slow websocket client %s (%s)", self.id, self.user_id)
            self.close_soon(CLOSE_SLOW_CLIENT, "send queue full")

    def send(self, frame: dict[str, Any]) -> None:
        """Queue one JSON frame."""
        self.send_text(orjson.dumps(frame).decode())

    def reply(self, frame_id: int | None, data: dict[str, Any]) -> None:
        """The result of a command."""
        frame = {"type": "result", "data": data}
        self.send({"id": frame_id, **frame} if frame_id is not None else frame)

    def reply_error(self, frame_id: int | None, error: ChatError) -> None:
        """An error frame with the protocol code."""
        frame: dict[str, Any] = {"type": "error", "code": error.code, "message": error.message}
        if frame_id is not None:
            frame = {"id": frame_id, **frame}
        if error.details:
            frame["details"] = error.details
        self.send(frame)

    # --- receiving -------------------------------------------------------------------------

    def parse(self, text: str) -> Incoming | None:
        """A frame with a string type and an integer id (if any); otherwise the error is sent and
        None returned. `ping` is answered here, in either phase."""
        try:
            frame = orjson.loads(text)
        except orjson.JSONDecodeError:
            self.reply_error(None, Invalid("frame is not valid JSON"))
            return None
        if not isinstance(frame, dict):
            self.reply_error(None, Invalid("frame must be a JSON object"))
            return None
        raw_id = frame.get("id")
        frame_id = raw_id if isinstance(raw_id, int) and not isinstance(raw_id, bool) else None
        type_ = frame.get("type")
        if not isinstance(type_, str) or not type_:
            self.reply_error(frame_id, Invalid("frame needs a string `type`", {"type": ["Missing or not a string."]}))
            return None
        if raw_id is not None and frame_id is None:
            self.reply_error(None, Invalid("`id` must be an integer", {"id": ["Not a valid integer."]}))
            return None
        if type_ == "ping":
            self.send({"id": frame_id, "type": "pong"} if frame_id is not None else {"type": "pong"})
            return None
        return Incoming(frame_id, type_, frame)

    # --- closing ---------------------------------------------------------------------------

    def close_soon(self, code: int, message: str = "") -> None:
        """Close from synchronous code (without waiting for queued frames)."""
        if not self.closing:
            self.closing = True
            self._closer = asyncio.get_running_loop().create_task(self._close_now(code, message))

    async def _close_now(self, code: int, message: str) -> None:
        if self._writer is not None:
            self._writer.cancel()
        await self.ws.close(code=code, message=message.encode())

    async def close(self, code: int, message: str = "") -> None:
        """Send what is queued, then close with `code`."""
        if self.closing:
            return
        self.closing = True
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._flush(), timeout=2.0)
        await self._close_now(code, message)

    async def _flush(self) -> None:
        while not self._queue.empty() and self._writer is not None and not self._writer.done():
            await asyncio.sleep(0)

    async def stop(self) -> None:
        """After the socket ended: stop the writer."""
        self.closing = True
        if self._writer is not None:
            self._writer.cancel()
            await asyncio.gather(self._writer, return_exceptions=True)
