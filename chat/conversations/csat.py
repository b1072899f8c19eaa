"""Customer satisfaction (PROTOCOL 3.4 `csat.submit`): a customer rates each close of its conversation once."""

from __future__ import annotations

from typing import Any

from chat.auth import Identity
from chat.conversations.lifecycle import Conversations
from chat.errors import Conflict, Forbidden
from chat.events import CsatSubmitted, Events
from chat.store import DuplicateKey, Store
from chat.store.csat import NewRating
from states import State
from states.clock import ms_from_iso

PUBLIC_FIELDS = ("conversation_id", "version", "score", "comment", "created_at")


class Csat:
    """Ratings of closes: a close is the conversation's version when it closed, so a conversation closed,
    reopened and closed again is rated once per close."""

    def __init__(self, conversations: Conversations, store: Store, events: Events, *, enabled: bool) -> None:
        self.conversations = conversations
        self.store = store
        self.events = events
        self.enabled = enabled

    async def submit(self, identity: Identity, conversation_id: str, score: int, comment: str | None) -> dict[str, Any]:
        """Rate the conversation's current close; not_found for another's, conflict when it is not closed
        or this close was rated already; announced as CsatSubmitted (the `csat.submitted` webhook's hook)."""
        if not self.enabled:
            raise Forbidden("customer satisfaction ratings are turned off (CSAT_ENABLED)")
        conversation = await self.conversations.get_for(identity, conversation_id, fresh=True)
        if conversation.state != State.CLOSED:
            raise Conflict(f"only a closed conversation can be rated (it is {conversation.state})")
        rating = NewRating(conversation.id, conversation.version, conversation.user_id, conversation.agent_id,
                           conversation.team_id, score, comment, ms_from_iso(conversation.updated_at))
        try:
            stored = await self.store.csat.add(rating)
        except DuplicateKey:
            raise Conflict("this close of the conversation was rated already") from None
        await self.events.emit(CsatSubmitted(conversation, stored))
        return {name: stored[name] for name in PUBLIC_FIELDS}
