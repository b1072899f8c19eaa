"""The system messages a customer reads at each move, in one table (bilingual: the customers are
mostly Chinese-speaking)."""

from __future__ import annotations

from states.repository import Transition

HANDOFF = "正在为您转接人工客服，请稍候。A human agent will take over shortly."
ASSIGNED = "人工客服已接入。An agent has joined the conversation."
TRANSFERRED = "您的对话已转交给另一位客服。Your conversation was transferred to another agent."
REQUEUED = "正在为您转接其他客服，请稍候。We are finding another agent for you."
RELEASED = "您的对话已转回智能助手。You are back with the AI assistant."
CLOSED = "对话已结束。The conversation was closed."
NO_AGENT = (
    "暂时没有可用的人工客服，智能助手将继续为您服务。No agent is available right now; the AI assistant will continue."
)

# (trigger, reason) -> notice; a reason of None matches any reason of that trigger
_NOTICES: dict[tuple[str, str | None], str] = {
    ("request_handoff", None): HANDOFF,
    ("assign", "transfer"): TRANSFERRED,
    ("assign", None): ASSIGNED,
    ("requeue", None): REQUEUED,
    ("release", "handoff_timeout"): NO_AGENT,
    ("release", None): RELEASED,
    ("close", None): CLOSED,
}


def notice_for(transition: Transition) -> str | None:
    """The system message this move shows the customer (None: the move says nothing)."""
    return _NOTICES.get((transition.trigger, transition.reason)) or _NOTICES.get((transition.trigger, None))
