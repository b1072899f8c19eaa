"""Who holds a conversation: claim, assign, routing's assignment, release, transfer, requeue, the queue."""

from __future__ import annotations

import logging
from typing import Any

from chat.auth import Identity
from chat.conversations.lifecycle import Conversations, actor_of, check_assigned
from chat.conversations.staff import Staff
from chat.errors import NotFound
from chat.events import ConversationAssigned, Events
from chat.store import Store
from states import InvalidTransition, RecordError, State
from states.record import Conversation
from states.repository import SYSTEM, Actor

log = logging.getLogger(__name__)


class Assignment:
    """Moves that give a conversation to an agent or take it away."""

    def __init__(self, conversations: Conversations, staff: Staff, store: Store, events: Events) -> None:
        self.conversations = conversations
        self.staff = staff
        self.store = store
        self.events = events

    async def _assign(self, conversation_id: str, agent_id: str, *, actor: Actor, reason: str, tell: bool = True,
                      **data: Any) -> Conversation:
        t = await self.conversations.fire(conversation_id, "assign", actor=actor, reason=reason, agent_id=agent_id,
                                          **data)
        # every socket of the agent (any instance) subscribes; it is told unless it claimed itself
        await self.conversations.announce(ConversationAssigned(t.after, agent_id, tell),
                                          "after assigning %s to %s: its sockets were not told", conversation_id,
                                          agent_id)
        return t.after

    async def claim(self, identity: Identity, conversation_id: str) -> Conversation:
        """`ai` or `handoff` -> `human` for this agent; racing agents: one wins, the rest conflict."""
        await self.conversations.get_for(identity, conversation_id)
        await self.staff.remember(identity)
        return await self._assign(conversation_id, identity.user_id, actor=actor_of(identity), reason="claim",
                                  tell=False, expect_states=(State.AI.value, State.HANDOFF.value))

    async def assign(self, identity: Identity, conversation_id: str, agent_id: str, *,
                     reason: str = "assign") -> Conversation:
        """Give the conversation to a named agent (an admin's assign)."""
        await self.conversations.get_for(identity, conversation_id)
        await self.staff.check_agent(agent_id)
        return await self._assign(conversation_id, agent_id, actor=actor_of(identity), reason=reason)

    async def route_to(self, conversation_id: str, agent_id: str) -> Conversation:
        """Routing: a waiting (`handoff`) conversation to an agent whose slot is reserved."""
        return await self._assign(conversation_id, agent_id, actor=SYSTEM, reason="routing",
                                  expect_states=(State.HANDOFF.value,))

    async def release(self, identity: Identity, conversation_id: str) -> Conversation:
        """`human` (or `handoff`) -> `ai`: hand back to the AI."""
        conversation = await self.conversations.get_for(identity, conversation_id, fresh=True)
        check_assigned(identity, conversation)
        t = await self.conversations.fire(conversation_id, "release", actor=actor_of(identity), reason="release",
                                          expect_version=conversation.version)
        return t.after

    async def transfer(self, identity: Identity, conversation_id: str, *, agent_id: str | None = None,
                       team_id: str | None = None) -> Conversation:
        """To an agent (stays `human`, reassigned) or to a team (`human` -> `handoff`, queued)."""
        conversation = await self.conversations.get_for(identity, conversation_id, fresh=True)
        check_assigned(identity, conversation)
        if conversation.state != State.HUMAN:
            raise InvalidTransition("transfer", conversation.state)
        if agent_id is not None:
            await self.staff.check_agent(agent_id)
            return await self._assign(conversation_id, agent_id, actor=actor_of(identity), reason="transfer",
                                      expect_version=conversation.version)
        await self.staff.check_team(team_id, required=True)
        t = await self.conversations.fire(conversation_id, "requeue", actor=actor_of(identity), reason="transfer",
                                          expect_version=conversation.version, team_id=team_id)
        return t.after

    async def requeue_from_gone_agent(self, conversation_id: str, agent_id: str) -> bool:
        """The assigned agent has been offline past the grace period: back to the queue.
        False when the agent no longer holds the conversation (its slot is then stale)."""
        current = await self.conversations.get(conversation_id)
        if current.state != State.HUMAN or current.agent_id != agent_id:
            return False
        await self.conversations.fire_quietly(conversation_id, "requeue", actor=SYSTEM, reason="agent_offline",
                                              expect_version=current.version)
        return True

    async def queue(self, team_id: str | None) -> list[dict[str, Any]]:
        """Unassigned conversations in handoff, longest waiting first (one team, or all)."""
        await self.staff.check_team(team_id)
        out = []
        for conversation_id, _team, _since in await self.store.conversations.handoff_queue(team_id):
            try:
                out.append(await self.conversations.view(await self.conversations.get(conversation_id)))
            except NotFound:
                continue
            except RecordError as exc:  # only that conversation fails (PROTOCOL 7.1), not everyone's queue
                log.error("queue: leaving out %s: %s", conversation_id, exc)
        return out
