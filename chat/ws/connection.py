"""One socket's sending side and frame parsing: replies, errors and closing. Both phases (auth,
session) use it.

No task per socket: a frame is kept on its connection and the process's one `Outbox` task writes
every connection's frames once per loop turn, all of a turn's frames in one write to the transport
(a message's `message.created` and its `result`: one send), which never waits. A socket whose peer
has more than the transport's high-water mark unread gets a task of its own that writes through
aiohttp's writer, each frame as its flow control lets it, until it has caught up; one that falls
`WS_SEND_QUEUE_MAX` frames behind is closed with 1013: it never stalls the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import struct
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import orjson
from aiohttp import WSCloseCode, WSMsgType, web

from chat import metrics
from chat.errors import ChatError, Invalid
from chat.settings import Settings

if TYPE_CHECKING:
    from chat.ws.session import Session

log = logging.getLogger(__name__)

CLOSE_AUTH_FAILED = 4401
CLOSE_AUTH_TIMEOUT = 4408
CLOSE_TOO_MANY_SOCKETS = 4429
CLOSE_SLOW_CLIENT = WSCloseCode.TRY_AGAIN_LATER  # 1013: the client could not keep up
SEND_ERRORS = (ConnectionError, RuntimeError)  # the socket is gone; the read loop cleans up

# socket ids cross the bus (a typing event skips its sender's socket on every instance): unique per
# process by the prefix, and cheaper than a uuid4 per socket
_ID_PREFIX = uuid.uuid4().hex[:12]
_socket_numbers = itertools.count(1)


_HEADER_SHORT = struct.Struct("!BB").pack
_HEADER_16 = struct.Struct("!BBH").pack
_HEADER_64 = struct.Struct("!BBQ").pack


def text_frame(payload: bytes) -> bytes:
    """A final, unmasked text frame as a server sends it (RFC 6455 5.2; permessage-deflate is off), for
    writing several at once: aiohttp's writer sends one frame per write."""
    size = len(payload)
    if size < 126:
        return _HEADER_SHORT(0x81, size) + payload
    if size < 65536:
        return _HEADER_16(0x81, 126, size) + payload
    return _HEADER_64(0x81, 127, size) + payload


@dataclass(frozen=True, slots=True)
class Incoming:
    """A well-formed frame: its id (if any), its type and the whole object."""

    id: int | None
    type: str
    body: dict[str, Any]


class Outbox:
    """The connections with frames to write, written by one task per loop turn (started when the
    first frame of a turn arrives, ended when nothing is left)."""

    __slots__ = ("_ready", "_task")

    def __init__(self) -> None:
        self._ready: dict[Connection, None] = {}  # an ordered set: sockets written in arrival order
        self._task: asyncio.Task[None] | None = None

    def add(self, conn: Connection) -> None:
        """Write this connection's frames in the next turn."""
        self._ready[conn] = None
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="ws-outbox")

    async def _run(self) -> None:
        try:
            while self._ready:
                ready, self._ready = self._ready, {}
                for conn in ready:
                    try:
                        await conn.write_pending()
                    except Exception:  # a bug must cost this socket only, never the others' frames
                        log.exception("writing to websocket %s failed; dropping it", conn.id)
                        conn.drop()
        finally:
            self._task = None


class Connection:
    """An open socket: what is waiting to be written to it and how it closes."""

    __slots__ = ("_closer", "_drainer", "_max_frames", "_outbox", "_pending", "closing", "id",
                 "pinged_at", "received_at", "session", "transport", "user_id", "ws")

    def __init__(self, ws: web.WebSocketResponse, settings: Settings, outbox: Outbox,
                 transport: asyncio.BaseTransport | None = None):
        """`transport`: the request's (its buffer tells whether the peer keeps up); None in unit tests.
        Any transport that tells its write buffer counts: uvloop's are no asyncio.WriteTransport."""
        self.id = f"{_ID_PREFIX}{next(_socket_numbers):x}"
        self.ws = ws
        tells_buffer = hasattr(transport, "get_write_buffer_size")
        self.transport = cast(asyncio.WriteTransport, transport) if tells_buffer else None
        self.user_id: str | None = None  # for log lines, once a session is open
        self.session: Session | None = None  # once authenticated (the keepalive arms its token's expiry)
        self.received_at = asyncio.get_running_loop().time()  # the last frame from the peer (event-loop time)
        self.pinged_at: float | None = None  # the keepalive's last ping
        self._outbox = outbox
        self._max_frames = settings.ws_send_queue_max
        self._pending: list[bytes] = []
        self._drainer: asyncio.Task[None] | None = None  # only while the peer is behind
        self._closer: asyncio.Task[None] | None = None  # kept so the close task is not garbage-collected
        self.closing = False

    # --- sending ---------------------------------------------------------------------------

    def send_bytes(self, data: bytes) -> None:
        """Queue one encoded text frame; a client that falls too far behind is disconnected, never waited for."""
        if self.closing:
            return
        pending = self._pending
        if len(pending) >= self._max_frames:
            metrics.WS_SLOW_CLIENTS.inc()
            log.info("closing slow websocket client %s (%s)", self.id, self.user_id)
            self.close_soon(CLOSE_SLOW_CLIENT, "send queue full")
            return
        pending.append(data)
        if len(pending) == 1 and self._drainer is None:
            self._outbox.add(self)

    def send_text(self, text: str) -> None:
        """Queue a frame (the hub's delivery)."""
        self.send_bytes(text.encode())

    def send(self, frame: dict[str, Any]) -> None:
        """Queue one JSON frame."""
        self.send_bytes(orjson.dumps(frame))

    def reply(self, frame_id: int | None, data: dict[str, Any]) -> None:
        """The result of a command."""
        self.send_bytes(orjson.dumps({"id": frame_id, "type": "result", "data": data} if frame_id is not None
                                     else {"type": "result", "data": data}))

    def reply_error(self, frame_id: int | None, error: ChatError) -> None:
        """An error frame with the protocol code."""
        frame: dict[str, Any] = {"type": "error", "code": error.code, "message": error.message}
        if frame_id is not None:
            frame = {"id": frame_id, **frame}
        if error.details:
            frame["details"] = error.details
        self.send(frame)

    def behind(self) -> bool:
        """Could a send through aiohttp's writer (the keepalive's ping) wait now? Its flow control pauses
        above the high-water mark and resumes at the low one, so at or under the low mark it never waits."""
        transport = self.transport
        if transport is None:
            return False
        return transport.get_write_buffer_size() > transport.get_write_buffer_limits()[0]

    async def write_pending(self) -> None:
        """Write what is queued (the outbox's turn): the turn's frames in one write to the transport, which
        never waits, unless the peer has more than the high-water mark still unread: then a task of this
        socket's own writes them, each as aiohttp's flow control lets it."""
        if self._drainer is not None or self.closing:
            return  # the drainer, or the close, writes them
        frames, self._pending = self._pending, []
        transport = self.transport
        if transport is None:  # unit tests: through aiohttp's writer
            for data in frames:
                try:
                    await self.ws.send_frame(data, WSMsgType.TEXT)
                except SEND_ERRORS:
                    return
            return
        if transport.get_write_buffer_size() > transport.get_write_buffer_limits()[1]:
            self._pending = frames
            self._drainer = asyncio.get_running_loop().create_task(self._drain())
        elif not (self.ws.closed or transport.is_closing()):
            transport.write(b"".join(map(text_frame, frames)))

    async def _drain(self) -> None:
        """A peer that is behind: its frames one by one, each as aiohttp's flow control lets it."""
        try:
            while self._pending:
                await self.ws.send_frame(self._pending.pop(0), WSMsgType.TEXT)
        except SEND_ERRORS:
            self._pending.clear()
        finally:
            self._drainer = None

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

    def drop(self) -> None:
        """End a dead peer's connection without a close handshake (it sees 1006); the read loop ends."""
        self.closing = True
        self._pending = []
        if self.transport is not None:
            self.transport.close()

    def close_soon(self, code: int, message: str = "") -> None:
        """Close from synchronous code (without writing what is queued)."""
        if not self.closing:
            self.closing = True
            self._pending = []
            self._closer = asyncio.get_running_loop().create_task(self._close_now(code, message))

    async def _close_now(self, code: int, message: str) -> None:
        await self._stop_drainer()
        await self.ws.close(code=code, message=message.encode())

    async def close(self, code: int, message: str = "") -> None:
        """Write what is queued (for at most 2 s), then close with `code`."""
        if self.closing:
            return
        self.closing = True
        if self._pending and self._drainer is None:
            self._drainer = asyncio.get_running_loop().create_task(self._drain())
        if self._drainer is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._drainer), timeout=2.0)
        await self._close_now(code, message)

    async def _stop_drainer(self) -> None:
        drainer, self._drainer = self._drainer, None
        if drainer is not None:
            drainer.cancel()
            await asyncio.gather(drainer, return_exceptions=True)

    async def stop(self) -> None:
        """After the socket ended: nothing more is written."""
        self.closing = True
        self._pending = []
        await self._stop_drainer()
