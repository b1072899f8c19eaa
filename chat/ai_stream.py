"""Resumable AI replies: every turn has a `turn_id`, every `ai.delta` an `index`, and the text streamed
so far is kept in Redis (states/redis_keys.ai_stream: one list per conversation, expiring) where every
instance reads it, so `conversation.resume` and `conversation.watch` during a turn answer S
(PROTOCOL 3.7) and the socket then gets only the later deltas, on any instance, with no second model call.

The list holds `[turn_id, reply_to, delta 0, delta 1, ...]` while a turn streams, and `[turn_id]` once it
ended (stored, or interrupted): what a resume reads then tells it which turn's deltas it may no longer
send. Each delta is appended and published by one script (`Bus.publish_scripted`: one EVAL in the
bus's pipeline, the cost of the SPUBLISH it replaces), which appends only while the list is still
that turn's with every earlier delta in it; so once a turn was ended (a takeover on any instance, a
close, a newer turn) none of its deltas goes to another instance any more, and a reader that subscribed
and then read the list has every delta either in the text it read or arriving live after it (the hub
holds back a resuming socket's frames until its reply is sent and drops the deltas the reply already
holds).

The turn's own instance delivers each delta to its sockets at once, before the script runs (the chunk
is not kept waiting for a Redis round trip), as long as it knows the turn is live: it has not ended the
turn and no `ai.interrupted` of it has reached this instance (`LiveTurns`). So a socket may get a delta
whose append then failed, always before the `ai.interrupted` that ended its turn, never after it. A
resume on this instance reads the list behind every append queued so far (`Bus.read_in_order`), so a
delta delivered here before the socket subscribed is in what it reads.

A turn that ends without being stored sends `ai.interrupted` {conversation_id, turn_id, reason}.
"""

from __future__ import annotations

import logging
import time
import uuid
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

from chat import metrics
from chat.ai import AIError, StreamItem, ToolCall
from chat.bus.interest import Interest
from chat.bus.messages import Frame, ToConversation
from chat.bus.redis_bus import Bus
from chat.conversations import Conversations
from chat.errors import NotFound, log_failure
from chat.events import ConversationMoved, Events
from states import State, redis_keys
from states.record import Conversation

log = logging.getLogger(__name__)

# How long the partial text outlives its last write: longer than a provider may take to its first
# piece (its retries included) or between two pieces (AI_CHUNK_TIMEOUT_S), so a live turn never loses
# it, and short enough that a crashed instance's half reply does not linger (a newer turn replaces it).
STREAM_TTL_MS = 300_000

# Why a streamed reply was not stored (ai.interrupted `reason`).
TAKEN_OVER, HANDOFF, CLOSED, AI_FAILURE, SUPERSEDED, SHUTDOWN = (
    "taken_over", "handoff", "closed", "ai_failure", "superseded", "shutdown")
_REASON_OF_STATE: dict[str, str] = {State.HUMAN: TAKEN_OVER, State.HANDOFF: HANDOFF, State.CLOSED: CLOSED}

# KEYS[1] the stream; ARGV turn_id, reply_to, ttl ms. A new turn's list; the id of a live turn it
# replaces (one a crashed or stopped instance left), else false.
BEGIN_SCRIPT = """
local old = false
if redis.call('LLEN', KEYS[1]) > 1 then old = redis.call('LINDEX', KEYS[1], 0) end
redis.call('DEL', KEYS[1])
redis.call('RPUSH', KEYS[1], ARGV[1], ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return old
"""

# KEYS[1] the stream; ARGV turn_id, index, delta, ttl ms, channel, payload. Append and publish delta
# `index` only while the list is this turn's, live, with every earlier delta in it: 1, else 0. A delta
# already appended (its batch re-sent on a new connection after the first run) is 1 again, unpublished.
APPEND_SCRIPT = """
if redis.call('LINDEX', KEYS[1], 0) ~= ARGV[1] then return 0 end
local length, at = redis.call('LLEN', KEYS[1]), tonumber(ARGV[2]) + 2
if length > at and redis.call('LINDEX', KEYS[1], at) == ARGV[3] then return 1 end
if length ~= at then return 0 end
redis.call('RPUSH', KEYS[1], ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
redis.call('SPUBLISH', ARGV[5], ARGV[6])
return 1
"""

# KEYS[1] the stream; ARGV turn_id, ttl ms, publish ('1': the channel and payload follow). End the
# turn's live stream (the list becomes [turn_id]) and, when asked, publish ai.interrupted: 1, else 0
# (the turn had ended already, or another replaced it).
END_SCRIPT = """
if redis.call('LINDEX', KEYS[1], 0) ~= ARGV[1] or redis.call('LLEN', KEYS[1]) < 2 then return 0 end
redis.call('DEL', KEYS[1])
redis.call('RPUSH', KEYS[1], ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
if ARGV[3] == '1' then redis.call('SPUBLISH', ARGV[4], ARGV[5]) end
return 1
"""


def reason_after(state: str) -> str:
    """The `ai.interrupted` reason when a turn's conversation is in `state` (it moved on meanwhile)."""
    return _REASON_OF_STATE.get(state, SUPERSEDED)


@dataclass(frozen=True, slots=True)
class StreamState:
    """S: the turn streaming now and its text so far (index -1: no delta yet)."""

    turn_id: str
    reply_to: str
    index: int
    text: str

    def public(self) -> dict[str, Any]:
        """S as the protocol shows it."""
        return {"turn_id": self.turn_id, "reply_to": self.reply_to, "index": self.index, "text": self.text}


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What a resume read: the live stream (or None), and the turn that ended last (whose deltas are
    not to be sent to a socket that read this)."""

    stream: StreamState | None
    ended: str | None

    def keeps(self, frame: Frame) -> bool:
        """Should a frame held back while the resume read be sent after its reply? Not a delta that
        the reply's text holds, nor one of a turn that had ended."""
        if frame.get("type") != "ai.delta":
            return True
        data = frame["data"]
        if self.stream is not None and data.get("turn_id") == self.stream.turn_id:
            index: int = data["index"]
            return index > self.stream.index
        turn_id: str | None = data.get("turn_id")
        return turn_id != self.ended


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _snapshot(items: list[bytes | str]) -> Snapshot:
    if not items:
        return Snapshot(None, None)
    turn_id = _text(items[0])
    if len(items) == 1:
        return Snapshot(None, turn_id)
    text = "".join(_text(item) for item in items[2:])
    return Snapshot(StreamState(turn_id, _text(items[1]), len(items) - 3, text), None)


def _frame(type_: str, data: dict[str, Any]) -> Frame:
    return {"type": type_, "data": data}


class LiveTurns:
    """The turns streaming on this instance, by id (held weakly: a turn its runner dropped is gone). An
    `ai.interrupted` this instance delivers to its sockets ends its turn here first, so the turn delivers
    none of its later deltas here, even before its own append learns the stream was ended."""

    def __init__(self) -> None:
        self._turns: weakref.WeakValueDictionary[str, Turn] = weakref.WeakValueDictionary()

    def add(self, turn: Turn) -> None:
        """A turn begun here."""
        self._turns[turn.turn_id] = turn

    def watching(self, deliver: Callable[[ToConversation], object]) -> Callable[[ToConversation], object]:
        """`deliver` for the conversations' bus messages, noting each `ai.interrupted` before delivering it."""
        turns = self._turns

        def receive(message: ToConversation) -> object:
            if turns and message.frame.get("type") == "ai.interrupted":
                turn = turns.get(message.frame["data"].get("turn_id"))
                if turn is not None:
                    turn.ended = True
            return deliver(message)

        return receive


class Turn:
    """One AI turn's stream: its deltas, and how it ends."""

    def __init__(self, streams: AIStreams, conversation: Conversation, reply_to: str, turn_id: str) -> None:
        self._streams = streams
        self.conversation = conversation
        self.reply_to = reply_to
        self.turn_id = turn_id
        self.next_index = 0
        self.ended = False

    async def delta(self, text: str) -> bool:
        """Deliver the next delta here at once, then append and publish it; False when the turn's stream
        was ended meanwhile (by a takeover or a close on any instance, or a newer turn): nothing more of
        it is to be sent."""
        if self.ended:
            return False
        c = self.conversation
        data = {"conversation_id": c.id, "reply_to": self.reply_to, "turn_id": self.turn_id,
                "index": self.next_index, "delta": text}
        sent = await self._streams.bus.publish_scripted(
            ToConversation(c.id, c.user_id, _frame("ai.delta", data)), APPEND_SCRIPT, [self._streams.key(c.id)],
            [self.turn_id, self.next_index, text, STREAM_TTL_MS], deliver_first=True)
        if not sent:
            self.ended = True
            return False
        self.next_index += 1
        return True

    async def finish(self) -> bool:
        """End the stream before its reply is stored; False when it had been ended elsewhere (do not store)."""
        self.ended = True
        return bool(await self._streams.end(self.conversation, self.turn_id, None))

    async def interrupt(self, reason: str) -> None:
        """End the stream unstored: `ai.interrupted` to the subscribers, unless it had ended already."""
        if not self.ended:
            self.ended = True
            await self._streams.end(self.conversation, self.turn_id, reason)

    async def discarded(self, reason: str) -> None:
        """Its finished reply could not be stored (the conversation moved on after `finish`): tell the
        subscribers, whose stream ended with no message."""
        await self._streams.bus.publish(self._streams.interrupted(self.conversation, self.turn_id, reason))


async def reason_moved(conversations: Conversations, conversation_id: str) -> str:
    """Why a finished reply was not stored: where the conversation went meanwhile."""
    try:
        return reason_after((await conversations.refresh(conversation_id)).state)
    except NotFound:
        return SUPERSEDED


async def stream_reply(turn: Turn, replies: AsyncIterator[StreamItem], started: float,
                       handoff: Callable[[str], Awaitable[None]]) -> str | None:
    """Stream the reply to the subscribers; its whole text, or None after a handoff tool call (`handoff`
    is called with its reason) or when the turn's stream was ended meanwhile."""
    parts: list[str] = []
    # aclosing: an abandoned reply frees its HTTP connection at once (ignore: async generators, typed AsyncIterator)
    async with aclosing(replies) as stream:  # type: ignore[type-var]
        async for item in stream:
            if isinstance(item, ToolCall):
                if item.name == "transfer_to_human":
                    why = str(item.arguments.get("reason") or "").strip()
                    await handoff(f"ai_decision: {why}" if why else "ai_decision")
                    return None
                continue
            if not item:
                continue
            if not parts:
                metrics.AI_FIRST_CHUNK.observe(time.monotonic() - started)
            parts.append(item)
            if not await turn.delta(item):
                log.info("AI turn of %s stopped: its stream was ended elsewhere", turn.conversation.id)
                return None
    text = "".join(parts)
    if not text.strip():
        raise AIError("empty_reply", "the provider returned no text")
    return text


class AIStreams:
    """The streams of AI replies, in Redis: begun and written by the AI turns, read by resume and watch,
    ended by the turns or by a move out of `ai` (on whichever instance makes it)."""

    def __init__(self, redis: Redis, bus: Bus, interest: Interest, live: LiveTurns | None = None,
                 new_turn_id: Callable[[], str] = lambda: uuid.uuid4().hex) -> None:
        self.redis = redis
        self.bus = bus
        self.interest = interest
        self.live = live if live is not None else LiveTurns()
        self._new_turn_id = new_turn_id

    def subscribe_to(self, events: Events) -> None:
        """A conversation leaving `ai` ends the reply being streamed into it."""
        events.subscribe(ConversationMoved, self.on_moved)

    def key(self, conversation_id: str) -> str:
        """The conversation's stream key (sharing its bus channel's slot)."""
        return redis_keys.ai_stream(self.interest.conversation(conversation_id))

    async def begin(self, conversation: Conversation, reply_to: str) -> Turn:
        """A new turn answering `reply_to`; a live turn it replaces is interrupted (`superseded`)."""
        turn = Turn(self, conversation, reply_to, self._new_turn_id())
        self.live.add(turn)
        replaced = await self.redis.eval(BEGIN_SCRIPT, 1, self.key(conversation.id), turn.turn_id, reply_to,
                                         STREAM_TTL_MS)
        if replaced:
            await self.bus.publish(self.interrupted(conversation, _text(replaced), SUPERSEDED))
        return turn

    async def read(self, conversation_id: str) -> Snapshot:
        """The conversation's stream now (resume and watch read it after subscribing), behind every
        append this instance queued (a delta delivered here is in it, or its turn is seen ended). A live
        stream no turn holds the lock of (`ai:turn`) counts as ended: a crashed instance's half reply, or
        one a Redis restored from an older snapshot brought back, is no reply in progress."""
        snapshot = _snapshot(await self.bus.read_in_order("LRANGE", self.key(conversation_id), 0, -1))
        if snapshot.stream is not None and not await self.redis.exists(redis_keys.ai_turn(conversation_id)):
            return Snapshot(None, snapshot.stream.turn_id)
        return snapshot

    async def end(self, conversation: Conversation, turn_id: str, reason: str | None) -> bool:
        """End the turn's live stream, with `ai.interrupted` when a reason is given; False when it was not live."""
        key = self.key(conversation.id)
        if reason is None:  # a reply about to be stored: nothing to publish
            return bool(await self.redis.eval(END_SCRIPT, 1, key, turn_id, STREAM_TTL_MS, "0"))
        message = self.interrupted(conversation, turn_id, reason)
        return bool(await self.bus.publish_scripted(message, END_SCRIPT, [key], [turn_id, STREAM_TTL_MS, "1"]))

    def interrupted(self, conversation: Conversation, turn_id: str, reason: str) -> ToConversation:
        """The `ai.interrupted` bus message."""
        data = {"conversation_id": conversation.id, "turn_id": turn_id, "reason": reason}
        return ToConversation(conversation.id, conversation.user_id, _frame("ai.interrupted", data))

    async def on_moved(self, event: ConversationMoved) -> None:
        """A takeover, a handoff or a close ends the reply being streamed, whichever instance runs it."""
        if not event.left_ai:
            return
        after = event.transition.after
        try:
            head = await self.redis.lrange(self.key(after.id), 0, 1)
            if len(head) == 2:  # a live turn: [turn_id, reply_to, ...]
                await self.end(after, _text(head[0]), reason_after(after.state))
        except Exception as exc:  # the move stands; the turn's reply still fails its version guard, the text expires
            log_failure(log, exc, "could not end the AI stream of %s", after.id)
