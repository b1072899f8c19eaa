"""What a customer, an agent or an admin can do to a conversation: one path for WebSocket
commands and REST actions. Handlers call these methods; the methods raise domain errors,
never touch a socket, and publish what happened on the bus.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from chat import metrics
from chat.auth import Identity
from chat.bus import Bus
from chat.errors import Forbidden, Invalid, NotFound, TooLarge
from chat.settings import Settings
from chat.store import Message, Store
from chat.store.writer import MessageWriter
from states import ConversationNotFound, InvalidTransition, State, StaleVersion
from states.record import Conversation
from states.repository import Actor, ConversationRepository, Transition

if TYPE_CHECKING:
    from chat.ai_turn import AIRunner
    from chat.presence import Presence
    from chat.routing import Router

log = logging.getLogger(__name__)

MAX_CONTENT_CHARS = 4000

# System messages the customer reads (bilingual: the customers are mostly Chinese-speaking).
SYSTEM_TEXT = {
    "handoff": "正在为您转接人工客服，请稍候。A human agent will take over shortly.",
    "assigned": "人工客服已接入。An agent has joined the conversation.",
    "transferred": "您的对话已转交给另一位客服。Your conversation was transferred to another agent.",
    "requeued": "正在为您转接其他客服，请稍候。We are finding another agent for you.",
    "released": "您的对话已转回智能助手。You are back with the AI assistant.",
    "closed": "对话已结束。The conversation was closed.",
    "no_agent": "暂时没有可用的人工客服，智能助手将继续为您服务。No agent is available right now; the AI assistant will continue.",
}

HANDOFF_REASONS = ("customer_request", "keyword", "ai_decision", "ai_failure", "agent", "admin")


def actor_of(identity: Identity) -> Actor:
    """The transition-log actor for a token holder."""
    return Actor(identity.role, identity.user_id)


def check_content(content: str) -> None:
    """1 to 4000 code points: empty is invalid, longer is too_large."""
    if not content:
        raise Invalid("content must not be empty", {"content": ["Length must be between 1 and 4000."]})
    if len(content) > MAX_CONTENT_CHARS:
        raise TooLarge(f"content is longer than {MAX_CONTENT_CHARS} characters", {"content": ["too long"]})


class ChatService:
    """The conversation operations shared by every transport."""

    def __init__(self, settings: Settings, conversations: ConversationRepository, store: Store, bus: Bus):
        self.settings = settings
        self.conversations = conversations
        self.store = store
        self.writer = MessageWriter(store)
        self.bus = bus
        self.ai: AIRunner | None = None  # set by the app once the provider is ready
        self.presence: Presence | None = None  # set by the app (agents)
        self.router: Router | None = None
        self._phrases = tuple(p.casefold() for p in settings.handoff_phrases)
        self._known_users: set[str] = set()

    # --- reading ---------------------------------------------------------------------------

    async def public(self, conversation: Conversation) -> dict:
        """The protocol's C object."""
        last_seq, labels = await self.store.conversation_extras(conversation.id)
        return {
            "id": conversation.id,
            "user_id": conversation.user_id,
            "state": conversation.state,
            "agent_type": conversation.agent_type,
            "agent_id": conversation.agent_id,
            "team_id": conversation.team_id,
            "version": conversation.version,
            "last_seq": last_seq,
            "labels": labels,
            "metadata": conversation.metadata,
            "created_at": conversation.created_at,
            "updated_at": conversation.updated_at,
        }

    async def get_for(self, identity: Identity, conversation_id: str) -> Conversation:
        """A conversation the identity may see; a customer gets not_found for anyone else's."""
        try:
            conversation = await self.conversations.get(conversation_id)
        except ConversationNotFound:
            raise NotFound("conversation not found") from None
        if not identity.is_agent and conversation.user_id != identity.user_id:
            raise NotFound("conversation not found")
        return conversation

    async def messages_for(self, identity: Identity, conversation_id: str, after_seq: int = 0,
                           limit: int | None = None) -> list[Message]:
        """Messages after a seq; private notes only for agents and admins."""
        return await self.store.list_messages(
            conversation_id, after_seq=after_seq, limit=limit, include_private=identity.is_agent
        )

    # --- starting --------------------------------------------------------------------------

    async def start(self, identity: Identity, *, metadata: dict | None = None, team_id: str | None = None,
                    user_id: str | None = None) -> Conversation:
        """A new conversation in state `ai`; an admin may start one for another user."""
        owner = user_id if (user_id and identity.is_admin) else identity.user_id
        if team_id is not None and not await self.store.team_exists(team_id):
            raise NotFound(f"team {team_id} not found")
        conversation = await self.conversations.create(owner, metadata=metadata, team_id=team_id)
        metrics.CONVERSATIONS_STARTED.inc()
        return conversation

    # --- transitions -----------------------------------------------------------------------

    async def transition(
        self,
        conversation_id: str,
        trigger: str,
        *,
        actor: Actor,
        reason: str | None = None,
        system_text: str | None = None,
        **data,
    ) -> Transition:
        """Fire a trigger, then tell everyone concerned: subscribers, the queue, the customer."""
        try:
            transition = await self.conversations.fire(conversation_id, trigger, actor=actor, reason=reason, **data)
        except ConversationNotFound:
            raise NotFound("conversation not found") from None
        metrics.TRANSITIONS.labels(trigger).inc()
        after = transition.after
        if transition.before.state == State.AI.value and self.ai is not None:
            self.ai.cancel(conversation_id)  # a takeover stops the reply being generated here
        # the transition is committed: what follows must not turn it into an error for the caller
        # (a retry would only get `conflict`); a failure here is logged, and clients resume by seq
        load_dropped = False
        try:
            load_dropped = await self.presence.track(transition.before, after) if self.presence else False
            await self.publish_updated(transition)
            if system_text:
                await self.post_system(after, system_text)
        except Exception:
            log.exception("after %s of %s: tracking or notifying failed", trigger, conversation_id)
        if self.router is not None and (load_dropped or after.state == State.HANDOFF.value):
            self.router.kick()
        return transition

    async def publish(self, conversation: Conversation, type_: str, data: dict, *, agents_only: bool = False,
                      skip: str | None = None) -> None:
        """An event to the conversation's subscribers and its customer's sockets (every instance)."""
        await self.bus.publish(
            {
                "to": "conversation",
                "conversation_id": conversation.id,
                "owner": conversation.user_id,
                "agents_only": agents_only,
                "skip": skip,
                "frame": {"type": type_, "data": data},
            }
        )

    async def publish_updated(self, transition: Transition) -> None:
        """conversation.updated to subscribers, and to agents when the queue changed."""
        after = transition.after
        data = {
            "conversation": await self.public(after),
            "previous_state": transition.previous_state,
            "reason": transition.reason,
        }
        await self.publish(after, "conversation.updated", data)
        if State.HANDOFF.value in (transition.before.state, after.state):
            await self.bus.publish(
                {"to": "agents", "team_id": after.team_id, "frame": {"type": "conversation.updated", "data": data}}
            )

    async def post_system(self, conversation: Conversation, text: str) -> Message:
        """A system message the customer can read."""
        message, _ = await self._append(conversation, sender_type="system", content=text)
        await self.publish_message(conversation, message)
        return message

    async def publish_message(self, conversation: Conversation, message: Message) -> None:
        """message.created to the conversation's subscribers (private notes: agents only)."""
        metrics.MESSAGES.labels(message.sender_type).inc()
        await self.publish(
            conversation,
            "message.created",
            {"conversation_id": conversation.id, "message": message.to_dict()},
            agents_only=message.private,
        )

    async def _append(self, conversation: Conversation, **fields) -> tuple[Message, bool]:
        """Store through the group-commit writer (the AI's guarded replies go to the store directly)."""
        try:
            return await self.writer.append(conversation.id, **fields)
        except ConversationNotFound:
            # a migrated record touched for the first time has no SQL row yet
            await self.store.ensure_conversation(conversation)
            return await self.writer.append(conversation.id, **fields)

    async def request_handoff(self, identity: Identity, conversation_id: str, reason: str | None = None) -> Conversation:
        """`ai` -> `handoff` on a customer's (or an admin's) request."""
        await self.get_for(identity, conversation_id)
        # the reason code is ours; what the requester wrote is kept after it, never instead of it
        code = "customer_request" if identity.role == "customer" else identity.role
        t = await self.transition(
            conversation_id,
            "request_handoff",
            actor=actor_of(identity),
            reason=f"{code}: {reason}" if reason else code,
            system_text=SYSTEM_TEXT["handoff"],
        )
        return t.after

    async def close(self, identity: Identity, conversation_id: str) -> Conversation:
        """-> closed: the customer, the assigned agent (any agent when none is), or an admin."""
        conversation = await self.get_for(identity, conversation_id)
        self._check_assigned(identity, conversation)
        t = await self.transition(
            conversation_id,
            "close",
            actor=actor_of(identity),
            reason=f"closed by {identity.role}",
            system_text=SYSTEM_TEXT["closed"],
        )
        return t.after

    # --- agents: claim, assign, release, transfer, labels ------------------------------

    async def remember(self, identity: Identity) -> None:
        """Keep agents and admins in `users` so they can be named in assign and transfer."""
        if identity.is_agent and identity.user_id not in self._known_users:
            await self.store.remember_user(identity.user_id, identity.role, identity.name)
            self._known_users.add(identity.user_id)

    async def _notify_assigned(self, conversation: Conversation, *, event: bool = True) -> None:
        """Subscribe all of the agent's sockets (every instance) and, unless it claimed the
        conversation itself, send it conversation.assigned."""
        frame = (
            {"type": "conversation.assigned", "data": {"conversation": await self.public(conversation)}}
            if event
            else None
        )
        await self.bus.publish(
            {"to": "user", "user_id": conversation.agent_id, "agents_only": True, "subscribe": conversation.id,
             "frame": frame}
        )

    async def claim(self, identity: Identity, conversation_id: str) -> Conversation:
        """`ai` or `handoff` -> `human` for this agent; racing agents: one wins, the rest conflict."""
        await self.get_for(identity, conversation_id)
        await self.remember(identity)
        t = await self.transition(
            conversation_id,
            "assign",
            actor=actor_of(identity),
            reason="claim",
            system_text=SYSTEM_TEXT["assigned"],
            expect_states=(State.AI.value, State.HANDOFF.value),
            agent_id=identity.user_id,
        )
        await self._notify_assigned(t.after, event=False)
        return t.after

    async def set_presence(self, identity: Identity, status: str) -> None:
        """online / away; going online routes waiting conversations at once."""
        await self.remember(identity)
        await self.presence.set_status(identity, status)
        if status == "online" and self.router is not None:
            self.router.kick()

    async def route_to(self, conversation_id: str, agent_id: str) -> Conversation:
        """Routing: a waiting (`handoff`) conversation to an agent whose slot is reserved."""
        t = await self.transition(
            conversation_id, "assign", actor=Actor("system"), reason="routing",
            system_text=SYSTEM_TEXT["assigned"], expect_states=(State.HANDOFF.value,), agent_id=agent_id,
        )
        await self._notify_assigned(t.after)
        return t.after

    async def requeue_from_gone_agent(self, conversation_id: str, agent_id: str) -> None:
        """The assigned agent has been offline past the grace period: back to the queue."""
        try:
            current = await self.conversations.get(conversation_id)
            if current.state != State.HUMAN.value or current.agent_id != agent_id:
                if self.presence is not None:
                    await self.presence.release_slot(agent_id, conversation_id)
                return
            await self.transition(
                conversation_id, "requeue", actor=Actor("system"), reason="agent_offline",
                system_text=SYSTEM_TEXT["requeued"], expect_version=current.version,
            )
        except (InvalidTransition, StaleVersion, ConversationNotFound, NotFound) as exc:
            log.info("requeue of %s skipped: %s", conversation_id, exc)

    async def release_after_wait(self, conversation_id: str) -> None:
        """Nobody took the conversation in time: back to the AI, with a message."""
        try:
            await self.transition(
                conversation_id, "release", actor=Actor("system"), reason="handoff_timeout",
                system_text=SYSTEM_TEXT["no_agent"], expect_states=(State.HANDOFF.value,),
            )
        except (InvalidTransition, StaleVersion, NotFound) as exc:
            log.info("wait-timeout release of %s skipped: %s", conversation_id, exc)

    async def queue(self, identity: Identity, team_id: str | None) -> list[dict]:
        """Unassigned conversations in handoff, longest waiting first (one team, or all)."""
        if team_id is not None and not await self.store.team_exists(team_id):
            raise NotFound(f"team {team_id} not found")
        waiting = await self.store.handoff_queue(team_id)
        out = []
        for conversation_id, _team, _since in waiting:
            try:
                out.append(await self.public(await self.conversations.get(conversation_id)))
            except ConversationNotFound:
                continue
        return out

    async def assign(self, identity: Identity, conversation_id: str, agent_id: str, *, reason: str = "assign") -> Conversation:
        """Give the conversation to a named agent (an admin's assign, or routing)."""
        await self.get_for(identity, conversation_id)
        if not await self.store.agent_exists(agent_id):
            raise NotFound(f"agent {agent_id} not found")
        t = await self.transition(
            conversation_id,
            "assign",
            actor=actor_of(identity),
            reason=reason,
            system_text=SYSTEM_TEXT["assigned"],
            agent_id=agent_id,
        )
        await self._notify_assigned(t.after)
        return t.after

    def _check_assigned(self, identity: Identity, conversation: Conversation) -> None:
        """Agents act only on their own conversations, or on one nobody is assigned to."""
        if identity.role == "agent" and conversation.agent_id not in (None, identity.user_id):
            raise Forbidden("only the assigned agent or an admin may do this")

    async def release(self, identity: Identity, conversation_id: str) -> Conversation:
        """`human` (or `handoff`) -> `ai`: hand back to the AI."""
        conversation = await self.get_for(identity, conversation_id)
        self._check_assigned(identity, conversation)
        t = await self.transition(
            conversation_id, "release", actor=actor_of(identity), reason="release",
            system_text=SYSTEM_TEXT["released"],
        )
        return t.after

    async def transfer(self, identity: Identity, conversation_id: str, *, agent_id: str | None = None,
                       team_id: str | None = None) -> Conversation:
        """To an agent (stays `human`, reassigned) or to a team (`human` -> `handoff`, queued)."""
        conversation = await self.get_for(identity, conversation_id)
        self._check_assigned(identity, conversation)
        if conversation.state != State.HUMAN.value:
            raise InvalidTransition("transfer", conversation.state)
        if agent_id is not None:
            if not await self.store.agent_exists(agent_id):
                raise NotFound(f"agent {agent_id} not found")
            t = await self.transition(
                conversation_id, "assign", actor=actor_of(identity), reason="transfer",
                system_text=SYSTEM_TEXT["transferred"], expect_version=conversation.version, agent_id=agent_id,
            )
            await self._notify_assigned(t.after)
            return t.after
        if team_id is None or not await self.store.team_exists(team_id):
            raise NotFound(f"team {team_id} not found")
        t = await self.transition(
            conversation_id, "requeue", actor=actor_of(identity), reason="transfer",
            system_text=SYSTEM_TEXT["requeued"], expect_version=conversation.version, team_id=team_id,
        )
        return t.after

    async def set_labels(self, identity: Identity, conversation_id: str, titles: list[str]) -> Conversation:
        """Replace the labels (by title); unknown titles are not_found and change nothing."""
        conversation = await self.get_for(identity, conversation_id)
        await self.store.ensure_conversation(conversation)
        missing = await self.store.set_labels(conversation_id, titles)
        if missing:
            raise NotFound(f"unknown label(s): {', '.join(missing)}", {"labels": [f"unknown: {t}" for t in missing]})
        await self.publish(
            conversation,
            "conversation.updated",
            {"conversation": await self.public(conversation), "previous_state": conversation.state, "reason": "labels"},
        )
        return conversation

    # --- messages --------------------------------------------------------------------------

    async def send_message(
        self,
        identity: Identity,
        conversation_id: str,
        *,
        content: str,
        client_msg_id: str | None,
        private: bool = False,
    ) -> Message:
        """Store a message (idempotent on client_msg_id) and set off what follows it."""
        check_content(content)
        conversation = await self.get_for(identity, conversation_id)
        if private and not identity.is_agent:
            raise Invalid("only agents may send private notes", {"private": ["Not allowed for customers."]})
        if client_msg_id is not None and (identity.is_agent or conversation.state == State.CLOSED.value):
            # a resend must not reopen a closed conversation nor be refused to an agent reassigned
            # meanwhile; elsewhere the unique key catches it at the insert (one round trip less)
            sender_type = "agent" if identity.is_agent else "customer"
            existing = await self.store.find_message(conversation_id, sender_type, identity.user_id, client_msg_id)
            if existing is not None:
                return existing
        if identity.is_agent:
            return await self._agent_message(identity, conversation, content, client_msg_id, private)
        return await self._customer_message(identity, conversation, content, client_msg_id)

    async def _customer_message(self, identity: Identity, conversation: Conversation, content: str,
                                client_msg_id: str | None) -> Message:
        if conversation.state == State.CLOSED.value:
            conversation = await self._reopen(identity, conversation)
        message, created = await self._append(
            conversation, sender_type="customer", sender_id=identity.user_id, content=content,
            client_msg_id=client_msg_id,
        )
        if not created:
            return message
        await self.publish_message(conversation, message)
        if conversation.state == State.AI.value:
            if self.wants_human(content):
                await self._handoff_quietly(conversation.id, "keyword", actor_of(identity))
            elif self.ai is not None:
                self.ai.schedule(conversation.id)
        return message

    async def _reopen(self, identity: Identity, conversation: Conversation) -> Conversation:
        try:
            t = await self.transition(conversation.id, "reopen", actor=actor_of(identity), reason="customer wrote again")
            return t.after
        except (InvalidTransition, StaleVersion):
            # another tab reopened it first: go on with what is there now
            return await self.conversations.get(conversation.id)

    async def _handoff_quietly(self, conversation_id: str, reason: str, actor: Actor) -> None:
        """Hand over to a human unless something else moved the conversation first."""
        try:
            await self.transition(
                conversation_id, "request_handoff", actor=actor, reason=reason, system_text=SYSTEM_TEXT["handoff"]
            )
        except (InvalidTransition, StaleVersion) as exc:
            log.info("handoff (%s) of %s not needed: %s", reason, conversation_id, exc)

    def wants_human(self, content: str) -> bool:
        """Does the message contain one of the configured handoff phrases (case-insensitive)?"""
        text = content.casefold()
        return any(phrase in text for phrase in self._phrases)

    async def _agent_message(self, identity: Identity, conversation: Conversation, content: str,
                             client_msg_id: str | None, private: bool) -> Message:
        if not private and not (conversation.state == State.HUMAN.value and conversation.agent_id == identity.user_id):
            raise Forbidden("only the assigned agent may send a message to the customer; add a private note instead")
        message, created = await self._append(
            conversation, sender_type="agent", sender_id=identity.user_id, content=content,
            client_msg_id=client_msg_id, private=private,
        )
        if created:
            await self.publish_message(conversation, message)
        return message

    async def typing(self, identity: Identity, conversation_id: str, on: bool, peer_id: str | None) -> None:
        """Tell the other subscribers that someone is typing."""
        conversation = await self.get_for(identity, conversation_id)
        sender_type = "agent" if identity.is_agent else "customer"
        await self.publish(
            conversation,
            "typing",
            {"conversation_id": conversation_id, "sender_type": sender_type, "on": on},
            skip=peer_id,
        )
