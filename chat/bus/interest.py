"""Which bus channels this instance needs, and their names.

A conversation's events go to its channel (the instances where some socket subscribed to it
listen, and there every tab of its customer hears it too), a user's own messages to the user's
channel, queue changes to the agents' channel, and presence to the presence channel every
instance listens to. The hub says when the first local socket needs a
channel and when the last one stops needing it; the bus subscribes and unsubscribes accordingly,
so an instance receives only the traffic of its own sockets. A command that reads a conversation's
history after subscribing first waits until this instance listens (`listening`), so an event
published meanwhile is in its read or arrives live.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable


class Interest:
    """The channels wanted here, named under the deployment's prefix (BUS_CHANNEL), and who to tell
    when that changes."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.presence = f"{prefix}:presence"
        self.agents = f"{prefix}:agents"
        self._conversation = f"{prefix}:c:"
        self._user = f"{prefix}:u:"
        self.wanted: set[str] = {self.presence}  # every instance keeps its roster of online agents
        self._listeners: list[Callable[[str, bool], None]] = []
        self._listening: Callable[[str], Awaitable[None]] | None = None

    def conversation(self, conversation_id: str) -> str:
        """The channel of a conversation's events."""
        return self._conversation + conversation_id

    def user(self, user_id: str) -> str:
        """The channel of a user's own messages (an agent's assignments)."""
        return self._user + user_id

    def on_change(self, listener: Callable[[str, bool], None]) -> None:
        """Call listener(channel, wanted) on every change."""
        self._listeners.append(listener)

    def on_listening(self, wait: Callable[[str], Awaitable[None]]) -> None:
        """`listening` awaits wait(channel) (the bus: until Redis confirmed the subscription)."""
        self._listening = wait

    async def listening(self, channel: str) -> None:
        """Return once this instance receives what is published on a wanted channel from now on
        (at once without a bus)."""
        if self._listening is not None:
            await self._listening(channel)

    def want(self, channel: str) -> None:
        """A local socket needs the channel (the first one: callers keep their own counts)."""
        if channel not in self.wanted:
            self.wanted.add(channel)
            for listener in self._listeners:
                listener(channel, True)

    def drop(self, channel: str) -> None:
        """No local socket needs the channel any more."""
        if channel in self.wanted:
            self.wanted.discard(channel)
            for listener in self._listeners:
                listener(channel, False)
