"""chat.render: C from the live record and from an admin-listing row are the same object; M and E."""

import orjson

from chat import render
from chat.store.models import ConversationRow, Message, TransitionEvent
from states.clock import iso_from_ms
from states.record import Conversation

CREATED_MS, UPDATED_MS = 1_700_000_000_123, 1_700_000_100_000
C_KEYS = ["id", "user_id", "state", "agent_type", "agent_id", "team_id", "version", "last_seq", "labels", "metadata",
          "created_at", "updated_at"]


def test_both_sources_of_c_render_the_same_object():
    record = Conversation(id="c1", user_id="u1", agent_type="human", created_at=iso_from_ms(CREATED_MS),
                          updated_at=iso_from_ms(UPDATED_MS), state="human", version=4, agent_id="a1", team_id="t1",
                          metadata={"lang": "zh"}, context={"not": "shown"})
    row = ConversationRow("c1", "u1", "human", "human", "a1", "t1", 4, 9, orjson.dumps({"lang": "zh"}).decode(), None,
                          CREATED_MS, UPDATED_MS)
    from_record = render.conversation(record, 9, ["vip"])
    from_row = render.conversation_from_row(row, ["vip"])
    assert from_record == from_row
    assert list(from_record) == list(from_row) == C_KEYS  # the protocol's order, for both


def test_metadata_that_is_not_an_object_shows_as_empty():
    for raw in (None, "", "not json", "[1, 2]"):
        row = ConversationRow("c1", "u1", "ai", "ai", None, None, 0, 0, raw, None, CREATED_MS, UPDATED_MS)
        assert render.conversation_from_row(row, [])["metadata"] == {}


def test_m_and_e():
    m = Message("m1", "c1", 3, "agent", "a1", "hi", True, "k1", CREATED_MS)
    assert render.message(m) == {
        "id": "m1", "conversation_id": "c1", "seq": 3, "sender_type": "agent", "sender_id": "a1", "content": "hi",
        "private": True, "client_msg_id": "k1", "created_at": iso_from_ms(CREATED_MS),
    }
    e = TransitionEvent("e1", "c1", 2, "assign", "handoff", "human", "admin", "boss", None, "a1", "t1", CREATED_MS)
    assert render.event(e) == {
        "id": "e1", "conversation_id": "c1", "version": 2, "trigger": "assign", "from_state": "handoff",
        "to_state": "human", "actor_type": "admin", "actor_id": "boss", "reason": None,
        "created_at": iso_from_ms(CREATED_MS),
    }


def test_rest_objects_from_rows():
    label = render.row_object(("id", "title", "created_at"), ("l1", "vip", CREATED_MS))
    assert label == {"id": "l1", "title": "vip", "created_at": iso_from_ms(CREATED_MS)}
