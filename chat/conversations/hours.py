"""Business hours at the service's clock: is anyone expected now, when next, and whether the AI answers
a conversation in a given state (PROTOCOL 4.1: outside business hours the AI keeps answering a
conversation that waits in the queue)."""

from __future__ import annotations

from collections.abc import Callable

from chat.settings import Settings
from states.business_hours import BusinessHours
from states.clock import now_ms
from states.machine import State


class OfficeHours:
    """BUSINESS_HOURS read at the injected clock (tests drive it in simulated time)."""

    def __init__(self, hours: BusinessHours, clock: Callable[[], int] = now_ms) -> None:
        self.hours = hours
        self.clock = clock

    @classmethod
    def of(cls, settings: Settings, clock: Callable[[], int] = now_ms) -> OfficeHours:
        """BUSINESS_HOURS, BUSINESS_TZ and HOLIDAYS as one object (always open when unset)."""
        return cls(BusinessHours(settings.business_hours, settings.business_tz, frozenset(settings.holidays)), clock)

    def open_now(self) -> bool:
        """Are agents expected right now?"""
        return self.hours.always_open or self.hours.is_open(self.clock())

    def back_at(self) -> tuple[str, str] | None:
        """(Chinese, English) text of the next opening while closed; None while open."""
        if self.open_now():
            return None
        return self.hours.local_text(self.hours.next_open_ms(self.clock()))

    def ai_answers(self, state: str) -> bool:
        """The AI answers customers in `ai`, and in `handoff` while no agent is expected (the
        conversation keeps its place in the queue; the AI's reply is stored only while it is still
        unassigned at the version it was read with)."""
        return state == State.AI or (state == State.HANDOFF and not self.open_now())
