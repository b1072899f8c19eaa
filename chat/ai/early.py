"""A reply asked for before the turn has checked what it answers (chat.ai_turn).

The provider's request goes out at once, on a context the turn expects; the turn then reads what
is due and builds the context for real. The reply is kept only when both contexts are the same,
so nothing of a dropped reply was ever shown: it changes when the request leaves, not what it says.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any

from .base import Provider, StreamItem


class EarlyReply:
    """A provider stream started now, its first item awaited in the background."""

    def __init__(self, provider: Provider, context: list[dict[str, str]], tools: list[dict[str, Any]]) -> None:
        self.context = context
        self._stream = provider.stream(context, tools=tools)
        # the first step of the stream sends the request; the turn takes the reply over later
        self._first: asyncio.Future[StreamItem] = asyncio.ensure_future(anext(self._stream))

    async def items(self) -> AsyncIterator[StreamItem]:
        """The whole reply: the first item (on its way since the start), then the rest."""
        # the ignore: Provider.stream is declared AsyncIterator, though every provider is an async generator
        async with aclosing(self._stream):  # type: ignore[type-var]
            try:
                first = await self._first
            except StopAsyncIteration:
                return
            yield first
            async for item in self._stream:
                yield item

    async def drop(self) -> None:
        """Abandon the reply (its request freed at once); nothing if it was taken over and read."""
        self._first.cancel()
        await asyncio.gather(self._first, return_exceptions=True)
        await self._stream.aclose()  # type: ignore[attr-defined]  # an async generator, as above
