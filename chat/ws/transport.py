"""GET /ws: the handshake (URL token), the read loop, the auth deadline, shutdown."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from urllib.parse import parse_qs

from aiohttp import WSCloseCode, WSMsgType, web

from chat import keys, metrics
from chat.api.common import REQUEST_ID_HEADER, WS_ROUTE, request_id_for
from chat.auth import AuthError, Identity, verify_token
from chat.ws.auth_phase import AuthPhase
from chat.ws.connection import CLOSE_AUTH_TIMEOUT, SEND_ERRORS, Connection, Outbox
from chat.ws.keepalive import Keepalive
from chat.ws.session import Session

SOCKETS: web.AppKey[set[Connection]] = web.AppKey("ws_sockets")  # the open ones (a socket leaves at its end)
OUTBOX: web.AppKey[Outbox] = web.AppKey("ws_outbox")


async def handle_ws(request: web.Request) -> web.StreamResponse:
    """Upgrade, authenticate (URL token now or an `auth` frame within the deadline), serve."""
    app = request.app
    settings = app[keys.SETTINGS]
    try:
        identity = _url_identity(request, settings.jwt_verification_keys)
    except AuthError as exc:  # the error middleware let the handshake through: the response is all ours
        return web.json_response({"error": {"code": "unauthenticated", "message": str(exc)}}, status=401,
                                 headers={REQUEST_ID_HEADER: request_id_for(request)})

    # no permessage-deflate: chat frames are small, and each socket's zlib state would cost far more
    # memory (hundreds of KB) than an idle socket is allowed
    # the heartbeat is the keepalive's (one task for every socket), so pings and pongs come to the read loop
    # + 1: aiohttp refuses a message of max_msg_size bytes itself, the protocol only one over the limit
    ws = web.WebSocketResponse(max_msg_size=settings.ws_max_frame_bytes + 1, autoping=False, compress=False)
    await ws.prepare(request)
    conn = Connection(ws, settings, app[OUTBOX], request.transport)
    phase = AuthPhase(conn, app[keys.WS_SERVICES])
    app[SOCKETS].add(conn)
    metrics.OPEN_SOCKETS.inc()
    try:
        if identity is None or await phase.open(identity) is not None:
            await _serve(conn, phase, deadline=asyncio.get_running_loop().time() + settings.ws_auth_timeout_s)
    finally:
        # shielded: when the peer vanishes the server may cancel this handler, and the socket
        # must still leave the hub and end its agent's lease
        await asyncio.shield(_cleanup(app[SOCKETS], conn, phase))
    return ws


def _url_identity(request: web.Request, keys: tuple[str, ...]) -> Identity | None:
    """The identity of the URL's `token` (None without one). Parsed from the raw path in this short
    call: request.query would keep the parsed query, token and all, cached on the request for as
    long as the socket is open."""
    query = parse_qs(request.raw_path.partition("?")[2], keep_blank_values=True)
    token = next(iter(query.get("token", ())), None)
    return None if token is None else verify_token(keys, token)


async def _serve(conn: Connection, phase: AuthPhase, deadline: float) -> None:
    """The read loop: frames go to the auth phase until it opened the session, then to the session."""
    ws, loop = conn.ws, asyncio.get_running_loop()
    session: Session | None = phase.session
    while not ws.closed:
        timeout = None if session is not None else deadline - loop.time()
        if timeout is not None and timeout <= 0:
            await conn.close(CLOSE_AUTH_TIMEOUT, "authentication timeout")
            break
        try:
            msg = await ws.receive(timeout=timeout)
        except TimeoutError:
            continue  # the deadline check above closes the socket
        conn.received_at = loop.time()  # any frame shows the peer is there (the keepalive's heartbeat)
        if msg.type == WSMsgType.TEXT:
            if session is not None:
                await session.handle_text(msg.data)
            else:
                session = await phase.handle_text(msg.data)
        elif msg.type == WSMsgType.PING:
            await _pong(conn, msg.data)
        elif msg.type == WSMsgType.PONG:
            pass  # the answer to the keepalive's ping: received_at says it came
        elif msg.type == WSMsgType.BINARY:
            await conn.close(WSCloseCode.UNSUPPORTED_DATA, "binary frames are not supported")
            break
        else:  # CLOSE, CLOSING, CLOSED, ERROR (a frame over the size limit closes with 1009 here)
            break


async def _pong(conn: Connection, data: bytes) -> None:
    """Answer a peer's ping (aiohttp's autoping is off, so that pongs reach the read loop)."""
    with contextlib.suppress(*SEND_ERRORS):
        await conn.ws.pong(data)


async def _cleanup(sockets: set[Connection], conn: Connection, phase: AuthPhase) -> None:
    sockets.discard(conn)
    metrics.OPEN_SOCKETS.dec()
    await conn.stop()
    await phase.end()


async def close_all(app: web.Application) -> None:
    """On shutdown every socket is closed with 1001 (going away)."""
    sockets = [*app[SOCKETS]]  # a copy: closing sockets leave the set
    await asyncio.gather(
        *(conn.close(WSCloseCode.GOING_AWAY, "server shutdown") for conn in sockets), return_exceptions=True
    )


async def _keepalive_ctx(app: web.Application) -> AsyncIterator[None]:
    """The keepalive's rounds, while the app runs."""
    keepalive = Keepalive(app[keys.SETTINGS].ws_heartbeat_s, app[SOCKETS])
    task = asyncio.create_task(keepalive.run(), name="ws-keepalive")
    yield
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


def register(app: web.Application) -> None:
    """Add GET /ws, the keepalive and the shutdown hook."""
    app[SOCKETS] = set()
    app[OUTBOX] = Outbox()
    app.router.add_get("/ws", handle_ws, name=WS_ROUTE)
    app.cleanup_ctx.append(_keepalive_ctx)
    app.on_shutdown.append(close_all)
