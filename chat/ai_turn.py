"""The AI turn: context in, streamed deltas out, the reply stored only if nobody took over.

The AI runs outside the state machine's callbacks, one reply at a time per conversation,
across instances too: a turn holds a short Redis lock (`ai:turn:{id}`). A customer message
that arrives while a reply is being generated does not start a second generation: it is
stored at once, and when the current reply is done one more turn runs that sees every
message stored meanwhile (several quick messages get one answer). The instance holding the
lock looks again for unanswered messages after releasing it, so a message that arrived on
another instance during the turn is answered too.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from contextlib import aclosing

from redis.asyncio import Redis

from chat import metrics
from chat.ai import TRANSFER_TO_HUMAN_TOOL, AIError, Provider, ToolCall
from chat.conversations import Conversations, Messages
from chat.errors import NotFound
from chat.events import AIDelta, AIFailed, ConversationMoved, CustomerWrote, Events
from chat.settings import Settings
from chat.store import Message, Store
from states import StaleVersion, State, redis_keys
from states.record import Conversation
from states.repository import Actor

log = logging.getLogger(__name__)

AI_ACTOR = Actor("ai")
MAX_REPLY_CHARS = 16000

# Release the turn lock only if this turn still holds it.
UNLOCK_SCRIPT = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


def build_context(system_prompt: str, history: list[Message], max_chars: int,
                  answered: dict[int, int] | None = None) -> list[dict[str, str]]:
    """System prompt + the newest messages that fit in max_chars (the newest always, cut if needed).

    `answered` maps the seq of an AI reply to the seq of the customer message it answered: a
    reply stored after newer customer messages is put back right after the message it
    answered, so the dialogue reads in the order it happened and ends with the customer.
    """
    answered = answered or {}
    dialogue = [m for m in history if not m.private and m.sender_type != "system"]  # notices are ours
    dialogue.sort(key=lambda m: answered.get(m.seq, m.seq) + (0.5 if m.seq in answered else 0))
    picked: list[dict[str, str]] = []
    used = 0
    for message in reversed(dialogue):
        role = "user" if message.sender_type == "customer" else "assistant"
        content = message.content
        if used + len(content) > max_chars:
            if picked:
                break
            content = content[-max_chars:]
        picked.append({"role": role, "content": content})
        used += len(content)
    picked.reverse()
    return [{"role": "system", "content": system_prompt}, *picked]


class AIRunner:
    """Schedules AI turns per conversation on this instance."""

    def __init__(self, conversations: Conversations, messages: Messages, *, store: Store, redis: Redis,
                 provider: Provider, settings: Settings):
        self.conversations = conversations
        self.messages = messages
        self.store = store
        self.provider = provider
        self.events = conversations.events
        self.settings = settings
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._pending: set[str] = set()
        self._failures: dict[str, int] = {}
        self._answered: dict[str, dict[int, int]] = {}  # cid -> {ai reply seq: customer seq it answered}
        self._attempted: dict[str, int] = {}  # cid -> seq of the newest customer message a turn took on
        self.discarded = 0
        self._redis = redis
        self._unlock = redis.register_script(UNLOCK_SCRIPT)
        # long enough for any turn: retries before the first chunk plus a silence between every chunk
        self._lock_ms = int(1000 * max(120.0, settings.ai_chunk_timeout_s * 4))

    def subscribe_to(self, events: Events) -> None:
        """Answer customers; stop when the conversation leaves the AI."""
        events.subscribe(CustomerWrote, self.on_customer_wrote)
        events.subscribe(ConversationMoved, self.on_moved)

    def on_customer_wrote(self, event: CustomerWrote) -> None:
        """A customer message to answer."""
        self.schedule(event.conversation.id)

    def on_moved(self, event: ConversationMoved) -> None:
        """A takeover stops the reply being generated here; the version guard covers other
        instances. A move the AI made itself (its handoff) ends its own turn without a cancel."""
        if event.left_ai:
            self.cancel(event.transition.after.id, stop_turn=event.transition.actor != AI_ACTOR)

    def schedule(self, conversation_id: str) -> None:
        """Answer the conversation's newest customer messages (once the current turn is done)."""
        if conversation_id in self._tasks:
            self._pending.add(conversation_id)
            return
        task = asyncio.create_task(self._run(conversation_id), name=f"ai-turn-{conversation_id}")
        self._tasks[conversation_id] = task
        task.add_done_callback(lambda _t: self._tasks.pop(conversation_id, None))

    def cancel(self, conversation_id: str, *, stop_turn: bool = True) -> None:
        """Forget the conversation's turns here (it left `ai`); stop a turn in progress."""
        self._pending.discard(conversation_id)
        # the conversation left `ai`: its bookkeeping here starts afresh if it comes back
        for table in (self._failures, self._answered, self._attempted):
            table.pop(conversation_id, None)
        task = self._tasks.get(conversation_id)
        if task is not None and stop_turn:
            task.cancel()

    async def drain(self) -> None:
        """Wait until no turn is running or pending (tests use it instead of sleeping)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks.values()), return_exceptions=True)

    async def close(self) -> None:
        """Cancel every turn (shutdown)."""
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _run(self, conversation_id: str) -> None:
        key = redis_keys.ai_turn(conversation_id)
        while True:
            self._pending.discard(conversation_id)
            token = uuid.uuid4().hex
            if not await self._redis.set(key, token, nx=True, px=self._lock_ms):
                return  # another instance is answering; it looks again when it is done
            try:
                await self._turn(conversation_id)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("AI turn of %s failed unexpectedly", conversation_id)
            finally:
                await asyncio.shield(self._unlock(keys=[key], args=[token]))
            if conversation_id in self._pending:
                continue
            try:
                if await self._next(conversation_id) is None:
                    self._answered.pop(conversation_id, None)  # nothing due: forget what only ordering needed
                    return
            except Exception:
                log.exception("could not look for unanswered messages of %s", conversation_id)
                return

    async def _next(self, conversation_id: str) -> tuple[Conversation, list[Message], Message] | None:
        """(conversation, history, the customer message to answer), or None when nothing is due."""
        try:
            conversation = await self.conversations.get(conversation_id)
        except NotFound:
            return None
        if conversation.state != State.AI:
            return None
        history = await self.store.messages.recent(conversation_id, self.settings.ai_context_messages)
        customer = [m for m in history if m.sender_type == "customer"]
        if not customer or customer[-1].seq <= self._attempted.get(conversation_id, 0):
            return None
        if history[-1].sender_type != "customer":
            # a reply follows the newest customer message, unless we know it answered an older one
            answered_to = max(self._answered.get(conversation_id, {}).values(), default=None)
            if answered_to is None or customer[-1].seq <= answered_to:
                return None
        return conversation, history, customer[-1]

    async def _turn(self, conversation_id: str) -> None:
        due = await self._next(conversation_id)
        if due is None:
            return
        conversation, history, reply_to = due
        self._attempted[conversation_id] = reply_to.seq
        answered = self._answered.get(conversation_id, {})
        context = build_context(self.settings.ai_system_prompt, history, self.settings.ai_context_chars, answered)
        started = time.monotonic()
        try:
            text = await self._stream(conversation, reply_to, context, started)
        except AIError as exc:
            await self._failed(conversation, exc, reply_to.id)
            return
        if text is None:
            return  # the AI handed over to a human
        metrics.AI_REPLY.observe(time.monotonic() - started)
        self._failures.pop(conversation_id, None)
        await self._store_reply(conversation, reply_to, text)

    async def _stream(self, conversation: Conversation, reply_to: Message, context: list[dict[str, str]],
                      started: float) -> str | None:
        """Stream the reply to the subscribers; its whole text, or None after a handoff tool call."""
        parts: list[str] = []
        replies = self.provider.stream(context, tools=[TRANSFER_TO_HUMAN_TOOL])
        # aclosing: an abandoned reply (takeover, shutdown) frees its HTTP connection at once; the
        # ignore: Provider.stream is declared AsyncIterator, though every provider is an async generator
        async with aclosing(replies) as stream:  # type: ignore[type-var]
            async for item in stream:
                if isinstance(item, ToolCall):
                    if item.name == "transfer_to_human":
                        why = str(item.arguments.get("reason") or "").strip()
                        await self._handoff(conversation.id, f"ai_decision: {why}" if why else "ai_decision")
                        return None
                    continue
                if not item:
                    continue
                if not parts:
                    metrics.AI_FIRST_CHUNK.observe(time.monotonic() - started)
                parts.append(item)
                await self.events.emit(AIDelta(conversation, reply_to.id, item))
        text = "".join(parts)
        if not text.strip():
            raise AIError("empty_reply", "the provider returned no text")
        return text

    async def _store_reply(self, conversation: Conversation, reply_to: Message, text: str) -> None:
        """Store the reply only while the conversation is still with the AI, unchanged."""
        try:
            message, _ = await self.messages.append(conversation, guard_version=True, sender_type="ai",
                                                    content=text[:MAX_REPLY_CHARS])
        except StaleVersion:
            self.discarded += 1
            metrics.AI_DISCARDED.inc()
            log.info("AI reply for %s discarded: the conversation moved on", conversation.id)
            return
        if message.seq != reply_to.seq + 1:  # newer customer messages came in meanwhile
            self._answered[conversation.id] = {message.seq: reply_to.seq}
        else:
            self._answered.pop(conversation.id, None)

    async def _handoff(self, conversation_id: str, reason: str) -> None:
        await self.conversations.fire_quietly(conversation_id, "request_handoff", actor=AI_ACTOR, reason=reason)

    async def _failed(self, conversation: Conversation, exc: AIError, reply_to: str) -> None:
        """Nothing of a failed turn is stored; enough failures in a row hand over to a human.
        Below that, subscribers get `ai.failed` (not stored) so a widget can drop the partial
        reply and offer to resend."""
        metrics.AI_ERRORS.labels(exc.code).inc()
        log.warning("AI turn of %s failed: %s", conversation.id, exc)
        count = self._failures.get(conversation.id, 0) + 1
        self._failures[conversation.id] = count
        if count >= self.settings.ai_failures_before_handoff:
            self._failures.pop(conversation.id, None)
            await self._handoff(conversation.id, "ai_failure")
            return
        await self.events.emit(AIFailed(conversation, reply_to, exc.code))
