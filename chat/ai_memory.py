"""What an instance keeps of a conversation between its AI turns, bounded (chat.ai_turn)."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

MAX_REMEMBERED = 10_000  # conversations an instance keeps in mind (failed turns, reply order)


@dataclass
class Memory:
    """What an instance keeps of a conversation between its turns."""

    failures: int = 0  # failed turns in a row
    attempted: int = 0  # seq of the customer message the last turn took on, until a reply is stored
    answered: dict[int, int] = field(default_factory=dict)  # AI reply seq -> the customer seq it answered
    # seq of the last reply stored here right after the message it answered: while it is the
    # conversation's newest public message, nothing is due
    replied: int = 0


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
