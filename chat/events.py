"""What happened to a conversation, announced in-process: typed domain events and their dispatcher.

The conversation operations (chat.conversations) emit these; the app factory subscribes the
collaborators: presence keeps agent loads, the router routes, the AI runner answers or stops,
the bus publisher tells the sockets of every instance. No operation calls a collaborator
directly, so each can be built before the ones that listen to it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from chat.auth import Identity
from chat.store import Message
from states import State
from states.record import Conversation
from states.repository import Transition

log = logging.getLogger(__name__)

_AI_ANSWERS = (State.AI, State.HANDOFF)  # the states an AI turn may run in


@dataclass(frozen=True, slots=True)
class ConversationMoved:
    """A transition was committed (the live record and the SQL log agree)."""

    transition: Transition

    @property
    def freed_agent(self) -> str | None:
        """The agent that no longer holds the conversation after this move, if any."""
        before, after = self.transition.before, self.transition.after
        if before.state != State.HUMAN or not before.agent_id:
            return None
        if after.state == State.HUMAN and after.agent_id == before.agent_id:
            return None
        return before.agent_id

    @property
    def left_ai(self) -> bool:
        """The AI may have been answering and is not any more (a takeover, a handoff, a close): it
        answers in `ai`, and in `handoff` outside business hours (chat.conversations.hours)."""
        return self.transition.before.state in _AI_ANSWERS and self.transition.after.state != State.AI

    @property
    def touches_queue(self) -> bool:
        """The conversation entered or left the waiting queue (`handoff`)."""
        return State.HANDOFF in (self.transition.before.state, self.transition.after.state)


@dataclass(frozen=True, slots=True)
class ConversationStarted:
    """A conversation was created (in `ai`, version 0): no transition announces that."""

    conversation: Conversation


@dataclass(frozen=True, slots=True)
class SlaBreached:
    """The assigned agent did not answer within SLA_FIRST_RESPONSE_S of business time (logged, not a
    transition): for metrics and, later, the `sla.breached` webhook."""

    conversation: Conversation
    agent_id: str | None
    entered_ms: int
    due_ms: int


@dataclass(frozen=True, slots=True)
class ConversationChanged:
    """Something shown in C changed without a transition (labels)."""

    conversation: Conversation
    reason: str


@dataclass(frozen=True, slots=True)
class ConversationAssigned:
    """An agent now holds the conversation; `tell` is False when it claimed it itself."""

    conversation: Conversation
    agent_id: str
    tell: bool


@dataclass(frozen=True, slots=True)
class MessageStored:
    """A message was committed with its seq."""

    conversation: Conversation
    message: Message


@dataclass(frozen=True, slots=True)
class CustomerWrote:
    """A customer message in `ai` that the AI should answer."""

    conversation: Conversation
    message: Message


@dataclass(frozen=True, slots=True)
class CustomerWriting:
    """A customer message to the AI about to be stored, announced before its commit so the provider may
    be asked ahead of it (chat.ai.early); `stored` resolves to whether it was (False: a resend of a
    stored one, a failed write, or a conversation that moved meanwhile)."""

    conversation: Conversation
    content: str
    stored: asyncio.Future[bool]


@dataclass(frozen=True, slots=True)
class Typing:
    """Someone is typing (or stopped); `skip` is who (Identity.speaker): none of its sockets hears it back."""

    conversation: Conversation
    sender_type: str
    on: bool
    skip: str | None


@dataclass(frozen=True, slots=True)
class CsatSubmitted:
    """A customer rated a close (`rating`: the stored row, chat.store.csat.CSAT_FIELDS); the hook of the
    `csat.submitted` webhook event."""

    conversation: Conversation
    rating: dict[str, Any]


@dataclass(frozen=True, slots=True)
class AIFailed:
    """An AI turn failed below the handoff threshold; nothing was stored."""

    conversation: Conversation
    reply_to: str
    code: str


@dataclass(frozen=True, slots=True)
class AgentStatusChanged:
    """An agent went online (with its teams), away, or offline (gone past the grace period)."""

    agent_id: str
    status: str
    teams: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class SessionOpened:
    """A socket authenticated on this instance."""

    identity: Identity


@dataclass(frozen=True, slots=True)
class SessionClosed:
    """An authenticated socket of this instance closed."""

    identity: Identity


E = TypeVar("E")
Handler = Callable[[Any], Awaitable[None] | None]


class Events:
    """In-process dispatch by event type, in subscription order.

    Handlers may be plain functions or coroutine functions. A handler's exception reaches the
    emitter (the operations decide what a failure after a commit means) and stops the ones after it.
    """

    def __init__(self) -> None:
        self._handlers: dict[type, list[Handler]] = {}

    def subscribe(self, event_type: type[E], handler: Callable[[E], Awaitable[None] | None]) -> None:
        """Call `handler` with every event of this type."""
        self._handlers.setdefault(event_type, []).append(handler)

    async def emit(self, event: object) -> None:
        """Hand the event to its subscribers, one after the other."""
        for handler in self._handlers.get(type(event), ()):
            result = handler(event)
            if result is not None:
                await result
