"""What a customer, an agent or an admin can do to a conversation: one path for WebSocket
commands and REST actions, by resource. The operations raise domain errors, never touch a
socket, and announce what happened as typed events (chat.events) that collaborators subscribe to.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from chat.conversations.assignment import Assignment
from chat.conversations.canned import Canned
from chat.conversations.csat import Csat
from chat.conversations.hours import OfficeHours
from chat.conversations.labels import Labels
from chat.conversations.lifecycle import Conversations, actor_of, check_assigned
from chat.conversations.messages import MAX_CONTENT_CHARS, Messages, check_content
from chat.conversations.staff import Staff
from chat.events import Events
from chat.presence import Presence
from chat.quotas import ConversationQuota
from chat.settings import Settings
from chat.store import Store
from states.clock import now_ms
from states.repository import ConversationRepository


@dataclass(frozen=True)
class Operations:
    """Every conversation operation, by resource; what handlers of both transports call."""

    conversations: Conversations
    messages: Messages
    assignment: Assignment
    labels: Labels
    staff: Staff
    presence: Presence
    csat: Csat
    canned: Canned


def build_operations(repository: ConversationRepository, store: Store, events: Events, presence: Presence,
                     settings: Settings, *, quota: ConversationQuota, clock: Callable[[], int] = now_ms) -> Operations:
    """The operations in dependency order (`clock`: what business hours are read at)."""
    conversations = Conversations(repository, store, events, quota)
    staff = Staff(store)
    return Operations(
        conversations=conversations,
        messages=Messages(conversations, store, events, settings.handoff_phrases, OfficeHours.of(settings, clock)),
        assignment=Assignment(conversations, staff, store, events),
        labels=Labels(conversations, store, events),
        staff=staff,
        presence=presence,
        csat=Csat(conversations, store, events, enabled=settings.csat_enabled),
        canned=Canned(conversations, store),
    )


__all__ = [
    "MAX_CONTENT_CHARS",
    "Assignment",
    "Canned",
    "Conversations",
    "Csat",
    "Labels",
    "Messages",
    "OfficeHours",
    "Operations",
    "Staff",
    "actor_of",
    "build_operations",
    "check_assigned",
    "check_content",
]
