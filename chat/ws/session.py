"""An authenticated socket: the hub's peer. Rate limit, dispatch to commands, error mapping."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import dataclass

from aiohttp import WSCloseCode
from marshmallow import ValidationError

from chat import metrics
from chat.auth import Identity
from chat.conversations import Operations
from chat.errors import Forbidden, Invalid, RateLimited, to_chat_error
from chat.events import Events
from chat.hub import Hub
from chat.settings import Settings
from chat.ws.commands import CommandContext
from chat.ws.connection import Connection, Incoming
from chat.ws.registry import Registry

FLOOD_STRIKES = 10  # commands refused as rate_limited in a row before the socket is closed


@dataclass(frozen=True)
class Services:
    """What every socket's phases use, built once by the app."""

    settings: Settings
    ops: Operations
    hub: Hub
    registry: Registry
    events: Events


class Session:
    """A connection with an identity; only sessions join the hub."""

    def __init__(self, conn: Connection, identity: Identity, services: Services):
        self.conn = conn
        self.identity = identity
        self.settings = services.settings
        self.ops = services.ops
        self.hub = services.hub
        self.registry = services.registry
        self._recent: deque[float] = deque()
        self._strikes = 0
        conn.user_id = identity.user_id

    @property
    def id(self) -> str:
        """The socket's id."""
        return self.conn.id

    def send_text(self, text: str) -> None:
        """Queue a frame (the hub's delivery)."""
        self.conn.send_text(text)

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
        """One text frame: parse, rate limit, dispatch, reply."""
        frame = self.conn.parse(text)
        if frame is None:
            return
        if frame.type == "auth":
            self.conn.reply_error(frame.id, Invalid("already authenticated"))
            return
        if self._rate_limited():
            self._strikes += 1
            if self._strikes > FLOOD_STRIKES:
                await self.conn.close(WSCloseCode.POLICY_VIOLATION, "rate limit exceeded")
                return
            self.conn.reply_error(frame.id, RateLimited("too many commands, slow down"))
            return
        self._strikes = 0
        await self._dispatch(frame)

    async def _dispatch(self, frame: Incoming) -> None:
        cmd = self.registry.commands.get(frame.type)
        if cmd is None:
            self.conn.reply_error(frame.id, Invalid(f"unknown type {frame.type!r}", {"type": ["Unknown command."]}))
            metrics.WS_COMMANDS.labels("unknown", "invalid").inc()
            return
        try:
            if self.identity.role not in cmd.roles:
                raise Forbidden(f"{frame.type} is not allowed for role {self.identity.role}")
            payload = {k: v for k, v in frame.body.items() if k not in ("type", "id")}
            try:
                data = cmd.schema.load(payload)
            except ValidationError as exc:
                raise Invalid("invalid fields", exc.messages_dict) from None
            result = await cmd.handler(CommandContext(self.ops, self.identity, self.id, self.hub), data)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # every failure becomes an error frame; the socket stays open
            error = to_chat_error(exc)
            metrics.WS_COMMANDS.labels(frame.type, error.code).inc()
            self.conn.reply_error(frame.id, error)
            return
        metrics.WS_COMMANDS.labels(frame.type, "ok").inc()
        if result is not None:
            self.conn.reply(frame.id, result)
        elif frame.id is not None:
            self.conn.reply(frame.id, {})
