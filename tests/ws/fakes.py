"""A stand-in for aiohttp's WebSocketResponse under a real Connection: frames sent are kept, the
close code is recorded and signalled. And a log handler put on the root logger for a test."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator
from typing import TypeVar

import orjson

H = TypeVar("H", bound=logging.Handler)


@contextlib.contextmanager
def on_root_logger(handler: H, level: int) -> Iterator[H]:
    """`handler` receives every record of `level` and up while inside."""
    root = logging.getLogger()
    previous = root.level
    root.addHandler(handler)
    root.setLevel(level)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(previous)


class FakeSocket:
    """What Connection uses of a server socket: send_frame, ping and close."""

    def __init__(self) -> None:
        self.frames: asyncio.Queue[dict] = asyncio.Queue()
        self.closed = asyncio.Event()
        self.close_code: int | None = None
        self.pings = 0

    async def send_frame(self, data: bytes, opcode: int) -> None:
        await self.frames.put(orjson.loads(data))

    async def ping(self, message: bytes = b"") -> None:
        self.pings += 1

    async def close(self, *, code: int, message: bytes = b"") -> bool:
        self.close_code = code
        self.closed.set()
        return True

    async def next_frame(self, timeout: float = 2.0) -> dict:
        return await asyncio.wait_for(self.frames.get(), timeout)
