"""What an instance keeps of a conversation between its AI turns, bounded, and the context a turn
builds from its history (chat.ai_turn)."""

from __future__ import annotations

import dataclasses
from collections import OrderedDict
from dataclasses import dataclass, field

from chat.store import Message

MAX_REMEMBERED = 10_000  # conversations an instance keeps in mind (failed turns, reply order)
MAX_HISTORY_CHARS = 2_000_000  # characters of recent messages kept to start the next turns early


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


@dataclass
class Memory:
    """What an instance keeps of a conversation between its turns."""

    failures: int = 0  # failed turns in a row
    attempted: int = 0  # seq of the customer message the last turn took on, until a reply is stored
    answered: dict[int, int] = field(default_factory=dict)  # AI reply seq -> the customer seq it answered
    # seq of the last reply stored here right after the message it answered: while it is the
    # conversation's newest public message, nothing is due
    replied: int = 0

    def due(self, history: list[Message]) -> Message | None:
        """The customer message of this history a reply is due to, or None."""
        customer = [m for m in history if m.sender_type == "customer"]
        if not customer or customer[-1].seq <= self.attempted:
            return None
        if history[-1].sender_type != "customer":
            # a reply follows the newest customer message, unless we know it answered an older one
            answered_to = max(self.answered.values(), default=None)
            if answered_to is None or customer[-1].seq <= answered_to:
                return None
        return customer[-1]

    def replied_to(self, question: Message, reply: Message) -> None:
        """A reply was stored: remember where it belongs if newer messages came in before it."""
        self.attempted = 0  # answered: nothing of this turn needs remembering
        direct = reply.seq == question.seq + 1
        self.answered = {} if direct else {reply.seq: question.seq}
        self.replied = reply.seq if direct else 0


class Memories:
    """Memory per conversation, bounded: beyond max_entries the least recently touched goes."""

    def __init__(self, max_entries: int = MAX_REMEMBERED) -> None:
        self._entries: OrderedDict[str, Memory] = OrderedDict()
        self._max = max_entries

    def __len__(self) -> int:
        return len(self._entries)

    def peek(self, conversation_id: str) -> Memory:
        """The memory of a conversation (a blank one, not kept, when there is none)."""
        return self._entries.get(conversation_id) or Memory()

    def touch(self, conversation_id: str) -> Memory:
        """The memory of a conversation, kept (the newest)."""
        memory = self._entries.pop(conversation_id, None) or Memory()
        self._entries[conversation_id] = memory
        while len(self._entries) > self._max:
            self._entries.popitem(last=False)
        return memory

    def forget(self, conversation_id: str) -> None:
        """The conversation left `ai`: it starts afresh if it comes back."""
        self._entries.pop(conversation_id, None)

    def settle(self, conversation_id: str) -> None:
        """Nothing is due: keep only what a failed turn must not repeat (until the customer writes again)."""
        memory = self._entries.get(conversation_id)
        if memory is None:
            return
        if memory.failures == 0 and memory.attempted == 0:
            del self._entries[conversation_id]
        else:
            memory.answered.clear()

    def abandon(self, conversation_id: str) -> None:
        """A turn stopped before its end (a lost lock, a shutdown): its message may be taken on again."""
        memory = self._entries.get(conversation_id)
        if memory is not None:
            memory.attempted = 0
            self.settle(conversation_id)


class Histories:
    """The recent public messages of conversations answered here, as the last turn read them and
    followed by every message stored here since: while they are complete, the next turn asks the
    provider on them at once, before the reads that check them (chat.ai.early). Bounded by
    characters, least recently kept first out; a gap in the seqs drops a conversation's entry (a private
    note takes its seq without joining: the turn's read leaves it out too)."""

    def __init__(self, messages: int, max_chars: int = MAX_HISTORY_CHARS) -> None:
        self._entries: OrderedDict[str, tuple[list[Message], int]] = OrderedDict()  # the messages, the last seq
        self._messages = messages
        self._max_chars = max_chars
        self._chars = 0

    def __len__(self) -> int:
        return len(self._entries)

    def keep(self, conversation_id: str, history: list[Message]) -> None:
        """The conversation's newest public messages, oldest first (what the last turn saw and its reply)."""
        self.forget(conversation_id)
        kept = history[-self._messages :]
        self._entries[conversation_id] = (kept, history[-1].seq)
        self._chars += _chars(kept)
        while self._chars > self._max_chars:
            _, (dropped, _) = self._entries.popitem(last=False)
            self._chars -= _chars(dropped)

    def extend(self, conversation_id: str, message: Message) -> None:
        """A message stored here: the next in seq joins the entry (a private note only moves the seq on),
        anything else ends it."""
        entry = self._entries.get(conversation_id)
        if entry is None:
            return
        history, last_seq = entry
        if message.seq != last_seq + 1:
            self.forget(conversation_id)
        elif message.private:
            self._entries[conversation_id] = (history, message.seq)
        else:
            self.keep(conversation_id, [*history, message])

    def then(self, conversation_id: str, content: str) -> list[Message] | None:
        """The entry followed by a customer's message not stored yet, as the next turn will read it: the
        newest `messages` (the oldest drops out). The entry is left in place."""
        entry = self._entries.get(conversation_id)
        if entry is None:
            return None
        history, last_seq = entry
        # the message as the context reads it: its seq, sender, privacy and text
        message = dataclasses.replace(history[-1], seq=last_seq + 1, sender_type="customer", content=content,
                                      private=False)
        return [*history, message][-self._messages :]

    def take(self, conversation_id: str) -> list[Message] | None:
        """The entry's messages, handed over (a turn reads them once)."""
        entry = self._entries.pop(conversation_id, None)
        if entry is None:
            return None
        self._chars -= _chars(entry[0])
        return entry[0]

    def forget(self, conversation_id: str) -> None:
        """Drop the conversation's entry (it left `ai`, or a turn is reading it)."""
        self.take(conversation_id)


def _chars(history: list[Message]) -> int:
    return sum(len(m.content) for m in history)
