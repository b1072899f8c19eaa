"""The reads that repair Redis from SQL and find unanswered AI turns (issue 10.6, 10.7):
conversations.assigned, states_of, unanswered_ai. The MariaDB database is shared by the run,
so each test looks only at its own conversations."""

from __future__ import annotations

from chat.store import Store
from chat.store.db import marks
from states import State


async def remove(store: Store, ids: list[str]) -> None:
    """An app on this shared database would act on them (sweeps, routing): they go when the test ends."""
    await store.db.execute(f"DELETE FROM {store.db.tables.messages} WHERE conversation_id IN ({marks(ids)})", ids)
    await store.db.execute(f"DELETE FROM {store.db.tables.conversations} WHERE id IN ({marks(ids)})", ids)


async def test_assigned_is_every_conversation_in_human_by_agent(store: Store, make_conversation):
    a1 = await make_conversation(state="human", agent_id="q-a1", agent_type="human")
    a2 = await make_conversation(state="human", agent_id="q-a1", agent_type="human")
    b = await make_conversation(state="human", agent_id="q-b", agent_type="human")
    closed = await make_conversation(state="closed", agent_id="q-a1", agent_type="human")  # closed: not held
    waiting = await make_conversation(state="handoff")
    held = await store.conversations.assigned(["q-a1", "q-b", "q-none"])
    every = await store.conversations.assigned()
    await remove(store, [a1.id, a2.id, b.id, closed.id, waiting.id])
    assert held == {"q-a1": {a1.id, a2.id}, "q-b": {b.id}}
    assert every["q-a1"] == {a1.id, a2.id} and every["q-b"] == {b.id}
    assert await store.conversations.assigned([]) == {}


async def test_states_of_names_the_rows_that_exist(store: Store, make_conversation):
    human = await make_conversation(state="human", agent_id="q-a1", agent_type="human")
    waiting = await make_conversation(state="handoff")
    got = await store.conversations.states_of([human.id, waiting.id, "no-such-row"])
    await remove(store, [human.id, waiting.id])
    assert got == {human.id: ("human", "q-a1"), waiting.id: ("handoff", None)}
    assert await store.conversations.states_of([]) == {}


async def test_unanswered_ai_is_where_the_customer_wrote_last(store: Store, make_conversation):
    async def conversation(*messages: tuple[str, bool], state: str = State.AI.value) -> str:
        cid = (await make_conversation(state=state)).id
        for sender_type, private in messages:
            await store.messages.append(cid, sender_type=sender_type, content="x", private=private,
                                        sender_id="q-agent" if sender_type == "agent" else None)
        return cid

    due = await conversation(("customer", False), ("ai", False), ("customer", False))
    after_note = await conversation(("customer", False), ("agent", True))  # a private note is not a reply
    answered = await conversation(("customer", False), ("ai", False))
    notice_last = await conversation(("customer", False), ("system", False))
    not_ai = await conversation(("customer", False), state=State.HANDOFF.value)
    empty = await conversation()
    mine = {due, after_note, answered, notice_last, not_ai, empty}

    found: list[tuple[str, int]] = []
    after = ""
    while True:  # page by page, as the sweep walks them
        page = await store.conversations.unanswered_ai(after_id=after, limit=2)
        found += [row for row in page if row[0] in mine]
        if len(page) < 2:
            break
        after = page[-1][0]
    await remove(store, sorted(mine))
    assert sorted(found) == sorted([(due, 3), (after_note, 1)])
