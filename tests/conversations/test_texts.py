"""Every move that concerns the customer has its notice, chosen by trigger and reason."""

import pytest

from chat.conversations import texts
from states.record import Conversation
from states.repository import Actor, Transition

T = "2026-01-01T00:00:00.000Z"
C = Conversation(id="c1", user_id="u1", agent_type="ai", created_at=T, updated_at=T)


@pytest.mark.parametrize(
    ("trigger", "reason", "notice"),
    [
        ("request_handoff", "keyword", texts.HANDOFF),
        ("request_handoff", "customer_request: please", texts.HANDOFF),
        ("assign", "claim", texts.ASSIGNED),
        ("assign", "routing", texts.ASSIGNED),
        ("assign", "transfer", texts.TRANSFERRED),
        ("requeue", "agent_offline", texts.REQUEUED),
        ("requeue", "transfer", texts.REQUEUED),
        ("release", "release", texts.RELEASED),
        ("release", "no_agent", texts.NO_AGENT),
        ("close", "closed by agent", texts.CLOSED),
        ("close", "inactivity", texts.INACTIVITY),
        ("reopen", "customer wrote again", None),
    ],
)
def test_notice_for(trigger, reason, notice):
    assert texts.notice_for(Transition(C, C, trigger, Actor("system"), reason, 0)) == notice


def test_a_move_into_the_queue_outside_business_hours_says_when_agents_are_back_instead():
    queued = Conversation(id="c1", user_id="u1", agent_type="human", created_at=T, updated_at=T, state="handoff")
    move = Transition(C, queued, "request_handoff", Actor("customer", "u1"), "keyword", 0)
    text = texts.notice_for(move, ("10月5日（周一）09:00", "Mon Oct 5, 09:00 (Asia/Shanghai)"))
    assert text is not None and "10月5日（周一）09:00" in text and "Mon Oct 5, 09:00 (Asia/Shanghai)" in text
    assert texts.HANDOFF not in text
    assert texts.notice_for(move) == texts.HANDOFF  # open: the usual notice
