"""The flat method names Store had before issue 9, each a one-line delegation to its repository.

Delete this module (and Store's base class) once every caller uses `store.<resource>.<name>`.
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any

from chat.store.conversations import QueueEntry
from chat.store.messages import NewMessage
from chat.store.models import Message, TransitionEvent
from chat.store.staff import StaffMember
from states.record import Conversation
from states.repository import Transition

if TYPE_CHECKING:
    from chat.store.conversations import Conversations
    from chat.store.events import Events
    from chat.store.labels import Labels
    from chat.store.messages import Messages
    from chat.store.migrations import Migrations
    from chat.store.staff import Staff
    from chat.store.teams import Teams


class LegacyNames:
    """Old name -> repository method; each line says where its callers move."""

    migrations: Migrations
    conversations: Conversations
    messages: Messages
    events: Events
    staff: Staff
    teams: Teams
    labels: Labels

    # issue 9: callers move to store.migrations.upgrade
    async def upgrade(self) -> list[int]:
        """Create or upgrade the schema (chat-api db upgrade)."""
        return await self.migrations.upgrade()

    # issue 9: callers move to store.migrations.version
    async def schema_version(self) -> int:
        """The applied schema version."""
        return await self.migrations.version()

    # issue 9: callers move to store.conversations.create
    async def create_conversation(self, conversation: Conversation) -> None:
        """Insert the mirror row of a new conversation."""
        await self.conversations.create(conversation)

    # issue 9: callers move to store.conversations.record_transition
    def record_transition(self, transition: Transition) -> AbstractAsyncContextManager[None]:
        """Check and move the mirror row, append the log entry."""
        return self.conversations.record_transition(transition)

    # issue 9: callers move to store.conversations.load
    async def load_conversation(self, conversation_id: str) -> Conversation | None:
        """Rebuild the live record from the mirror row."""
        return await self.conversations.load(conversation_id)

    # issue 9: callers move to store.conversations.ensure
    async def ensure_conversation(self, conversation: Conversation) -> None:
        """Give a migrated record its SQL row."""
        await self.conversations.ensure(conversation)

    # issue 9: callers move to store.conversations.existing
    async def existing_conversations(self, ids: list[str]) -> set[str]:
        """Which of these conversation ids have a SQL row."""
        return await self.conversations.existing(ids)

    # issue 9: callers move to store.conversations.extras
    async def conversation_extras(self, conversation_id: str) -> tuple[int, list[str]]:
        """(last_seq, label titles) of a conversation."""
        return await self.conversations.extras(conversation_id)

    # issue 9: callers move to store.conversations.handoff_queue
    async def handoff_queue(self, team_id: str | None = None, *, any_team: bool = True,
                            limit: int = 200) -> list[QueueEntry]:
        """Unassigned conversations in handoff, longest waiting first."""
        return await self.conversations.handoff_queue(team_id, any_team=any_team, limit=limit)

    # issue 9: callers move to store.conversations.waiting_since
    async def waiting_since(self, cutoff_ms: int, limit: int = 200) -> list[str]:
        """Conversations in handoff since before cutoff_ms."""
        return await self.conversations.waiting_since(cutoff_ms, limit)

    # issue 9: callers move to store.events.list_of
    async def list_events(self, conversation_id: str) -> list[TransitionEvent]:
        """The transition log of a conversation, oldest first."""
        return await self.events.list_of(conversation_id)

    # issue 9: callers move to store.messages.find
    async def find_message(self, conversation_id: str, sender_type: str, sender_id: str | None,
                           client_msg_id: str) -> Message | None:
        """The message this sender already stored with this client_msg_id."""
        return await self.messages.find(conversation_id, sender_type, sender_id, client_msg_id)

    # issue 9: callers move to store.messages.append
    async def append_message(self, conversation_id: str, **fields: Any) -> tuple[Message, bool]:
        """Store a message with the next seq; return it and whether it is new."""
        return await self.messages.append(conversation_id, **fields)

    # issue 9: callers move to store.messages.append_batch
    async def append_batch(self, items: list[dict[str, Any]]) -> list[Message]:
        """Store several unguarded messages in one transaction."""
        return await self.messages.append_batch([NewMessage(**item) for item in items])

    # issue 9: callers move to store.messages.list_of
    async def list_messages(self, conversation_id: str, *, after_seq: int = 0, limit: int | None = None,
                            include_private: bool = True) -> list[Message]:
        """Messages with seq > after_seq, oldest first."""
        return await self.messages.list_of(conversation_id, after_seq=after_seq, limit=limit,
                                           include_private=include_private)

    # issue 9: callers move to store.messages.recent
    async def recent_messages(self, conversation_id: str, limit: int) -> list[Message]:
        """The newest `limit` non-private messages, oldest first."""
        return await self.messages.recent(conversation_id, limit)

    # issue 9: callers move to store.staff.remember
    async def remember_user(self, user_id: str, role: str, name: str | None) -> None:
        """Record (or refresh) a token holder."""
        await self.staff.remember(user_id, role, name)

    # issue 9: callers move to store.staff.agent_exists
    async def agent_exists(self, agent_id: str) -> bool:
        """Is there an active agent (or admin) with this id?"""
        return await self.staff.agent_exists(agent_id)

    # issue 9: callers move to store.staff.list_staff
    async def list_staff(self) -> list[StaffMember]:
        """Every agent and admin: (id, role, active, max_chats)."""
        return await self.staff.list_staff()

    # issue 9: callers move to store.staff.teams_of
    async def teams_of(self, user_id: str) -> list[str]:
        """The teams a user is a member of."""
        return await self.staff.teams_of(user_id)

    # issue 9: callers move to store.staff.max_chats_of
    async def max_chats_of(self, user_id: str) -> int | None:
        """A user's own capacity, when one is set."""
        return await self.staff.max_chats_of(user_id)

    # issue 9: callers move to store.teams.exists
    async def team_exists(self, team_id: str) -> bool:
        """Is there a team with this id?"""
        return await self.teams.exists(team_id)

    # issue 9: callers move to store.labels.set_for
    async def set_labels(self, conversation_id: str, titles: list[str]) -> list[str]:
        """Replace a conversation's labels by title; return the titles not found."""
        return await self.labels.set_for(conversation_id, titles)
