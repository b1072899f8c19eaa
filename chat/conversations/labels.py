"""Labels of a conversation."""

from __future__ import annotations

from chat.auth import Identity
from chat.conversations.lifecycle import Conversations
from chat.errors import NotFound
from chat.events import ConversationChanged, Events
from chat.store import Store
from states.record import Conversation


class Labels:
    """Replace a conversation's labels."""

    def __init__(self, conversations: Conversations, store: Store, events: Events) -> None:
        self.conversations = conversations
        self.store = store
        self.events = events

    async def set(self, identity: Identity, conversation_id: str, titles: list[str]) -> Conversation:
        """Replace the labels (by title); unknown titles are not_found and change nothing."""
        conversation = await self.conversations.get_for(identity, conversation_id)
        await self.store.conversations.ensure(conversation)
        missing = await self.store.labels.set_for(conversation_id, titles)
        if missing:
            raise NotFound(f"unknown label(s): {', '.join(missing)}", {"labels": [f"unknown: {t}" for t in missing]})
        await self.events.emit(ConversationChanged(conversation, "labels"))
        return conversation
