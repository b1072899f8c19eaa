"""Reading, starting and moving conversations: the one place a transition is fired and announced."""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

from chat import metrics, render
from chat.auth import Identity
from chat.cursors import Position, next_cursor
from chat.errors import Forbidden, NotFound, log_failure
from chat.events import ConversationMoved, ConversationStarted, Events
from chat.quotas import ConversationQuota
from chat.render import PublicConversation
from chat.store import Store
from chat.store.listing import ConversationFilter
from states import ConversationNotFound, InvalidTransition, StaleVersion
from states.record import Conversation
from states.repository import Actor, ConversationRepository, Transition

log = logging.getLogger(__name__)

OWN_PAGE, MAX_OWN_PAGE = 20, 100  # a customer's list of its conversations: default and largest page
LAST_SEEN_MAX = 4096  # conversations whose last seen record this instance keeps (the newest seen)
MAX_NAME_CHARS = 128  # of a token's `name`, kept as a new conversation's metadata.name


def actor_of(identity: Identity) -> Actor:
    """The transition-log actor for a token holder."""
    return Actor(identity.role, identity.user_id)


def check_assigned(identity: Identity, conversation: Conversation) -> None:
    """Agents act only on their own conversations, or on one nobody is assigned to."""
    if identity.role == "agent" and conversation.agent_id not in (None, identity.user_id):
        raise Forbidden("only the assigned agent or an admin may do this")


class Conversations:
    """The conversation records: who may see one, its public view, its moves.

    Every record read or written here is also kept as this instance's last seen one (bounded). It
    may be behind (another instance moved the conversation), so it is only used where that is
    safe: its id and owner never change, and the message path writes under a guard on its state
    and version (the SQL row refuses a stale one, and the record is read again)."""

    def __init__(self, repository: ConversationRepository, store: Store, events: Events,
                 quota: ConversationQuota) -> None:
        self.repository = repository
        self.store = store
        self.events = events
        self.quota = quota
        self._last_seen: dict[str, Conversation] = {}

    def _seen(self, conversation: Conversation) -> Conversation:
        last_seen = self._last_seen
        known = last_seen.pop(conversation.id, None)
        if known is None or known.version <= conversation.version:  # a read overtaken by a move keeps the newer
            # kept without the migrated AI context and unknown fields: unbounded, and not what it is used for
            known = replace(conversation, context={}, extra={}) if conversation.context or conversation.extra \
                else conversation
        last_seen[conversation.id] = known
        if len(last_seen) > LAST_SEEN_MAX:
            del last_seen[next(iter(last_seen))]  # the one seen longest ago
        return conversation

    def last_seen(self, identity: Identity, conversation_id: str) -> Conversation | None:
        """This instance's last seen record of a conversation the identity may see (None when there
        is none; its `context` and `extra` left out); not_found for a customer's look at anyone
        else's (an owner never changes)."""
        conversation = self._last_seen.get(conversation_id)
        if conversation is not None and not identity.is_agent and conversation.user_id != identity.user_id:
            raise NotFound("conversation not found")
        return conversation

    async def get(self, conversation_id: str) -> Conversation:
        """The live record; not_found when there is none."""
        try:
            return self._seen(await self.repository.get(conversation_id))
        except ConversationNotFound:
            raise NotFound("conversation not found") from None

    async def refresh(self, conversation_id: str) -> Conversation:
        """The live record checked against the SQL row (the durable truth) and repaired when it is
        behind: what a permission check must read."""
        try:
            return self._seen(await self.repository.get(conversation_id, fresh=True))
        except ConversationNotFound:
            raise NotFound("conversation not found") from None

    async def get_for(self, identity: Identity, conversation_id: str, *, fresh: bool = False) -> Conversation:
        """A conversation the identity may see; a customer gets not_found for anyone else's.
        `fresh`: checked against SQL first (before a permission check that decides a move)."""
        conversation = await (self.refresh(conversation_id) if fresh else self.get(conversation_id))
        if not identity.is_agent and conversation.user_id != identity.user_id:
            raise NotFound("conversation not found")
        return conversation

    async def view(self, conversation: Conversation) -> PublicConversation:
        """The protocol's C object."""
        last_seq, labels = await self.store.conversations.extras(conversation.id)
        return render.conversation(conversation, last_seq, labels)

    async def list_own(self, identity: Identity, *, state: str | None = None, limit: int = OWN_PAGE,
                       after: Position | None = None) -> tuple[list[PublicConversation], str | None]:
        """A customer's own conversations, newest first (created, then id), and the next page's cursor:
        conversation.list and GET /api/v1/me/conversations. Read from the SQL rows, bounded by the
        owner whatever the cursor says."""
        if identity.role != "customer":
            raise Forbidden("only customers list their own conversations (staff: GET /api/v1/conversations)")
        page = await self.store.listing.page(ConversationFilter(user_id=identity.user_id, state=state),
                                             limit=limit, after=after)
        return page.items, next_cursor(page.next_position)

    async def start(self, identity: Identity, *, metadata: dict[str, Any] | None = None,
                    team_id: str | None = None, user_id: str | None = None) -> Conversation:
        """A new conversation in state `ai`; an admin may start one for another user. A customer's token
        `name` is its `metadata.name` (what the agents see it by) unless the metadata names one."""
        owner = user_id if (user_id and identity.is_admin) else identity.user_id
        if identity.role == "customer" and identity.name and "name" not in (metadata or {}):
            metadata = {**(metadata or {}), "name": identity.name[:MAX_NAME_CHARS]}
        if team_id is not None and not await self.store.teams.exists(team_id):
            raise NotFound(f"team {team_id} not found")
        async with self.quota.starting(identity.user_id):  # the one who starts it, before anything is written
            conversation = await self.repository.create(owner, metadata=metadata, team_id=team_id)
        metrics.CONVERSATIONS_STARTED.inc()
        self._seen(conversation)
        try:  # created: a collaborator's failure (arming its timers) must not make the start an error
            await self.events.emit(ConversationStarted(conversation))
        except Exception as exc:
            log_failure(log, exc, "after the start of %s: a collaborator failed", conversation.id)
        return conversation

    async def fire(self, conversation_id: str, trigger: str, *, actor: Actor, reason: str | None = None,
                   **data: Any) -> Transition:
        """Fire a trigger (compare-and-set), then announce the move to every collaborator."""
        try:
            transition = await self.repository.fire(conversation_id, trigger, actor=actor, reason=reason, **data)
        except ConversationNotFound:
            raise NotFound("conversation not found") from None
        except (InvalidTransition, StaleVersion) as exc:
            log.info("refused %s of %s by %s %s: %s", trigger, conversation_id, actor.type, actor.id or "", exc)
            raise
        metrics.TRANSITIONS.labels(trigger).inc()
        self._seen(transition.after)
        await self.announce(ConversationMoved(transition), "after %s of %s: a collaborator failed", trigger,
                            conversation_id)
        return transition

    async def announce(self, event: object, failure: str, *args: object) -> None:
        """Tell the collaborators of a committed move: what follows must not turn it into an error for the
        caller (a retry would only get `conflict`); a failure here is logged (`failure` % args), and clients
        resume by seq."""
        try:
            await self.events.emit(event)
        except Exception as exc:
            log_failure(log, exc, failure, *args)

    async def fire_quietly(self, conversation_id: str, trigger: str, *, actor: Actor, reason: str,
                           **data: Any) -> Transition | None:
        """Fire unless something else moved the conversation first (then log it and go on)."""
        try:
            return await self.fire(conversation_id, trigger, actor=actor, reason=reason, **data)
        except (InvalidTransition, StaleVersion, NotFound) as exc:
            log.info("%s (%s) of %s skipped: %s", trigger, reason, conversation_id, exc)
            return None

    async def request_handoff(self, identity: Identity, conversation_id: str,
                              reason: str | None = None) -> Conversation:
        """`ai` -> `handoff` on a customer's (or an admin's) request."""
        await self.get_for(identity, conversation_id)
        # the reason code is ours; what the requester wrote is kept after it, never instead of it
        code = "customer_request" if identity.role == "customer" else identity.role
        t = await self.fire(conversation_id, "request_handoff", actor=actor_of(identity),
                            reason=f"{code}: {reason}" if reason else code)
        return t.after

    async def close(self, identity: Identity, conversation_id: str) -> Conversation:
        """-> closed: the customer, the assigned agent (any agent when none is), or an admin."""
        conversation = await self.get_for(identity, conversation_id, fresh=True)
        check_assigned(identity, conversation)
        # fired with the version the permission was checked against: a claim in between is a conflict
        t = await self.fire(conversation_id, "close", actor=actor_of(identity), reason=f"closed by {identity.role}",
                            expect_version=conversation.version)
        return t.after

    async def reopen(self, identity: Identity, conversation: Conversation) -> Conversation:
        """A closed conversation the customer wrote to again goes back to the AI."""
        try:
            t = await self.fire(conversation.id, "reopen", actor=actor_of(identity), reason="customer wrote again")
            return t.after
        except (InvalidTransition, StaleVersion):
            # another tab reopened it first: go on with what is there now
            return await self.get(conversation.id)
