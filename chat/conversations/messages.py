"""Messages: the one write path for every message (customer, agent, system notice, AI reply),
the rules of who may write what, and typing."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
from typing import Any

from prometheus_client import Counter

from chat import metrics
from chat.auth import Identity
from chat.conversations.hours import OfficeHours
from chat.conversations.lifecycle import Conversations
from chat.conversations.texts import notice_for
from chat.errors import Forbidden, Invalid, TooLarge, log_failure
from chat.events import ConversationMoved, CustomerWriting, CustomerWrote, Events, MessageStored, Typing
from chat.store import Message, Store
from chat.store.messages import Guard, NewMessage
from chat.store.writer import MessageWriter
from states import ConversationNotFound, StaleVersion, State
from states.record import Conversation
from states.repository import Actor

log = logging.getLogger(__name__)

MAX_CONTENT_CHARS = 4000
NOT_CLOSED = Guard(not_state=State.CLOSED)  # a customer's message never goes into a closed conversation


@functools.cache
def _messages_counter(sender_type: str) -> Counter:
    """The labelled counter of a sender type (four of them), looked up once."""
    return metrics.MESSAGES.labels(sender_type)


def at_version(conversation: Conversation) -> Guard:
    """Written only while the SQL row is still at this record's state and version."""
    return Guard(state=conversation.state, version=conversation.version)


def sender_type_of(identity: Identity) -> str:
    """What a message written with this identity is stored as."""
    return "agent" if identity.is_agent else "customer"


def writes_to_customer(identity: Identity, conversation: Conversation) -> bool:
    """An agent writes to the customer (not a private note) only while assigned in `human`."""
    return conversation.state == State.HUMAN and conversation.agent_id == identity.user_id


def check_content(content: str) -> None:
    """1 to 4000 code points: empty is invalid, longer is too_large."""
    if not content:
        raise Invalid("content must not be empty", {"content": ["Length must be between 1 and 4000."]})
    if len(content) > MAX_CONTENT_CHARS:
        raise TooLarge(f"content is longer than {MAX_CONTENT_CHARS} characters", {"content": ["too long"]})


class Messages:
    """Storing and reading messages of conversations."""

    def __init__(self, conversations: Conversations, store: Store, events: Events,
                 handoff_phrases: tuple[str, ...], office_hours: OfficeHours) -> None:
        self.conversations = conversations
        self.store = store
        self.events = events
        self.office_hours = office_hours
        self.writer = MessageWriter(store.messages)
        self._phrases = tuple(p.casefold() for p in handoff_phrases)

    async def append(self, conversation: Conversation, *, guard: Guard | None = None, answering: int | None = None,
                     **fields: Any) -> tuple[Message, bool]:
        """Store a message and announce it when it is new; return it and whether it is new.

        Every message goes through the group-commit writer. With a guard the write happens only
        while the SQL row still matches it (`answering`, for the AI's reply on a history read up to
        that seq: the state and version the conversation was read with, and no AI message after
        it, another turn's); otherwise the live record is checked against SQL (and repaired), StaleVersion is
        raised and nothing is written.
        """
        if answering is not None:
            guard = dataclasses.replace(at_version(conversation), no_ai_after=answering)
        draft = NewMessage(conversation.id, guard=guard, **fields)
        try:
            try:
                message, created = await self.writer.append(draft)
            except ConversationNotFound:
                # a migrated record touched for the first time has no SQL row yet
                await self.store.conversations.ensure(conversation)
                message, created = await self.writer.append(draft)
        except StaleVersion:
            await self.conversations.refresh(conversation.id)
            raise
        if created:
            await self.announce(conversation, message)
        return message, created

    async def announce(self, conversation: Conversation, message: Message) -> None:
        """A new message was stored: count it, and tell every subscriber (MessageStored)."""
        _messages_counter(message.sender_type).inc()
        await self.events.emit(MessageStored(conversation, message))

    async def list_for(self, identity: Identity, conversation_id: str, after_seq: int = 0,
                       limit: int | None = None) -> list[Message]:
        """Messages after a seq; private notes only for agents and admins."""
        return await self.store.messages.list_of(
            conversation_id, after_seq=after_seq, limit=limit, include_private=identity.is_agent
        )

    async def on_moved(self, event: ConversationMoved) -> None:
        """Tell the customer what the move means for them (a system message). A move into the queue
        outside business hours says when agents are back instead (one notice: the AI answers only
        messages written after it, so the two never cross)."""
        queued = event.transition.after.state == State.HANDOFF
        text = notice_for(event.transition, self.office_hours.back_at() if queued else None)
        if text is not None:
            await self.append(event.transition.after, sender_type="system", content=text)

    async def send(self, identity: Identity, conversation_id: str, *, content: str, client_msg_id: str | None,
                   private: bool = False) -> Message:
        """Store a message (idempotent on client_msg_id) and set off what follows it."""
        message, _ = await self.deliver(identity, conversation_id, content=content, client_msg_id=client_msg_id,
                                        private=private)
        return message

    async def deliver(self, identity: Identity, conversation_id: str, *, content: str, client_msg_id: str | None,
                      private: bool = False) -> tuple[Message, bool]:
        """`send`, also telling whether the message is new (False: a resend returned the stored one);
        the WebSocket's message.send and the REST POST .../messages both come here."""
        check_content(content)
        known = self.conversations.last_seen(identity, conversation_id)
        if known is not None:
            sent = await self._at_last_seen(identity, known, content, client_msg_id, private)
            if sent is not None:
                return sent
        conversation = await self.conversations.get_for(identity, conversation_id)
        if private and not identity.is_agent:
            raise Invalid("only agents may send private notes", {"private": ["Not allowed for customers."]})
        if client_msg_id is not None and (identity.is_agent or conversation.state == State.CLOSED):
            # a resend must not reopen a closed conversation nor be refused to an agent reassigned
            # meanwhile; elsewhere the unique key catches it at the insert (one round trip less)
            existing = await self.store.messages.find(conversation_id, sender_type_of(identity), identity.user_id,
                                                      client_msg_id)
            if existing is not None:
                return existing, False
        if identity.is_agent:
            return await self._from_agent(identity, conversation, content, client_msg_id, private)
        return await self._from_customer(identity, conversation, content, client_msg_id)

    async def _at_last_seen(self, identity: Identity, known: Conversation, content: str, client_msg_id: str | None,
                            private: bool) -> tuple[Message, bool] | None:
        """The message path without reading the live record: written under a guard on the state and
        version this instance last saw, which the SQL row checks at the insert. None when that record
        does not allow the message as it is or is behind (the full path reads it and decides)."""
        if identity.is_agent:
            allowed = private or writes_to_customer(identity, known)
        else:
            allowed = not private and known.state != State.CLOSED
        if not allowed:
            return None
        draft = NewMessage(known.id, sender_type_of(identity), content, identity.user_id,
                           private, client_msg_id, at_version(known))
        writing = await self._customer_writing(identity, known, content)
        created = False
        try:
            message, created = await self.writer.append(draft)
        except ConversationNotFound:
            return None  # no SQL row yet (a migrated record): the full path creates it
        except StaleVersion:
            # moved since (maybe by another instance): read it checked against SQL, which also
            # repairs a live record that is behind, so the next message takes this path again
            await self.conversations.refresh(known.id)
            return None
        finally:
            if writing is not None:  # its early AI request is dropped unless the message was stored
                writing.stored.set_result(created)
        if created:
            await self.announce(known, message)
            if not identity.is_agent:
                await self._customer_wrote(identity, known, message)
        return message, created

    async def _customer_writing(self, identity: Identity, known: Conversation, content: str) -> CustomerWriting | None:
        """Announce a customer's message to the AI before its commit (the provider may be asked while it
        commits); None for any other message."""
        if identity.is_agent or known.state != State.AI or self.wants_human(content):
            return None
        writing = CustomerWriting(known, content, asyncio.get_running_loop().create_future())
        await self.events.emit(writing)
        return writing

    async def _from_customer(self, identity: Identity, conversation: Conversation, content: str,
                             client_msg_id: str | None) -> tuple[Message, bool]:
        for attempt in range(2):
            if conversation.state == State.CLOSED:
                conversation = await self.conversations.reopen(identity, conversation)
            try:
                # never into a closed conversation: a close that wins the race reopens it once more
                message, created = await self.append(
                    conversation, guard=NOT_CLOSED, sender_type="customer",
                    sender_id=identity.user_id, content=content, client_msg_id=client_msg_id,
                )
                break
            except StaleVersion:
                if attempt:
                    raise
                conversation = await self.conversations.get(conversation.id)
        if created:
            await self._customer_wrote(identity, conversation, message)
        return message, created

    def ai_answers(self, state: str) -> bool:
        """Does the AI answer a customer in this state now (`ai`; `handoff` outside business hours)?"""
        return self.office_hours.ai_answers(state)

    async def _customer_wrote(self, identity: Identity, conversation: Conversation, message: Message) -> None:
        """In `ai`, a customer's new message asks for a human (a handoff phrase) or for the AI's answer;
        in `handoff` outside business hours the AI answers it too."""
        if conversation.state != State.AI:
            if self.ai_answers(conversation.state):
                await self.events.emit(CustomerWrote(conversation, message))
            return
        try:
            if await self.handoff_asked(conversation, message):
                return
        except Exception as exc:  # the message is stored: the AI's next look hands it over (handoff_asked)
            log_failure(log, exc, "the handoff %s asked for in %s is left to the AI's next look", identity.user_id,
                        conversation.id)
            return
        await self.events.emit(CustomerWrote(conversation, message))

    async def handoff_asked(self, conversation: Conversation, message: Message, *, late: bool = False) -> bool:
        """A customer's message in `ai` holding a handoff phrase moves the conversation to `handoff` (reason
        `keyword`) instead of being answered: True when it holds one. `late`: an AI turn found it unanswered;
        it hands over only when the conversation has not moved since (the move failed after the message was
        stored), not when it was handed over and then given back to the AI."""
        if conversation.state != State.AI or not self.wants_human(message.content):
            return False
        if late and await self.store.events.moved_since(conversation.id, message.created_ms):
            return False
        await self.conversations.fire_quietly(conversation.id, "request_handoff",
                                              actor=Actor("customer", message.sender_id), reason="keyword")
        return True

    async def _from_agent(self, identity: Identity, conversation: Conversation, content: str,
                          client_msg_id: str | None, private: bool) -> tuple[Message, bool]:
        if not private and not writes_to_customer(identity, conversation):
            # refused only on the record checked against SQL: one behind it (Redis restored from an older
            # snapshot) refused the agent the conversation was given to meanwhile
            conversation = await self.conversations.refresh(conversation.id)
        for attempt in range(2):
            if not private and not writes_to_customer(identity, conversation):
                raise Forbidden("only the assigned agent may send a message to the customer; add a private note "
                                "instead")
            # stored only while this agent is still the assignee (checked on the SQL row at the insert)
            guard = None if private else Guard(state=State.HUMAN, agent_id=identity.user_id)
            try:
                return await self.append(
                    conversation, guard=guard, sender_type="agent", sender_id=identity.user_id, content=content,
                    client_msg_id=client_msg_id, private=private,
                )
            except StaleVersion:
                if attempt:
                    raise
                conversation = await self.conversations.get(conversation.id)  # repaired by append
        raise AssertionError("not reached")

    def wants_human(self, content: str) -> bool:
        """Does the message contain one of the configured handoff phrases (case-insensitive)?"""
        text = content.casefold()
        return any(phrase in text for phrase in self._phrases)

    async def typing(self, identity: Identity, conversation_id: str, on: bool) -> None:
        """Tell the subscribers other than the typist (none of its tabs) that it is typing (only the
        conversation's id and owner matter: this instance's last seen record does, when there is one)."""
        conversation = (self.conversations.last_seen(identity, conversation_id)
                        or await self.conversations.get_for(identity, conversation_id))
        await self.events.emit(Typing(conversation, sender_type_of(identity), on, identity.speaker))
