"""A small WebSocket test client and a scripted AI provider."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

from aiohttp import WSMsgType

from chat.ai import AIError, ToolCall

RECV_TIMEOUT_S = 5.0


class WS:
    """Wraps an aiohttp test websocket: request/reply by id, events buffered by type."""

    _ids = itertools.count(1)

    def __init__(self, ws):
        self.ws = ws
        self.events: list[dict] = []

    async def send(self, frame: dict) -> None:
        await self.ws.send_json(frame)

    async def recv(self, timeout: float = RECV_TIMEOUT_S) -> dict:
        msg = await self.ws.receive(timeout=timeout)
        if msg.type != WSMsgType.TEXT:
            raise AssertionError(f"expected a text frame, got {msg.type} {msg.data!r} {msg.extra!r}")
        return msg.json()

    async def request(self, type_: str, **fields) -> dict:
        """Send a command with a fresh id; return its reply (events meanwhile are buffered)."""
        frame_id = next(self._ids)
        await self.send({"type": type_, "id": frame_id, **fields})
        while True:
            frame = await self.recv()
            if frame.get("id") == frame_id:
                return frame
            self.events.append(frame)

    async def ok(self, type_: str, **fields) -> dict:
        """A command that must succeed; its result data."""
        reply = await self.request(type_, **fields)
        assert reply["type"] == "result", reply
        return reply["data"]

    async def event(self, type_: str, predicate=lambda f: True, timeout: float = RECV_TIMEOUT_S) -> dict:
        """The next pushed event of this type (buffered ones first)."""
        for i, frame in enumerate(self.events):
            if frame.get("type") == type_ and predicate(frame):
                return self.events.pop(i)
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                raise AssertionError(f"no {type_} event within {timeout}s; buffered: {self.events}")
            frame = await self.recv(timeout=left)
            if frame.get("type") == type_ and predicate(frame):
                return frame
            self.events.append(frame)

    async def closed(self, timeout: float = RECV_TIMEOUT_S) -> int:
        """Wait for the server to close; return the close code."""
        while True:
            msg = await self.ws.receive(timeout=timeout)
            if msg.type == WSMsgType.CLOSE:
                return msg.data  # the server's code (close_code may turn 1006 if its reply finds the transport gone)
            if msg.type in (WSMsgType.CLOSED, WSMsgType.CLOSING):
                return self.ws.close_code
            if msg.type == WSMsgType.TEXT:
                self.events.append(msg.json())

    async def close(self) -> None:
        await self.ws.close()


class ScriptedProvider:
    """An AI provider under the test's control: fixed chunks, optional gate, failures, tool calls."""

    name = "scripted"

    def __init__(self, chunks: list[Any] | None = None):
        self.chunks = chunks if chunks is not None else ["Hello", ", ", "world"]
        self.health = {"status": "ok"}
        self.calls: list[list[dict]] = []
        self.gate: asyncio.Event | None = None  # when set, the stream waits on it after the first chunk
        self.started = asyncio.Event()

    async def stream(self, messages, *, tools=None):
        self.calls.append(messages)
        self.started.set()
        for i, chunk in enumerate(self.chunks):
            if isinstance(chunk, Exception):
                raise chunk
            yield chunk
            if i == 0 and self.gate is not None:
                await self.gate.wait()


__all__ = ["AIError", "ScriptedProvider", "ToolCall", "WS"]


def when_session_closed(app, user_id: str) -> asyncio.Event:
    """Set once a socket of this user has closed on the app and every collaborator has heard of it
    (subscribe before closing the socket; wait on it instead of polling)."""
    from chat import keys
    from chat.events import SessionClosed

    done = asyncio.Event()

    def seen(event: SessionClosed) -> None:
        if event.identity.user_id == user_id:
            done.set()

    app[keys.EVENTS].subscribe(SessionClosed, seen)
    return done
