"""Group commit for messages: concurrent senders share one transaction.

While one batch is being written, the messages that arrive queue up and go together in the
next one, so under load many messages cost one commit, and with no load a message is
written at once (no timer, no added latency). A batch that cannot be written whole (a
resend, a conversation without its row yet, a failed guard, a deadlock) falls back to one
transaction per message, which handles those cases exactly as before (a deadlock's victim there is
written again: Messages.append_draft). Any other failure
(a connection lost, perhaps after the COMMIT ran) fails every message of the batch: writing
them again could store a message without a client_msg_id (an AI reply, a notice) twice.

On MySQL the conversations are split into lanes (LANES), each with its own queue and its own batch in
flight: a message arriving while one batch commits goes out in another lane's at once instead of waiting
for that commit. A conversation always takes the same lane, so its messages are written in the order
they were sent, and two lanes never hold the same conversation's row lock. SQLite has one writer at a
time: one lane.
"""

from __future__ import annotations

import asyncio
import logging

from chat.batching import Batcher
from chat.store.db import IntegrityError, RolledBack
from chat.store.messages import Messages, NewMessage
from chat.store.models import Message
from states.errors import ConversationNotFound, StaleVersion

log = logging.getLogger(__name__)

Stored = tuple[Message, bool]  # the message and whether it is new (False: a resend)
# what a batch raises only when none of it was written
NOT_WRITTEN = (IntegrityError, RolledBack, ConversationNotFound, StaleVersion)
LANES = 2  # batches in flight at once on MySQL


class MessageWriter:
    """Queues of appends, one per lane, each written in batches by one task."""

    def __init__(self, messages: Messages, max_batch: int = 200, lanes: int | None = None):
        self.messages = messages
        count = lanes if lanes is not None else LANES if messages.db.dialect == "mysql" else 1
        self._lanes: list[Batcher[NewMessage, Stored]] = [
            Batcher(self._write, name=f"message-writer-{i}", max_batch=max_batch) for i in range(count)]
        self.batches = 0

    async def append(self, draft: NewMessage) -> Stored:
        """As Messages.append_draft (guard included): the message and whether it is new."""
        return await self._lanes[hash(draft.conversation_id) % len(self._lanes)].submit(draft)

    async def _write(self, batch: list[tuple[NewMessage, asyncio.Future[Stored]]]) -> None:
        if len(batch) > 1:
            try:
                messages = await self.messages.append_batch([draft for draft, _ in batch])
            except NOT_WRITTEN as exc:  # certainly nothing written: one by one below, each to its own outcome
                log.debug("batch of %d not written whole (%s); writing one by one", len(batch), type(exc).__name__)
            else:
                self.batches += 1
                for (_, future), message in zip(batch, messages, strict=True):
                    if not future.done():
                        future.set_result((message, True))
                return
        for draft, future in batch:
            if future.done():
                continue
            try:
                future.set_result(await self.messages.append_draft(draft))
            except Exception as exc:
                future.set_exception(exc)
