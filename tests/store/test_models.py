"""Rows -> the store's types, in the column order their queries name."""

from chat.store.models import (
    CONVERSATION_COLUMNS,
    EVENT_COLUMNS,
    MESSAGE_COLUMNS,
    STATES,
    ConversationRow,
    event_from_row,
    message_from_row,
)


def test_rows_become_messages_and_events():
    m = message_from_row(("m1", "c1", "3", "agent", "a1", "hi", 1, "k", "1700000000000"))
    assert (m.seq, m.private, m.created_ms, m.client_msg_id) == (3, True, 1_700_000_000_000, "k")
    e = event_from_row(("e1", "c1", "2", "assign", "handoff", "human", "agent", "a1", "r", "a1", "t1", 5))
    assert (e.version, e.trigger, e.to_state, e.team_id, e.created_ms) == (2, "assign", "human", "t1", 5)
    assert len(MESSAGE_COLUMNS.split(",")) == 9 and len(EVENT_COLUMNS.split(",")) == 12


def test_the_conversation_columns_are_the_row_fields():
    assert CONVERSATION_COLUMNS.split(", ") == list(ConversationRow._fields)
    assert STATES == ("ai", "handoff", "human", "closed")
