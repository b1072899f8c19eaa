"""One socket's session: auth phase, rate limit, dispatch to commands, error mapping, and
the per-connection send queue drained by one writer task."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import deque

import orjson
from aiohttp import WSCloseCode, web
from marshmallow import ValidationError

from chat import metrics
from chat.auth import AuthError, Identity, verify_token
from chat.errors import ChatError, Forbidden, Invalid, RateLimited, Unauthenticated, to_chat_error
from chat.hub import Hub
from chat.service import ChatService
from chat.settings import Settings
from chat.ws.commands import CommandContext
from chat.ws.registry import Registry

log = logging.getLogger(__name__)

CLOSE_AUTH_FAILED = 4401
CLOSE_AUTH_TIMEOUT = 4408
CLOSE_SLOW_CLIENT = WSCloseCode.TRY_AGAIN_LATER  # 1013: the client could not keep up
FLOOD_STRIKES = 10  # commands refused as rate_limited in a row before the socket is closed


class Connection:
    """An open socket and what it has said; the hub's Peer."""

    def __init__(self, ws: web.WebSocketResponse, settings: Settings, service: ChatService, hub: Hub,
                 registry: Registry):
        self.id = uuid.uuid4().hex
        self.ws = ws
        self.settings = settings
        self.service = service
        self.hub = hub
        self.registry = registry
        self.identity: Identity | None = None
        self._queue: asyncio.Queue[str] = asyncio.Queue(maxsize=settings.ws_send_queue_max)
        self._writer: asyncio.Task | None = None
        self._closer: asyncio.Task | None = None  # kept so the close task is not garbage-collected
        self._recent: deque[float] = deque()
        self._strikes = 0
        self.closing = False
        self.on_authenticated = None  # async callback(connection), set by the transport

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
            log.info("closing slow websocket client %s (%s)", self.id, self.identity and self.identity.user_id)
            self.close_soon(CLOSE_SLOW_CLIENT, "send queue full")

    def send(self, frame: dict) -> None:
        """Queue one JSON frame."""
        self.send_text(orjson.dumps(frame).decode())

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
        try:
            await asyncio.wait_for(self._flush(), timeout=2.0)
        except asyncio.TimeoutError:
            pass
        await self._close_now(code, message)

    async def _flush(self) -> None:
        while not self._queue.empty() and self._writer is not None and not self._writer.done():
            await asyncio.sleep(0)

    async def stop(self) -> None:
        """After the socket ended: stop the writer and leave the hub."""
        self.closing = True
        if self._writer is not None:
            self._writer.cancel()
            await asyncio.gather(self._writer, return_exceptions=True)
        if self.identity is not None:
            self.hub.remove(self)

    # --- receiving -------------------------------------------------------------------------

    async def authenticate(self, identity: Identity, frame_id=None) -> bool:
        """Leave the auth phase: the socket gets its session. When the session cannot be set
        up (Redis or the database down) the client gets the error and the socket is closed."""
        self.identity = identity
        self.hub.add(self)
        if self.on_authenticated is None:
            return True
        try:
            await self.on_authenticated(self)
        except Exception as exc:
            self.hub.remove(self)
            self.identity = None
            self._reply_error(frame_id, to_chat_error(exc))
            await self.close(WSCloseCode.INTERNAL_ERROR, "session setup failed")
            return False
        return True

    def _reply_error(self, frame_id, error: ChatError) -> None:
        frame = {"type": "error", "code": error.code, "message": error.message}
        if frame_id is not None:
            frame = {"id": frame_id, **frame}
        if error.details:
            frame["details"] = error.details
        self.send(frame)

    def _reply(self, frame_id, data: dict) -> None:
        frame = {"type": "result", "data": data}
        self.send({"id": frame_id, **frame} if frame_id is not None else frame)

    def _rate_limited(self) -> bool:
        now = time.monotonic()
        window = self.settings.ws_rate_limit_window_s
        while self._recent and now - self._recent[0] >= window:
            self._recent.popleft()
        if len(self._recent) >= self.settings.ws_rate_limit_count:
            return True
        self._recent.append(now)
        return False

    async def handle_text(self, text: str) -> None:
        """One text frame: parse, check the phase, rate limit, dispatch, reply."""
        try:
            frame = orjson.loads(text)
        except orjson.JSONDecodeError:
            self._reply_error(None, Invalid("frame is not valid JSON"))
            return
        if not isinstance(frame, dict):
            self._reply_error(None, Invalid("frame must be a JSON object"))
            return
        raw_id = frame.get("id")
        frame_id = raw_id if isinstance(raw_id, int) and not isinstance(raw_id, bool) else None
        type_ = frame.get("type")
        if not isinstance(type_, str) or not type_:
            self._reply_error(frame_id, Invalid("frame needs a string `type`", {"type": ["Missing or not a string."]}))
            return
        if raw_id is not None and frame_id is None:
            self._reply_error(None, Invalid("`id` must be an integer", {"id": ["Not a valid integer."]}))
            return
        if type_ == "ping":
            self.send({"id": frame_id, "type": "pong"} if frame_id is not None else {"type": "pong"})
            return
        if self.identity is None:
            await self._auth_phase(frame_id, type_, frame)
            return
        if type_ == "auth":
            self._reply_error(frame_id, Invalid("already authenticated"))
            return
        if self._rate_limited():
            self._strikes += 1
            if self._strikes > FLOOD_STRIKES:
                await self.close(WSCloseCode.POLICY_VIOLATION, "rate limit exceeded")
                return
            self._reply_error(frame_id, RateLimited("too many commands, slow down"))
            return
        self._strikes = 0
        await self._dispatch(frame_id, type_, frame)

    async def _auth_phase(self, frame_id, type_: str, frame: dict) -> None:
        if type_ != "auth":
            self._reply_error(frame_id, Unauthenticated("authenticate first: send {\"type\": \"auth\", \"token\": ...}"))
            return
        try:
            identity = verify_token(self.settings.jwt_secret_key, frame.get("token"))
        except AuthError as exc:
            self._reply_error(frame_id, Unauthenticated(str(exc)))
            await self.close(CLOSE_AUTH_FAILED, "authentication failed")
            return
        if await self.authenticate(identity, frame_id):
            self._reply(frame_id, {"user_id": identity.user_id, "role": identity.role})

    async def _dispatch(self, frame_id, type_: str, frame: dict) -> None:
        cmd = self.registry.commands.get(type_)
        if cmd is None:
            self._reply_error(frame_id, Invalid(f"unknown type {type_!r}", {"type": ["Unknown command."]}))
            metrics.WS_COMMANDS.labels("unknown", "invalid").inc()
            return
        try:
            if self.identity.role not in cmd.roles:
                raise Forbidden(f"{type_} is not allowed for role {self.identity.role}")
            payload = {k: v for k, v in frame.items() if k not in ("type", "id")}
            try:
                data = cmd.schema.load(payload)
            except ValidationError as exc:
                raise Invalid("invalid fields", exc.messages) from None
            ctx = CommandContext(self.service, self.identity, self.id, self.hub)
            result = await cmd.handler(ctx, data)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # every failure becomes an error frame; the socket stays open
            error = to_chat_error(exc)
            metrics.WS_COMMANDS.labels(type_, error.code).inc()
            self._reply_error(frame_id, error)
            return
        metrics.WS_COMMANDS.labels(type_, "ok").inc()
        if result is None:
            if frame_id is not None:
                self._reply(frame_id, {})
            return
        self._reply(frame_id, result)
