"""The state timers of PROTOCOL 4.1 at work: armed from the operations' events, fired by one loop per
instance from the shared due-time index (states/timers.py), each armed timer by one instance at a time.

Arming: a move disarms the timers of the version it leaves and arms those of the state it enters
(due from the move's time; business time for the SLA and the queue wait); a start arms the `ai`
ones; a customer message arms the idle timers again from its time (at most once per REARM_EVERY_MS
of a conversation's version on an instance: one armed a little early finds the newer message when it
fires, below); an agent's first reply ends the SLA timer. Firing: the loop sleeps until the earliest
due time (at most POLL_S: another instance may arm an earlier one) or a wake-up, claims what is due
and applies each with the version it was armed with: a conversation that moved on is left alone.
Before acting, an idle timer looks at the customer's newest message in SQL and is armed again from
it when it is newer (a lost re-arm, a skipped one, or a message that raced the claim), and the SLA
timer looks for an agent reply: what Redis says is a reminder, SQL decides. `run_due(now_ms)` is the
drain mode: tests run due timers in simulated time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable

from chat import metrics
from chat.conversations import Conversations, Messages
from chat.conversations.texts import IDLE_NUDGE
from chat.errors import NotFound, cancelled_meanwhile, log_failure
from chat.events import ConversationMoved, ConversationStarted, Events, MessageStored, SlaBreached
from chat.settings import Settings
from chat.store import Store
from chat.store.messages import Guard
from states import StaleVersion
from states.clock import iso_from_ms, now_ms
from states.record import Conversation
from states.repository import SYSTEM
from states.timers import Armed, Effect, TimerIndex, TimerRow, timers_of

log = logging.getLogger(__name__)

POLL_S = 1.0  # the longest sleep: how soon a timer armed on another instance is seen here
CLAIM_BATCH = 100
RETRY_MS = 30_000  # a timer whose effect failed is armed again this much later
# A claimed timer goes to no other instance for this long: one whose instance was killed while applying it is
# claimed again after this (a shutdown hands back what it did not apply at once).
CLAIM_LEASE_MS = 120_000
# A customer who writes again within this of the last re-arm here costs no Redis write: the idle timer
# armed from the earlier message fires at most this much early, reads the newer one and is armed again.
REARM_EVERY_MS = 30_000
REARMED_KEPT = 10_000  # conversations whose last re-arm is remembered (least recent out first)


def counted_from(row: TimerRow, entered_ms: int, last_customer_ms: int | None) -> int:
    """When a timer's time starts: an idle timer's at the customer's newest message (or the state's start), the
    others' at the state's start. The arming at start and the firing count alike (Timers.arm_missing, _apply)."""
    return max(entered_ms, last_customer_ms or 0) if row.idle else entered_ms


class Timers:
    """Arms, claims and applies the state timers; `run()` is the background loop."""

    def __init__(self, index: TimerIndex, conversations: Conversations, messages: Messages, *, store: Store,
                 events: Events, settings: Settings, clock: Callable[[], int] = now_ms) -> None:
        self.index = index
        self.conversations = conversations
        self.messages = messages
        self.store = store
        self.events = events
        self.settings = settings
        self.hours = messages.office_hours.hours
        self.clock = clock
        self.fired: dict[str, int] = {}  # timer name -> effects applied here (tests, /metrics has the same)
        self._rearmed: OrderedDict[tuple[str, int], int] = OrderedDict()  # (conversation, version) -> ms
        self._wake = asyncio.Event()
        self._sleep_until_ms: int | None = None
        self._passes = asyncio.Condition()
        self._started = self._finished = 0  # the loop's passes
        self._stopping = False

    def subscribe_to(self, events: Events) -> None:
        """Arm on moves, starts and customer messages; an agent reply ends the SLA timer."""
        events.subscribe(ConversationMoved, self.on_moved)
        events.subscribe(ConversationStarted, self.on_started)
        events.subscribe(MessageStored, self.on_message)

    # --- arming ------------------------------------------------------------------------------

    def after_ms(self, row: TimerRow) -> int:
        """The timer's delay in ms (0: disabled)."""
        seconds: float = getattr(self.settings, row.setting)
        return int(seconds * 1000)

    def enabled(self, state: str) -> tuple[TimerRow, ...]:
        """The state's timers whose setting is not 0."""
        return tuple(row for row in timers_of(state) if self.after_ms(row) > 0)

    def due_ms(self, row: TimerRow, start_ms: int) -> int:
        """When a timer armed at `start_ms` is due (business time where the row says so)."""
        if row.business_time:
            return self.hours.add_ms(start_ms, self.after_ms(row))
        return start_ms + self.after_ms(row)

    async def arm(self, due: dict[Armed, int]) -> None:
        """Arm timers; wake the loop when one is due before it would look again."""
        await self.index.arm(due)
        if due and (self._sleep_until_ms is None or min(due.values()) < self._sleep_until_ms):
            self._wake.set()

    async def _quietly(self, what: str, conversation_id: str, step: Awaitable[object]) -> None:
        """Arming follows a committed move or message: a Redis failure here is logged, never the
        caller's error (the customer's message is stored; an idle timer re-arms from SQL anyway)."""
        try:
            await step
        except Exception as exc:
            log_failure(log, exc, "could not %s the timers of %s", what, conversation_id)

    async def on_moved(self, event: ConversationMoved) -> None:
        """Disarm the left version's timers, arm the entered state's."""
        t = event.transition
        left = [Armed(row, t.after.id, t.before.version) for row in self.enabled(t.before.state)]
        entered = {Armed(row, t.after.id, t.after.version): self.due_ms(row, t.at_ms)
                   for row in self.enabled(t.after.state)}
        await self._quietly("disarm", t.after.id, self.index.disarm(left))
        await self._quietly("arm", t.after.id, self.arm(entered))

    async def on_started(self, event: ConversationStarted) -> None:
        """A new conversation is in `ai` from its creation."""
        c = event.conversation
        due = {Armed(row, c.id, c.version): self.due_ms(row, self.clock()) for row in self.enabled(c.state)}
        await self._quietly("arm", c.id, self.arm(due))

    async def on_message(self, event: MessageStored) -> None:
        """A customer message counts idle time again; an agent's public reply ends the SLA timer."""
        c, m = event.conversation, event.message
        if m.sender_type == "customer":
            due = {Armed(row, c.id, c.version): self.due_ms(row, m.created_ms)
                   for row in self.enabled(c.state) if row.idle}
            if due and self._rearm_due(c, m.created_ms):
                await self._quietly("re-arm", c.id, self.arm(due))
        elif m.sender_type == "agent" and not m.private:
            ended = [Armed(row, c.id, c.version) for row in self.enabled(c.state)
                     if not row.needed(agent_replied=True)]
            await self._quietly("end", c.id, self.index.disarm(ended))

    def _rearm_due(self, c: Conversation, at_ms: int) -> bool:
        """Is it time to re-arm this version's idle timers (none re-armed here in REARM_EVERY_MS)?"""
        key, rearmed = (c.id, c.version), self._rearmed
        last = rearmed.pop(key, None)
        if last is not None and at_ms - last < REARM_EVERY_MS:
            rearmed[key] = last
            return False
        rearmed[key] = at_ms
        if len(rearmed) > REARMED_KEPT:
            rearmed.popitem(last=False)
        return True

    async def arm_missing(self) -> int:
        """Arm the timers of every open conversation that lacks them (armed before an upgrade, or a Redis that
        lost its index: emptied, or restored from an older snapshot) for when they would have been due: the
        queue wait from entering the queue, an idle timer from the customer's newest message (or the state's
        start), the SLA from the state's start; an armed one keeps its due time. Only the timers the live arming
        would hold now (TimerRow.needed): an SLA the agent's reply ended is not armed again. An idle or SLA timer
        due already is left out: the index forgets a timer once it fired (an idle nudge would be sent again), and
        armed from the past they would all fire at the first start after an import (every old conversation
        closed at once, with its webhooks); the conversation's next move or customer message arms it again.
        A queue wait due already is armed: it releases the conversation to the AI, which a fired one did."""
        count, now = 0, self.clock()
        for state in ("handoff", "ai", "human"):
            rows, after = self.enabled(state), None
            while rows:
                batch = await self.store.timers.open_versions(state, after)
                if not batch:
                    break
                due: dict[Armed, int] = {}
                for v in batch:
                    for row in rows:
                        if not row.needed(agent_replied=v.agent_replied):
                            continue
                        at = self.due_ms(row, counted_from(row, v.entered_ms, v.last_customer_ms))
                        if state == "handoff" or at > now:
                            due[Armed(row, v.conversation_id, v.version)] = at
                count += await self.index.arm(due, missing_only=True)  # one round trip a page
                after = batch[-1].position
        if count:
            self._wake.set()  # one may be due before the loop would look again
        return count

    # --- firing ------------------------------------------------------------------------------

    async def run_due(self, now: int | None = None) -> int:
        """Claim and apply every timer due at `now` (default: the clock), until none is left (the
        drain mode); return how many acted here."""
        at = self.clock() if now is None else now
        acted = 0
        while True:
            lease = max(at, self.clock()) + CLAIM_LEASE_MS  # from each claim: a long pass's later batches too
            claimed = await self.index.claim(at, CLAIM_BATCH, lease)
            done: list[Armed] = []
            try:
                for armed, due in claimed:
                    try:
                        acted += await self._apply(armed, due, at)
                    except Exception as exc:  # logged and tried again later (SQL down, say); the others still run
                        log_failure(log, exc, "timer %s of %s failed", armed.timer.name, armed.conversation_id)
                        await self._quietly("retry", armed.conversation_id, self.arm({armed: at + RETRY_MS}))
                    done.append(armed)
            except asyncio.CancelledError:  # shutdown: what was not applied is due again at once, for any instance
                left = dict(claimed[len(done):])  # `done` is the claim's head, in order
                await asyncio.shield(self._quietly("hand back", "a claimed batch", self.index.arm(left)))
                raise
            finally:
                await asyncio.shield(self._quietly("release", "a claimed batch", self.index.release(done, lease)))
            if len(claimed) < CLAIM_BATCH:
                return acted

    async def _apply(self, armed: Armed, due_ms: int, now: int) -> bool:
        """Apply one claimed timer unless its conversation moved on; True when it acted."""
        row, cid = armed.timer, armed.conversation_id
        try:
            conversation = await self.conversations.refresh(cid)  # checked against SQL, the truth of version
        except NotFound:
            return False
        if conversation.version != armed.version or conversation.state != row.state:
            return False  # moved on: the timer belonged to a version that is gone
        if row.idle or row.until_agent_reply:
            facts = await self.store.timers.facts(cid, armed.version)
            if facts is None or not row.needed(agent_replied=facts.agent_replied):
                return False
            if row.idle:
                silent_since = counted_from(row, facts.entered_ms, facts.last_customer_ms)
                due = self.due_ms(row, silent_since)
                if due > now:  # the customer wrote since it was armed: count from that message
                    await self.arm({armed: due})
                    return False
                if row.effect is Effect.NOTICE and await self.store.timers.noticed_since(cid, IDLE_NUDGE, silent_since):
                    return False  # nudged already in this silence (a timer armed again after it fired)
        acted = await self._effect(row, conversation, due_ms, now)
        if acted:
            self.fired[row.name] = self.fired.get(row.name, 0) + 1
            metrics.TIMERS_FIRED.labels(row.name).inc()
        return acted

    async def _effect(self, row: TimerRow, conversation: Conversation, due_ms: int, now: int) -> bool:
        if row.effect is Effect.TRANSITION:
            assert row.trigger is not None
            moved = await self.conversations.fire_quietly(conversation.id, row.trigger.value, actor=SYSTEM,
                                                          reason=row.reason, expect_version=conversation.version)
            return moved is not None
        if row.effect is Effect.NOTICE:
            guard = Guard(state=conversation.state, version=conversation.version)
            try:
                _message, created = await self.messages.append(conversation, guard=guard, sender_type="system",
                                                               content=IDLE_NUDGE)
            except StaleVersion as exc:  # moved on meanwhile
                log.info("%s of %s skipped: %s", row.name, conversation.id, exc)
                return False
            return created
        facts = await self.store.timers.facts(conversation.id, conversation.version)
        entered = due_ms
        if facts is not None:  # its due time from the state's start: not a lease's end (claimed again)
            entered, due_ms = facts.entered_ms, self.due_ms(row, facts.entered_ms)
        data = {"conversation_id": conversation.id, "version": conversation.version, "state": conversation.state,
                "agent_id": conversation.agent_id, "team_id": conversation.team_id,
                "entered_at": iso_from_ms(entered), "due_at": iso_from_ms(due_ms), "breached_at": iso_from_ms(now)}
        if not await self.store.timers.add_mark(conversation.id, conversation.version, row.reason,
                                                state=conversation.state, agent_id=conversation.agent_id,
                                                team_id=conversation.team_id, at_ms=now,
                                                webhook={"type": "sla.breached", "data": data}):
            return False
        metrics.SLA_BREACHES.inc()
        await self.events.emit(SlaBreached(conversation, conversation.agent_id, entered, due_ms))
        return True

    # --- the loop ----------------------------------------------------------------------------

    async def drain(self) -> None:
        """Wake the loop and wait until a whole pass that started after this call is over (tests:
        move the simulated clock, then drain; nothing sleeps)."""
        wanted = self._started + 1
        self._wake.set()
        async with self._passes:
            await self._passes.wait_for(lambda: self._finished >= wanted)

    def close(self) -> None:
        """Stop the loop at its next turn (shutdown; the cleanup also cancels its task)."""
        self._stopping = True
        self._wake.set()

    async def run(self) -> None:
        """Until closed: apply what is due, then sleep until the next due time, POLL_S or a wake-up."""
        while not self._stopping:
            if cancelled_meanwhile():  # a cancel a driver swallowed still ends the loop
                raise asyncio.CancelledError
            self._wake.clear()  # before looking: an arm from here on wakes the next sleep
            self._started += 1
            this_pass = self._started
            next_due: int | None = None
            try:
                await self.run_due()
                next_due = await self.index.next_due_ms()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log_failure(log, exc, "timer pass failed")
            async with self._passes:
                self._finished = this_pass
                self._passes.notify_all()
            now = self.clock()
            delay_ms = POLL_S * 1000 if next_due is None else min(POLL_S * 1000, max(0, next_due - now))
            self._sleep_until_ms = now + int(delay_ms)
            # asyncio.timeout, not wait_for: 3.11's wait_for drops a cancel that meets a wake-up
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay_ms / 1000):
                    await self._wake.wait()
            self._sleep_until_ms = None
