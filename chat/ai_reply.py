"""How a streamed AI reply ends (chat.ai_turn): its stream ended, then the reply stored and announced, or
refused and its subscribers told. Once it has begun it is never cancelled: a cancel of its turn (a lost
lock, a takeover, a shutdown; one or several) waits for it up to WRITE_WAIT_S with the turn's lock held,
so a reply that is stored is published and one that is not is told (`ai.interrupted`). A write the
database has not answered by then goes on by itself after its turn has ended, and still tells how it
ended when the database answers (a failure then is logged).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Callable

from chat.ai_memory import Memory
from chat.ai_stream import SUPERSEDED, Turn, reason_moved
from chat.conversations import Conversations, Messages
from chat.store import Message, Store
from states import StaleVersion
from states.ids import new_id
from states.record import Conversation

log = logging.getLogger(__name__)

MAX_REPLY_CHARS = 16000
# How long a cancel (a shutdown, a lost lock, a takeover) waits for a reply's end already under way, the
# turn's lock held; a write the database has not answered by then goes on without its turn.
WRITE_WAIT_S = 10.0


class ReplyEnds:
    """Ends the turns' replies; `discarded(conversation_id, memory)` hears of one that was not stored."""

    def __init__(self, conversations: Conversations, messages: Messages, store: Store,
                 discarded: Callable[[str, Memory], None]) -> None:
        self.conversations = conversations
        self.messages = messages
        self.store = store
        self._discarded = discarded

    async def store_reply(self, conversation: Conversation, memory: Memory, *, history: list[Message],
                          reply_to: Message, text: str, turn: Turn) -> bool:
        """End the stream and store the reply while the conversation is with the AI, unchanged, with no other
        turn's reply since the history was read: was it? A cancel meanwhile waits for the end, then goes on."""
        ending = asyncio.ensure_future(self._end(conversation, memory, history=history, reply_to=reply_to,
                                                 text=text, turn=turn))
        try:
            return await asyncio.shield(ending)
        except asyncio.CancelledError:
            await _outlast(ending)
            ending.add_done_callback(functools.partial(_told, conversation.id))
            raise

    async def ended(self, conversation_id: str, memory: Memory, turn: Turn) -> None:
        """Its stream was ended before its reply was stored: by a move out of `ai` (whoever made it told the
        subscribers), or by nothing that moved it (Redis emptied or restored, a newer turn): told here then."""
        self._discarded(conversation_id, memory)
        if self.messages.ai_answers((await self.conversations.refresh(conversation_id)).state):  # off hours: handoff
            await turn.discarded(SUPERSEDED)

    async def _end(self, conversation: Conversation, memory: Memory, *, history: list[Message], reply_to: Message,
                   text: str, turn: Turn) -> bool:
        if not await turn.finish():  # ended elsewhere in the meantime, or its stream lost: not stored
            await self.ended(conversation.id, memory, turn)
            return False
        read_up_to, message_id = history[-1].seq, new_id()  # an AI message after read_up_to is another turn's
        try:
            message, _ = await self.messages.append(conversation, answering=read_up_to, sender_type="ai",
                                                    content=text[:MAX_REPLY_CHARS], message_id=message_id)
        except StaleVersion:
            self._discarded(conversation.id, memory)
            await turn.discarded(await reason_moved(self.conversations, conversation.id))
            return False
        except Exception as exc:  # the database away: not stored, unless it was committed all the same
            landed = await self._landed(conversation.id, read_up_to, message_id)
            if landed is None:  # (a later turn answers)
                with contextlib.suppress(Exception):  # Redis away too: the subscribers' streams run out
                    await turn.discarded(SUPERSEDED)
                raise
            log.warning("AI reply of %s: its write failed after the commit (%s); stored, published now",
                        conversation.id, type(exc).__name__)
            await self.messages.announce(conversation, landed)
            message = landed
        memory.replied_to(reply_to, message)
        return True

    async def _landed(self, conversation_id: str, read_up_to: int, message_id: str) -> Message | None:
        """The reply whose write failed, if it was committed all the same (the connection lost after the
        commit): the message with the id it was written with, after `read_up_to`."""
        with contextlib.suppress(Exception):
            for message in await self.store.messages.list_of(conversation_id, after_seq=read_up_to, limit=100):
                if message.id == message_id:
                    return message
        return None


async def _outlast(ending: asyncio.Future[bool]) -> None:
    """Wait for a reply's end up to WRITE_WAIT_S, whatever cancels come meanwhile (its turn leaves after)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WRITE_WAIT_S
    while not ending.done() and (left := deadline - loop.time()) > 0:
        with contextlib.suppress(asyncio.CancelledError):  # its turn is leaving already: once this is over
            await asyncio.wait({ending}, timeout=left)


def _told(conversation_id: str, ending: asyncio.Future[bool]) -> None:
    """The end of a reply whose turn was cancelled meanwhile: a failure is logged (nobody else hears of it)."""
    if ending.cancelled():
        return
    if (exc := ending.exception()) is not None:
        log.warning("AI reply of %s, its turn cancelled: %s: %s", conversation_id, type(exc).__name__, exc)
