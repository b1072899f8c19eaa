"""The AI turn: context in, streamed deltas out, the reply stored only if nobody took over.

The AI runs outside the state machine's callbacks, one reply at a time per conversation,
across instances too: a turn holds a short Redis lock (`ai:turn:{id}`, `AI_TURN_LOCK_S`),
renewed while the turn runs, so the lock of a crashed instance soon runs out. A customer
message that arrives while a reply is being generated does not start a second generation: it
is stored at once, and when the current reply is done one more turn runs that sees every
message stored meanwhile (several quick messages get one answer). The instance holding the
lock looks again for unanswered messages after releasing it when another instance found the lock
busy meanwhile (chat.ai_locks), so a message that arrived on another instance during the turn is
answered too. A sweep (at start and every
`AI_SWEEP_INTERVAL_S`, on every instance) answers what a crash or a shutdown left unanswered:
every conversation in `ai` whose newest customer message has no reply and no turn running.
The recent messages a turn read are kept and followed as messages are stored here; when the
customer's next message finds them complete, the provider is asked on them at once (chat.ai.early),
and the turn uses that reply only if the context it then reads and checks under its lock is the same.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from typing import Literal

from redis.asyncio import Redis

from chat import metrics
from chat.ai import TRANSFER_TO_HUMAN_TOOL, AIError, Provider
from chat.ai.early import EarlyReplies, EarlyReply
from chat.ai_locks import TurnLocks
from chat.ai_memory import Histories, Memories, Memory, build_context
from chat.ai_reply import ReplyEnds
from chat.ai_stream import AI_FAILURE, HANDOFF, SHUTDOWN, SUPERSEDED, AIStreams, stream_reply
from chat.conversations import Conversations, Messages
from chat.errors import NotFound, cancelled_meanwhile, log_failure
from chat.events import AIFailed, ConversationMoved, CustomerWriting, CustomerWrote, Events, MessageStored
from chat.settings import Settings
from chat.store import Message, Store
from states.record import Conversation
from states.repository import Actor

log = logging.getLogger(__name__)

AI_ACTOR = Actor("ai")
SWEEP_PAGE = 200

class AIRunner:
    """Schedules AI turns per conversation on this instance."""

    def __init__(self, conversations: Conversations, messages: Messages, *, store: Store, redis: Redis,
                 streams: AIStreams, provider: Provider, settings: Settings):
        self.conversations = conversations
        self.streams = streams
        self.messages = messages
        self.store = store
        self.provider = provider
        self.events = conversations.events
        self.settings = settings
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._pending: set[str] = set()
        self.locks = TurnLocks(redis, settings.ai_turn_lock_s, self._lock_lost)
        self._lost: set[str] = set()  # conversations whose turn was stopped for a lost lock
        self._memories = Memories()
        self._histories = Histories(settings.ai_context_messages)
        self._early = EarlyReplies(provider, [TRANSFER_TO_HUMAN_TOOL], functools.partial(
            build_context, settings.ai_system_prompt, max_chars=settings.ai_context_chars))
        self._closing = False
        self.discarded = 0
        self.ends = ReplyEnds(conversations, messages, store, self._discarded)

    def subscribe_to(self, events: Events) -> None:
        """Answer customers; stop when the conversation leaves the AI."""
        events.subscribe(CustomerWriting, self.on_customer_writing)
        events.subscribe(CustomerWrote, self.on_customer_wrote)
        events.subscribe(ConversationMoved, self.on_moved)
        events.subscribe(MessageStored, self.on_message_stored)

    def on_customer_writing(self, event: CustomerWriting) -> None:
        """A customer message about to be stored: asked at once when the messages kept here lead up to it."""
        cid = event.conversation.id
        self._early.while_storing(cid, self._histories.then(cid, event.content), event.stored)

    def on_customer_wrote(self, event: CustomerWrote) -> None:
        """A customer message to answer (asked at once when the messages kept here lead up to it)."""
        cid = event.conversation.id
        self._early.once_stored(cid, self._histories.take(cid), event.message.id)
        self.schedule(cid)

    def on_message_stored(self, event: MessageStored) -> None:
        """Follow the messages kept for the next turn (heard before the sockets are told of it)."""
        self._histories.extend(event.conversation.id, event.message)

    def on_moved(self, event: ConversationMoved) -> None:
        """A takeover stops the reply made here (the version guard covers others); the AI's own handoff does not."""
        if event.left_ai:
            self.cancel(event.transition.after.id, stop_turn=event.transition.actor != AI_ACTOR)

    def schedule(self, conversation_id: str) -> None:
        """Answer the conversation's newest customer messages (once the current turn is done); not while
        the instance shuts down (a sweep answers them)."""
        if self._closing:
            return
        running = self._tasks.get(conversation_id)
        if running is not None and not running.done():  # a finished one is dropped by its callback, soon
            self._pending.add(conversation_id)
            return
        task = asyncio.create_task(self._run(conversation_id), name=f"ai-turn-{conversation_id}")
        self._tasks[conversation_id] = task
        task.add_done_callback(lambda t: self._tasks.get(conversation_id) is t and self._tasks.pop(conversation_id))

    def cancel(self, conversation_id: str, *, stop_turn: bool = True) -> None:
        """Forget the conversation's turns here (it left `ai`); stop a turn in progress."""
        self._pending.discard(conversation_id)
        self._memories.forget(conversation_id)  # it starts afresh if it comes back to `ai`
        self._histories.forget(conversation_id)
        self._early.drop(conversation_id)
        task = self._tasks.get(conversation_id)
        if task is not None and stop_turn and task is not asyncio.current_task():  # the turn's own move: it returns
            task.cancel()

    def tracked(self) -> int:
        """How many conversations this runner keeps anything of (the kept recent messages aside: bounded)."""
        return len(set(self._tasks) | self._pending | self.locks.held) + len(self._memories)

    async def sweep(self) -> int:
        """Answer every conversation in `ai` whose newest customer message has no reply and no turn running (a
        crash or a shutdown left it): how many turns it started (sweeping instances: the lock picks one)."""
        started, after = 0, ""
        while True:
            page = await self.store.conversations.unanswered_ai(after_id=after, limit=SWEEP_PAGE)
            for conversation_id, seq in page:
                if conversation_id in self._tasks or self._memories.peek(conversation_id).attempted >= seq:
                    continue  # a turn runs here, or one failed on this message: the customer writes again
                self.schedule(conversation_id)
                started += 1
            if len(page) < SWEEP_PAGE:
                return started
            after = page[-1][0]

    def _lock_lost(self, conversation_id: str) -> None:
        """A turn's lock ran out or was taken: the turn stops (another instance may answer meanwhile)."""
        task = self._tasks.get(conversation_id)
        if task is not None:
            log.warning("AI turn of %s lost its lock; stopping it", conversation_id)
            self._lost.add(conversation_id)
            task.cancel()

    async def drain(self) -> None:
        """Wait until no turn is running or pending (tests use it instead of sleeping)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks.values()), return_exceptions=True)

    async def close(self) -> None:
        """Cancel every turn (shutdown); a sweep on any instance answers what they left."""
        self._closing = True
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.locks.close()
        await self._early.close()

    async def _run(self, conversation_id: str) -> None:
        answered = False
        try:
            while True:
                self._pending.discard(conversation_id)
                outcome = await self._locked_turn(conversation_id)
                if outcome in ("busy", "broken"):  # busy: another instance answers and looks again when it is
                    return  # done; broken: its message may be taken on again by the next sweep, not a tight loop
                if conversation_id in self._pending or (outcome == "done" and await self._due(conversation_id)):
                    continue
                self._memories.settle(conversation_id)
                answered = True  # an early reply left is one asked while the next message commits: its turn takes it
                return
        except asyncio.CancelledError:
            why = "the instance is shutting down" if self._closing else "the conversation moved or the lock was lost"
            log.info("AI turn of %s cancelled: %s", conversation_id, why)
            self._memories.abandon(conversation_id)
            raise
        finally:
            self._pending.discard(conversation_id)
            self._lost.discard(conversation_id)
            if not answered:
                self._early.drop(conversation_id)  # one its turn never took (the lock was busy, the turn broke)

    async def _due(self, conversation_id: str) -> bool:
        """Is a reply due: a message stored elsewhere during the turn, or one announced here (also while
        this looks, whatever its reads saw: the next turn reads it)?"""
        try:
            replied = self._memories.peek(conversation_id).replied  # one small read: nothing after it?
            newer = not replied or [m.seq for m in await self.store.messages.recent(conversation_id, 1)] != [replied]
            if newer and conversation_id not in self._pending and await self._next(conversation_id) is not None:
                return True
        except Exception as exc:
            if cancelled_meanwhile():
                raise asyncio.CancelledError from None
            log_failure(log, exc, "could not look for unanswered messages of %s", conversation_id)
        return conversation_id in self._pending

    async def _locked_turn(self, conversation_id: str) -> Literal["busy", "broken", "done", "answered"]:
        """A turn under the lock: "busy" (another instance holds it), "broken" (a dependency failed), "done",
        or "answered" (a reply stored, no other instance asked meanwhile: nothing to look for but here)."""
        try:
            token = await self.locks.take(conversation_id)
        except Exception as exc:  # Redis away: nothing was started; a later sweep takes the message on
            log_failure(log, exc, "AI turn of %s could not take its lock", conversation_id)
            return "broken"
        if token is None:
            return "busy"
        try:
            answered = await self._turn(conversation_id)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if cancelled_meanwhile():  # e.g. the database driver turned the cancel into its own error
                raise asyncio.CancelledError from None
            log_failure(log, exc, "AI turn of %s failed", conversation_id)
            self._memories.abandon(conversation_id)  # not answered: a later sweep takes it on again
            return "broken"
        finally:
            asked = await self.locks.release(conversation_id, token)
        # "answered" only after a reply that directly followed its question: one stored after other messages
        # (an older instance, whose busy take leaves no flag, may have written one) looks again
        direct = self._memories.peek(conversation_id).replied
        return "answered" if answered and direct and not asked else "done"

    async def _next(self, conversation_id: str) -> tuple[Conversation, list[Message], Message] | None:
        """(conversation, history, the customer message to answer), or None when nothing is due."""
        # the record checked against SQL (a live record behind it, Redis restored from an older
        # snapshot, would have the AI stream a reply into a conversation a human holds) and the
        # history, read at once: one round trip less before the provider's request
        conversation, history = await asyncio.gather(
            self.conversations.refresh(conversation_id),
            self.store.messages.recent(conversation_id, self.settings.ai_context_messages),
            return_exceptions=True,
        )
        if isinstance(conversation, NotFound):
            return None
        if isinstance(conversation, BaseException):
            raise conversation
        if isinstance(history, BaseException):
            raise history
        reply_to = self._memories.peek(conversation_id).due(history)
        return (conversation, history, reply_to) if reply_to and self.messages.ai_answers(conversation.state) else None

    async def _turn(self, conversation_id: str) -> bool:
        """Was a reply stored?"""
        early = self._early.take(conversation_id)  # kept only if the context the turn checks is the same
        try:
            return await self._answer(conversation_id, early)
        finally:
            if early is not None:
                await early.drop()  # nothing when the turn read it

    async def _answer(self, conversation_id: str, early: EarlyReply | None) -> bool:
        """Was a reply stored?"""
        due = await self._next(conversation_id)
        if due is None:
            return False
        conversation, history, reply_to = due
        if await self.messages.handoff_asked(conversation, reply_to, late=True):
            return False  # its own handoff failed after it was stored (Messages._customer_wrote)
        memory = self._memories.touch(conversation_id)
        memory.attempted = reply_to.seq
        context = build_context(self.settings.ai_system_prompt, history, self.settings.ai_context_chars,
                                memory.answered)
        if early is not None and early.context != context:
            await early.drop()  # asked on a context that turned out not to be the one: never shown
            early = None
        turn = await self.streams.begin(conversation, reply_to.id)
        replies = early.items() if early else self.provider.stream(context, tools=[TRANSFER_TO_HUMAN_TOOL])
        started = time.monotonic()
        try:
            text = await stream_reply(turn, replies, started, functools.partial(self._handoff, conversation.id))
        except AIError as exc:
            await turn.interrupt(AI_FAILURE)
            await self._failed(conversation, memory, exc, reply_to.id)
            return False
        except asyncio.CancelledError:
            # a move out of `ai` is told by whoever made it (AIStreams.on_moved); these two only here
            if self._closing or conversation.id in self._lost:
                await asyncio.shield(turn.interrupt(SHUTDOWN if self._closing else SUPERSEDED))
            raise
        if text is None:  # the AI handed over to a human, or its stream was ended meanwhile
            if not turn.ended:  # the handoff did not move it (it waits in handoff already, off hours)
                await turn.interrupt(HANDOFF)
            else:
                await self.ends.ended(conversation.id, memory, turn)
            return False
        metrics.AI_REPLY.observe(time.monotonic() - started)
        memory.failures = 0
        self._histories.keep(conversation.id, history)  # the reply and what follows join it as they are stored
        return await self.ends.store_reply(conversation, memory, history=history, reply_to=reply_to, text=text,
                                           turn=turn)

    def _discarded(self, conversation_id: str, memory: Memory) -> None:
        self._histories.forget(conversation_id)
        self.discarded += 1
        metrics.AI_DISCARDED.inc()
        log.info("AI reply for %s discarded: the conversation moved on", conversation_id)
        memory.attempted = 0  # not answered: if still (or again) with the AI, the next look takes it on again

    async def _handoff(self, conversation_id: str, reason: str) -> None:
        await self.conversations.fire_quietly(conversation_id, "request_handoff", actor=AI_ACTOR, reason=reason)

    async def _failed(self, conversation: Conversation, memory: Memory, exc: AIError, reply_to: str) -> None:
        """Nothing of a failed turn is stored; enough failures in a row hand over to a human.
        Below that, subscribers get `ai.failed` (not stored) so a widget can drop the partial
        reply and offer to resend."""
        metrics.AI_ERRORS.labels(exc.code).inc()
        log.warning("AI turn of %s failed: %s", conversation.id, exc)
        memory.failures += 1
        if memory.failures >= self.settings.ai_failures_before_handoff:
            self._memories.forget(conversation.id)
            await self._handoff(conversation.id, "ai_failure")
            return
        await self.events.emit(AIFailed(conversation, reply_to, exc.code))
