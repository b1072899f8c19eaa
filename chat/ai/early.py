"""A reply asked for before the turn has checked what it answers (chat.ai_turn).

The provider's request goes out at once, on a context the turn expects; the turn then reads what
is due and builds the context for real. The reply is kept only when both contexts are the same,
so nothing of a dropped reply was ever shown: it changes when the request leaves, not what it says.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import aclosing
from typing import Any

from chat.store.models import Message

from .base import Provider, StreamItem

Context = list[dict[str, str]]


class EarlyReply:
    """A provider stream started now, its first item awaited in the background."""

    def __init__(self, provider: Provider, context: Context, tools: list[dict[str, Any]]) -> None:
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


class EarlyReplies:
    """This instance's early replies, one per conversation, until its turn takes it or drops it.

    A customer's message is asked on as soon as the messages this instance kept lead up to it: while
    it commits (`while_storing`), or once it is stored (`once_stored`) when that was not possible."""

    def __init__(self, provider: Provider, tools: list[dict[str, Any]], build: Callable[[list[Message]], Context]):
        self._provider = provider
        self._tools = tools
        self._build = build  # the context of the kept messages (chat.ai_memory.build_context)
        self._replies: dict[str, EarlyReply] = {}
        # the reply asked while a customer's message committed, until that message is announced as stored
        # (once_stored), even after a turn took it over
        self._asked: dict[str, EarlyReply] = {}
        self._dropping: set[asyncio.Task[None]] = set()

    def _ask(self, conversation_id: str, context: Context) -> EarlyReply:
        """Send the conversation's request now (an older early reply of it is dropped)."""
        self.drop(conversation_id)
        reply = self._replies[conversation_id] = EarlyReply(self._provider, context, self._tools)
        return reply

    def while_storing(self, conversation_id: str, upcoming: list[Message] | None,
                      stored: asyncio.Future[bool]) -> None:
        """A customer's message about to be stored, the last of the `upcoming` messages: ask on them now,
        while it commits; the reply is dropped unseen if `stored` says it was not stored."""
        if upcoming is None:
            return
        reply = self._asked[conversation_id] = self._ask(conversation_id, self._build(upcoming))

        def settled(outcome: asyncio.Future[bool]) -> None:
            if not outcome.result():
                self.drop(conversation_id, only=reply)

        stored.add_done_callback(settled)

    def once_stored(self, conversation_id: str, kept: list[Message] | None, message_id: str) -> None:
        """A customer's message stored: ask on the `kept` messages when they end with it, unless its
        reply was asked on that context while it committed, or a turn took that reply over already (the
        turn checks its context and asks again itself if it must: a second request now would go unread)."""
        asked = self._asked.pop(conversation_id, None)
        if kept is None or kept[-1].id != message_id:
            return
        context = self._build(kept)
        reply = self._replies.get(conversation_id)
        if reply is None and asked is not None and asked.context == context:
            return
        if reply is None or reply.context != context:
            self._ask(conversation_id, context)

    def take(self, conversation_id: str) -> EarlyReply | None:
        """The conversation's early reply, handed over to its turn."""
        return self._replies.pop(conversation_id, None)

    def drop(self, conversation_id: str, only: EarlyReply | None = None) -> None:
        """Abandon the conversation's early reply, if any (`only`: if it is that one); its request is
        closed in the background."""
        if only is None or self._asked.get(conversation_id) is only:
            self._asked.pop(conversation_id, None)
        if only is not None and self._replies.get(conversation_id) is not only:
            return
        reply = self._replies.pop(conversation_id, None)
        if reply is not None:
            task = asyncio.create_task(reply.drop(), name=f"ai-early-drop-{conversation_id}")
            self._dropping.add(task)
            task.add_done_callback(self._dropping.discard)

    async def close(self) -> None:
        """Drop every early reply and wait until their requests are closed (shutdown)."""
        for conversation_id in list(self._replies):
            self.drop(conversation_id)
        await asyncio.gather(*self._dropping, return_exceptions=True)
