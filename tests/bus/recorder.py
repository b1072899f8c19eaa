"""A bus receiver for the tests: keeps what arrives and lets a test wait for it."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from chat.bus import BusMessage


class Recorder:
    """Records every bus message handed to it; `until` waits for one a predicate names."""

    def __init__(self) -> None:
        self.got: list[BusMessage] = []
        self._arrived = asyncio.Event()

    def __call__(self, message: BusMessage) -> None:
        self.got.append(message)
        self._arrived.set()

    async def until(self, predicate: Callable[[BusMessage], bool]) -> None:
        """Wait until a message that matches has arrived."""
        await self._wait(lambda: any(predicate(m) for m in self.got))

    async def until_count(self, count: int) -> None:
        """Wait until at least `count` messages have arrived."""
        await self._wait(lambda: len(self.got) >= count)

    async def _wait(self, done: Callable[[], bool]) -> None:
        while not done():
            self._arrived.clear()
            await asyncio.wait_for(self._arrived.wait(), timeout=10)
