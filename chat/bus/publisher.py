"""The bus publisher: turns the domain events of this instance into bus messages for the
sockets of every instance (the AI stream's `ai.delta` and `ai.interrupted` are published by
chat.ai_stream, each with the write it announces)."""

from __future__ import annotations

from typing import Any

from chat import render
from chat.bus.messages import PresenceChanged, ToAgents, ToConversation, ToUser
from chat.bus.redis_bus import Bus
from chat.conversations import Conversations
from chat.events import (
    AgentStatusChanged,
    AIFailed,
    ConversationAssigned,
    ConversationChanged,
    ConversationMoved,
    Events,
    MessageStored,
    Typing,
)
from states import State
from states.record import Conversation


def _frame(type_: str, data: dict[str, Any]) -> dict[str, Any]:
    return {"type": type_, "data": data}


def _to(conversation: Conversation, type_: str, data: dict[str, Any], *, agents_only: bool = False,
        skip: str | None = None) -> ToConversation:
    """The bus message of a frame to the conversation's subscribers."""
    return ToConversation(conversation.id, conversation.user_id, _frame(type_, data), agents_only, skip)


class Publisher:
    """Subscribes to the domain events; publishes what the sockets are told."""

    def __init__(self, bus: Bus, conversations: Conversations, *, csat_enabled: bool = False) -> None:
        self.bus = bus
        self.conversations = conversations
        self.csat_enabled = csat_enabled

    def subscribe_to(self, events: Events) -> None:
        """Listen to every event that some socket hears of."""
        events.subscribe(ConversationMoved, self.on_moved)
        events.subscribe(ConversationChanged, self.on_changed)
        events.subscribe(ConversationAssigned, self.on_assigned)
        events.subscribe(MessageStored, self.on_message)
        events.subscribe(Typing, self.on_typing)
        events.subscribe(AIFailed, self.on_ai_failed)
        events.subscribe(AgentStatusChanged, self.on_agent_status)

    async def _to_conversation(self, conversation: Conversation, type_: str, data: dict[str, Any], *,
                               skip: str | None = None) -> None:
        await self.bus.publish(_to(conversation, type_, data, skip=skip))

    async def on_moved(self, event: ConversationMoved) -> None:
        """conversation.updated to subscribers, and to agents when the queue changed."""
        t = event.transition
        data = {"conversation": await self.conversations.view(t.after), "previous_state": t.previous_state,
                "reason": t.reason}
        await self._to_conversation(t.after, "conversation.updated", data)
        if event.touches_queue:
            await self.bus.publish(ToAgents(t.after.team_id, _frame("conversation.updated", data)))
        if self.csat_enabled and t.after.state == State.CLOSED:  # every close, each one rated on its own
            frame = _frame("csat.requested", {"conversation_id": t.after.id, "version": t.after.version})
            await self.bus.publish(ToConversation(t.after.id, t.after.user_id, frame, customer_only=True))

    async def on_changed(self, event: ConversationChanged) -> None:
        """conversation.updated for a change without a move (labels)."""
        c = event.conversation
        data = {"conversation": await self.conversations.view(c), "previous_state": c.state, "reason": event.reason}
        await self._to_conversation(c, "conversation.updated", data)

    async def on_assigned(self, event: ConversationAssigned) -> None:
        """Subscribe every socket of the agent; tell it unless it claimed the conversation itself."""
        frame = (_frame("conversation.assigned", {"conversation": await self.conversations.view(event.conversation)})
                 if event.tell else None)
        await self.bus.publish(ToUser(event.agent_id, frame, subscribe=event.conversation.id))

    def on_message(self, event: MessageStored) -> None:
        """message.created (private notes: agents only), without waiting for Redis: the sender's
        acknowledgement follows at once, often in the same write to its socket."""
        data = {"conversation_id": event.conversation.id, "message": render.message(event.message)}
        self.bus.publish_soon(_to(event.conversation, "message.created", data, agents_only=event.message.private))

    async def on_typing(self, event: Typing) -> None:
        """typing, to everyone but the typist's sockets."""
        data = {"conversation_id": event.conversation.id, "sender_type": event.sender_type, "on": event.on}
        await self._to_conversation(event.conversation, "typing", data, skip=event.skip)

    async def on_ai_failed(self, event: AIFailed) -> None:
        """ai.failed: drop the partial reply."""
        data = {"conversation_id": event.conversation.id, "reply_to": event.reply_to, "code": event.code}
        await self._to_conversation(event.conversation, "ai.failed", data)

    async def on_agent_status(self, event: AgentStatusChanged) -> None:
        """Every instance's roster learns of it."""
        await self.bus.publish(PresenceChanged(event.agent_id, event.status, event.teams))
