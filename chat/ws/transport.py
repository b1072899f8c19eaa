"""GET /ws: the handshake (URL token), the read loop, the auth deadline, shutdown."""

from __future__ import annotations

import asyncio
import logging
import weakref

from aiohttp import WSCloseCode, WSMsgType, web

from chat import keys, metrics
from chat.auth import AuthError, verify_token
from chat.ws.connection import CLOSE_AUTH_TIMEOUT, Connection

log = logging.getLogger(__name__)

SOCKETS = web.AppKey("ws_sockets", weakref.WeakSet)


async def handle_ws(request: web.Request) -> web.StreamResponse:
    """Upgrade, authenticate (URL token now or an `auth` frame within the deadline), serve."""
    app = request.app
    settings = app[keys.SETTINGS]
    identity = None
    token = request.query.get("token")
    if token is not None:
        try:
            identity = verify_token(settings.jwt_secret_key, token)
        except AuthError as exc:
            return web.json_response({"error": {"code": "unauthenticated", "message": str(exc)}}, status=401)

    ws = web.WebSocketResponse(max_msg_size=settings.ws_max_frame_bytes, heartbeat=settings.ws_heartbeat_s)
    await ws.prepare(request)
    conn = Connection(ws, settings, app[keys.SERVICE], app[keys.HUB], app[keys.WS_REGISTRY])
    conn.on_authenticated = app.get(keys.ON_AUTHENTICATED)
    app[SOCKETS].add(conn)
    metrics.OPEN_SOCKETS.inc()
    conn.start_writer()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + settings.ws_auth_timeout_s
    try:
        if identity is not None and not await conn.authenticate(identity):
            return ws
        while not ws.closed:
            timeout = None if conn.identity is not None else deadline - loop.time()
            if timeout is not None and timeout <= 0:
                await conn.close(CLOSE_AUTH_TIMEOUT, "authentication timeout")
                break
            try:
                msg = await ws.receive(timeout=timeout)
            except asyncio.TimeoutError:
                continue  # the deadline check above closes the socket
            if msg.type == WSMsgType.TEXT:
                await conn.handle_text(msg.data)
            elif msg.type == WSMsgType.BINARY:
                await conn.close(WSCloseCode.UNSUPPORTED_DATA, "binary frames are not supported")
                break
            else:  # CLOSE, CLOSING, CLOSED, ERROR (a frame over the size limit closes with 1009 here)
                break
    finally:
        # shielded: when the peer vanishes the server may cancel this handler, and the socket
        # must still leave the hub and end its agent's lease
        await asyncio.shield(_cleanup(app, conn))
    return ws


async def _cleanup(app: web.Application, conn: Connection) -> None:
    metrics.OPEN_SOCKETS.dec()
    await conn.stop()
    on_closed = app.get(keys.ON_CLOSED)
    if on_closed is not None and conn.identity is not None:
        try:
            await on_closed(conn)
        except Exception as exc:  # Redis gone: the lease simply runs out
            log.warning("presence update on close failed: %s", type(exc).__name__)


async def close_all(app: web.Application) -> None:
    """On shutdown every socket is closed with 1001 (going away)."""
    sockets = list(app[SOCKETS])
    await asyncio.gather(
        *(conn.close(WSCloseCode.GOING_AWAY, "server shutdown") for conn in sockets), return_exceptions=True
    )


def register(app: web.Application) -> None:
    """Add GET /ws and its shutdown hook."""
    app[SOCKETS] = weakref.WeakSet()
    app.router.add_get("/ws", handle_ws)
    app.on_shutdown.append(close_all)
