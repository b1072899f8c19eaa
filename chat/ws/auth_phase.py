"""The auth phase: before a token is checked a socket may only ping or authenticate. It ends
with a Session (Home Assistant's AuthPhase -> ActiveConnection), or with the socket closed."""

from __future__ import annotations

import logging

from aiohttp import WSCloseCode

from chat.auth import AuthError, Identity, verify_token
from chat.errors import RateLimited, Unauthenticated, to_chat_error
from chat.events import SessionClosed, SessionOpened
from chat.ws.connection import CLOSE_AUTH_FAILED, CLOSE_TOO_MANY_SOCKETS, Connection
from chat.ws.session import Services, Session, auth_result

log = logging.getLogger(__name__)


class AuthPhase:
    """Turns a connection into a session once its token is verified."""

    __slots__ = ("conn", "services", "session")  # one per socket, for as long as it is open

    def __init__(self, conn: Connection, services: Services):
        self.conn = conn
        self.services = services
        self.session: Session | None = None

    async def handle_text(self, text: str) -> Session | None:
        """One frame before authentication; the session when it authenticated the socket."""
        frame = self.conn.parse(text)
        if frame is None:
            return None
        if frame.type != "auth":
            self.conn.reply_error(frame.id, Unauthenticated(
                "authenticate first: send {\"type\": \"auth\", \"token\": ...}"))
            return None
        try:
            identity = verify_token(self.services.settings.jwt_verification_keys, frame.body.get("token"))
        except AuthError as exc:
            self.conn.reply_error(frame.id, Unauthenticated(str(exc)))
            await self.conn.close(CLOSE_AUTH_FAILED, "authentication failed")
            return None
        session = await self.open(identity, frame.id)
        if session is not None:
            self.conn.reply(frame.id, auth_result(identity))
        return session

    async def open(self, identity: Identity, frame_id: int | None = None) -> Session | None:
        """Leave the auth phase: the socket gets its session. When the session cannot be set up
        (Redis or the database down) the client gets the error and the socket is closed, and so is
        a socket over the user's cap on this instance (4429)."""
        try:
            refusal = await self.services.accounts.refusal(identity)
        except Exception as exc:
            self.conn.reply_error(frame_id, to_chat_error(exc))
            await self.conn.close(WSCloseCode.INTERNAL_ERROR, "session setup failed")
            return None
        if refusal is not None:  # deactivated (4403), or the account has another role now (4401)
            log.info("user %s: %s: closing socket %s", identity.user_id, refusal.reason, self.conn.id)
            self.conn.reply_error(frame_id, refusal.error(refusal.message))
            await self.conn.close(refusal.code, refusal.reason)
            return None
        # after the account's look (which may wait for SQL): counted and added with no await between,
        # so sockets of one user authenticating at once cannot all pass the cap
        cap = self.services.settings.ws_max_sockets_per_user
        if len(self.services.hub.sockets_of(identity.user_id)) >= cap:
            log.info("user %s is over %d sockets: closing socket %s", identity.user_id, cap, self.conn.id)
            self.conn.reply_error(frame_id, RateLimited(f"at most {cap} open sockets per user"))
            await self.conn.close(CLOSE_TOO_MANY_SOCKETS, "too many sockets for this user")
            return None
        session = Session(self.conn, identity, self.services)
        self.services.hub.add(session)
        try:
            await self.services.events.emit(SessionOpened(identity))
        except Exception as exc:
            self.services.hub.remove(session)
            session.stop()
            self.conn.reply_error(frame_id, to_chat_error(exc))
            await self.conn.close(WSCloseCode.INTERNAL_ERROR, "session setup failed")
            return None
        self.session = session
        return session

    async def end(self) -> None:
        """The socket closed: its session (if any) leaves the hub and the collaborators are told."""
        session, self.session = self.session, None
        if session is None:
            return
        session.stop()
        self.services.hub.remove(session)
        try:
            await self.services.events.emit(SessionClosed(session.identity))
        except Exception as exc:  # Redis gone: the lease simply runs out
            log.warning("presence update on close failed: %s", type(exc).__name__)
