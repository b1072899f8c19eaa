"""An authenticated socket: the hub's peer. Rate limit, dispatch to commands, error mapping, and the
token's lifetime (PROTOCOL 2.3: closed with 4401 at `exp` unless an `auth` frame refreshed it)."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import WSCloseCode
from marshmallow import ValidationError
from prometheus_client import Counter

from chat import logs, metrics
from chat.ai_stream import AIStreams
from chat.auth import AuthError, Identity, verify_token
from chat.conversations import Operations
from chat.errors import ChatError, Forbidden, Invalid, RateLimited, Unauthenticated, to_chat_error
from chat.events import Events
from chat.hub import Hub
from chat.revocation import AccountGuard
from chat.settings import Settings
from chat.ws.commands import CommandContext
from chat.ws.connection import CLOSE_AUTH_FAILED, Connection, Incoming
from chat.ws.registry import Registry

log = logging.getLogger(__name__)

FLOOD_STRIKES = 10  # commands refused as rate_limited in a row before the socket is closed
MAX_LOGGED_ID_CHARS = 64  # a conversation id is a UUID; anything longer is not put in log lines


@dataclass(frozen=True)
class Services:
    """What every socket's phases use, built once by the app."""

    settings: Settings
    ops: Operations
    hub: Hub
    registry: Registry
    events: Events
    accounts: AccountGuard
    streams: AIStreams
    clock: Callable[[], float] = time.time  # wall-clock seconds, compared with the tokens' `exp`


def auth_result(identity: Identity) -> dict[str, Any]:
    """The `data` of a successful `auth` (PROTOCOL 3.2)."""
    return {"user_id": identity.user_id, "role": identity.role, "exp": identity.exp}


@functools.cache
def _commands_counter(label: str, outcome: str) -> Counter:
    """The labelled counter of a command type and outcome (both few), looked up once."""
    return metrics.WS_COMMANDS.labels(label, outcome)


def _conversation_of(frame: Incoming) -> str | None:
    """The frame's conversation id for log lines, when it looks like one."""
    value = frame.body.get("conversation_id")
    if isinstance(value, str) and 0 < len(value) <= MAX_LOGGED_ID_CHARS and value.isprintable():
        return value
    return None


class Session:
    """A connection with an identity; only sessions join the hub."""

    __slots__ = ("_expires_at", "_expiry", "_recent", "_strikes", "conn", "identity", "services")

    def __init__(self, conn: Connection, identity: Identity, services: Services):
        self.conn = conn
        self.identity = identity
        self.services = services
        self._recent: deque[float] | None = None  # times of the recent commands, from the first command on
        self._strikes = 0
        self._expiry: asyncio.TimerHandle | None = None  # armed once the expiry is near
        self._expires_at: float | None = None
        conn.user_id = identity.user_id
        conn.session = self
        self._set_expiry()

    @property
    def id(self) -> str:
        """The socket's id."""
        return self.conn.id

    def send_text(self, text: str) -> None:
        """Queue a frame (the hub's delivery)."""
        self.conn.send_text(text)

    def close_soon(self, code: int, reason: str) -> None:
        """Close the socket (the hub's revocation)."""
        self.conn.close_soon(code, reason)

    # --- the token's lifetime -----------------------------------------------------------------

    @property
    def expires_at(self) -> float | None:
        """The event-loop time at which the socket closes for its token's `exp` (None: never)."""
        return self._expires_at

    def arm_expiry(self, *, before: float) -> None:
        """Arm the close at the token's `exp` if it comes before `before` (event-loop time). Called now
        and by the keepalive's rounds: an idle socket holds no timer until its expiry is near."""
        when = self._expires_at
        if when is None or self._expiry is not None or when >= before:
            return
        self._expiry = asyncio.get_running_loop().call_at(when, self._expired)

    def _set_expiry(self) -> None:
        self.stop()
        loop = asyncio.get_running_loop()
        exp = self.identity.exp
        self._expires_at = None if exp is None else loop.time() + (exp - self.services.clock())
        self.arm_expiry(before=loop.time() + self.services.settings.ws_heartbeat_s)

    def _expired(self) -> None:
        log.info("token of %s expired: closing socket %s", self.identity.user_id, self.id)
        self.conn.close_soon(CLOSE_AUTH_FAILED, "token expired")

    async def _refresh(self, frame: Incoming) -> dict[str, Any]:
        """`auth` on an open socket: a token for the same user and role, one its account admits, takes the
        old one's place (its expiry, and its `iat` for the account's look)."""
        try:
            fresh = verify_token(self.services.settings.jwt_verification_keys, frame.body.get("token"))
        except AuthError as exc:
            raise Unauthenticated(str(exc)) from None
        if (fresh.user_id, fresh.role) != (self.identity.user_id, self.identity.role):
            raise Invalid("the token must name the socket's user and role", {"token": ["Another user or role."]})
        if (refusal := await self.services.accounts.refusal(fresh)) is not None:  # the socket keeps its token
            raise Unauthenticated(refusal.message)
        self.identity = dataclasses.replace(self.identity, exp=fresh.exp, iat=fresh.iat)
        self._set_expiry()
        return auth_result(self.identity)

    def stop(self) -> None:
        """The socket is gone: no expiry to watch any more."""
        self._expires_at = None
        if self._expiry is not None:
            self._expiry.cancel()
            self._expiry = None

    # --- commands -----------------------------------------------------------------------------

    def _rate_limited(self) -> bool:
        now = time.monotonic()
        settings, recent = self.services.settings, self._recent
        if recent is None:
            recent = self._recent = deque()
        while recent and now - recent[0] >= settings.ws_rate_limit_window_s:
            recent.popleft()
        if len(recent) >= settings.ws_rate_limit_count:
            return True
        recent.append(now)
        return False

    async def handle_text(self, text: str) -> None:
        """One text frame: parse, rate limit, dispatch, reply."""
        frame = self.conn.parse(text)
        if frame is None:
            return
        if self._rate_limited():
            self._strikes += 1
            if self._strikes > FLOOD_STRIKES:
                await self.conn.close(WSCloseCode.POLICY_VIOLATION, "rate limit exceeded")
                return
            self.conn.reply_error(frame.id, RateLimited("too many commands, slow down"))
            return
        self._strikes = 0
        with logs.log_context(request_id=logs.new_request_id(), user_id=self.identity.user_id,
                              conversation_id=_conversation_of(frame)):
            await self._dispatch(frame)

    async def _run(self, frame: Incoming, ctx: CommandContext) -> dict[str, Any] | None:
        """The command's result data; raises what the client is to be told."""
        if frame.type == "auth":
            return await self._refresh(frame)
        cmd = self.services.registry.commands.get(frame.type)
        if cmd is None:
            raise Invalid(f"unknown type {frame.type!r}", {"type": ["Unknown command."]})
        if self.identity.role not in cmd.roles:
            raise Forbidden(f"{frame.type} is not allowed for role {self.identity.role}")
        try:
            data = cmd.load(frame.body)
        except ValidationError as exc:
            raise Invalid("invalid fields", exc.messages_dict) from None
        return await cmd.handler(ctx, data)

    async def _dispatch(self, frame: Incoming) -> None:
        label = frame.type if frame.type == "auth" or frame.type in self.services.registry.commands else "unknown"
        services = self.services
        ctx = CommandContext(services.ops, self.identity, self.id, services.hub, services.streams)
        try:
            await self._answer(frame, label, ctx)
        finally:
            ctx.replied()  # what was held back for the reply goes out after it

    async def _answer(self, frame: Incoming, label: str, ctx: CommandContext) -> None:
        try:
            result = await self._run(frame, ctx)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # every failure becomes an error frame; the socket stays open
            self._fail(frame, label, to_chat_error(exc))
            return
        try:
            if result is not None:
                self.conn.reply(frame.id, result)
            elif frame.id is not None:
                self.conn.reply(frame.id, {})
        except orjson.JSONEncodeError:  # e.g. nested deeper than orjson goes: this reply only is lost
            log.exception("the reply to %s could not be encoded", frame.type)
            self._fail(frame, label, ChatError("internal error: the reply could not be encoded"))
            return
        _commands_counter(label, "ok").inc()

    def _fail(self, frame: Incoming, label: str, error: ChatError) -> None:
        _commands_counter(label, error.code).inc()
        self.conn.reply_error(frame.id, error)
