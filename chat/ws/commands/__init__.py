"""Command families, one module each; every module has a register(registry) function."""

from __future__ import annotations

from dataclasses import dataclass

from chat.auth import Identity
from chat.conversations import Operations
from chat.hub import Hub


@dataclass
class CommandContext:
    """What a handler may use: the operations, who is asking, and its socket's subscriptions."""

    ops: Operations
    identity: Identity
    peer_id: str
    hub: Hub

    async def subscribe(self, conversation_id: str) -> None:
        """Send this conversation's events to the asking socket; return once those published from now
        on reach this instance, so a read of the store after it misses nothing."""
        self.hub.subscribe(self.peer_id, conversation_id)
        await self.hub.listening(conversation_id)

    def unsubscribe(self, conversation_id: str) -> None:
        """Stop sending this conversation's events to the asking socket."""
        self.hub.unsubscribe(self.peer_id, conversation_id)
