"""Canned responses for agents (`canned.list`): by short-code prefix, their placeholders filled for a conversation.

Placeholders: `{{customer.name}}` is the conversation's `metadata.name` (else `metadata.customer_name`,
else empty), `{{agent.name}}` the asking agent's name (its token's `name`, else its user id). Any other
`{{...}}` is left as it is.
"""

from __future__ import annotations

import re
from typing import Any

from chat.auth import Identity
from chat.conversations.lifecycle import Conversations
from chat.store import Store
from states.record import Conversation

PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_]+\.[A-Za-z_]+)\s*\}\}")
CUSTOMER_NAME_KEYS = ("name", "customer_name")


def customer_name(conversation: Conversation | None) -> str:
    """The customer's name from the conversation's metadata, or empty."""
    metadata = conversation.metadata if conversation is not None else {}
    for key in CUSTOMER_NAME_KEYS:
        value = metadata.get(key)
        if isinstance(value, str) and value.strip():
            return value.strip()
    return ""


def fill(content: str, values: dict[str, str]) -> str:
    """The content with its known placeholders replaced; unknown ones stay as they are."""
    return PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), content)


class Canned:
    """Canned responses as an agent sees them."""

    def __init__(self, conversations: Conversations, store: Store) -> None:
        self.conversations = conversations
        self.store = store

    async def list_for(self, identity: Identity, prefix: str, conversation_id: str | None) -> list[dict[str, Any]]:
        """Those whose short code starts with `prefix` (case-insensitive), by short code, each with `text`:
        its content with the placeholders filled (for the conversation, when one is given)."""
        conversation = await self.conversations.get_for(identity, conversation_id) if conversation_id else None
        values = {"customer.name": customer_name(conversation), "agent.name": identity.name or identity.user_id}
        wanted = prefix.casefold()
        return [{**item, "text": fill(item["content"], values)} for item in await self.store.canned.all()
                if item["short_code"].casefold().startswith(wanted)]
