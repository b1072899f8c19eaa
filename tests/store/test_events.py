"""The transition log on MariaDB and SQLite: entries oldest first, reasons cut to the column."""

from states.clock import now_ms
from states.repository import Actor, Transition
from tests.conftest import new_id


async def test_the_log_is_oldest_first_and_keeps_who_and_why(store, make_conversation):
    c = await make_conversation()
    before = c
    for state, reason in (("handoff", "x" * 300), ("ai", None)):
        after = before.copy()
        after.state, after.version = state, before.version + 1
        async with store.conversations.record_transition(
            Transition(before, after, "step", Actor("system"), reason, now_ms())
        ):
            pass
        before = after
    log = await store.events.list_of(c.id)
    assert [(e.version, e.from_state, e.to_state) for e in log] == [(1, "ai", "handoff"), (2, "handoff", "ai")]
    assert log[0].reason == "x" * 255 and log[1].reason is None
    assert (log[0].actor_type, log[0].actor_id) == ("system", None)
    assert await store.events.list_of(new_id()) == []
