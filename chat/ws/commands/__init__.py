"""Command families, one module each; every module has a register(registry) function."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from chat.ai_stream import AIStreams
from chat.auth import Identity
from chat.bus.messages import Frame
from chat.conversations import Operations
from chat.hub import Hub


@dataclass
class CommandContext:
    """What a handler may use: the operations, who is asking, its socket's subscriptions, and the AI
    streams (read by resume and watch)."""

    ops: Operations
    identity: Identity
    peer_id: str
    hub: Hub
    streams: AIStreams
    _held: dict[str, Callable[[Frame], bool]] | None = None  # most commands hold nothing: no dict for them

    async def subscribe(self, conversation_id: str, *, hold: bool = False) -> None:
        """Send this conversation's events to the asking socket; return once those published from now
        on reach this instance, so a read of the store after it misses nothing. `hold`: its frames wait
        until the reply is sent (`send_after_reply` says which of them then go)."""
        if hold:
            if self._held is None:
                self._held = {}
            if conversation_id not in self._held:
                self.hub.hold(self.peer_id, conversation_id)
                self._held[conversation_id] = lambda frame: True
        self.hub.subscribe(self.peer_id, conversation_id)
        await self.hub.listening(conversation_id)

    def send_after_reply(self, conversation_id: str, keep: Callable[[Frame], bool]) -> None:
        """Which frames held back for the conversation are sent once the reply is."""
        if self._held is not None and conversation_id in self._held:
            self._held[conversation_id] = keep

    def unsubscribe(self, conversation_id: str) -> None:
        """Stop sending this conversation's events to the asking socket (none held back for it is sent)."""
        self.send_after_reply(conversation_id, lambda frame: False)
        self.hub.unsubscribe(self.peer_id, conversation_id)

    def subscribed(self, conversation_id: str) -> bool:
        """Does the asking socket get this conversation's events already?"""
        return self.hub.subscribed(self.peer_id, conversation_id)

    def replied(self) -> None:
        """The reply (or the error) is queued: send what was held back for it, in order."""
        held, self._held = self._held or {}, None
        for conversation_id, keep in held.items():
            self.hub.release(self.peer_id, conversation_id, keep)
