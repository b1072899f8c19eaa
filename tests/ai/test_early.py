"""Early replies (chat.ai.early) on their own: what once_stored asks, given what while_storing asked."""

import asyncio

from chat.ai.early import EarlyReplies
from chat.store.models import Message


class CountingProvider:
    """Records each request's context; every reply is one piece."""

    def __init__(self) -> None:
        self.calls: list[list[dict[str, str]]] = []

    async def stream(self, context, tools=None):
        self.calls.append(context)
        yield "x"


def message(seq: int) -> Message:
    return Message(f"m{seq}", "c", seq, "customer", "u", f"question {seq}", False, None, seq)


def replies(provider: CountingProvider) -> EarlyReplies:
    return EarlyReplies(provider, [], lambda history: [{"content": m.content} for m in history])  # type: ignore[arg-type]


async def test_a_message_whose_reply_a_turn_took_while_it_committed_is_not_asked_again():
    provider = CountingProvider()
    early = replies(provider)
    stored = asyncio.get_running_loop().create_future()
    early.while_storing("c", [message(1)], stored)
    taken = early.take("c")  # the last turn's look found the message and took its reply
    stored.set_result(True)
    early.once_stored("c", [message(1)], "m1")  # announced while that turn streams
    assert early.take("c") is None
    await taken.drop()
    await early.close()


async def test_a_reply_taken_for_another_message_does_not_stop_the_next_ones_early_request():
    """m1's announcement never came (its handler failed after the commit): what was asked for m1 must not
    count for m2, whose kept messages lead up to it."""
    provider = CountingProvider()
    early = replies(provider)
    stored = asyncio.get_running_loop().create_future()
    early.while_storing("c", [message(1)], stored)
    taken = early.take("c")
    stored.set_result(True)
    later = asyncio.get_running_loop().create_future()
    early.while_storing("c", None, later)  # m2: the kept messages did not lead up to it while it committed
    later.set_result(True)
    early.once_stored("c", [message(1), message(2)], "m2")
    second = early.take("c")
    assert second is not None and second.context == [{"content": "question 1"}, {"content": "question 2"}]
    await taken.drop()
    await second.drop()
    await early.close()
