"""The system messages a customer reads at each move, in one table (bilingual: the customers are
mostly Chinese-speaking)."""

from __future__ import annotations

from states.machine import State
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
INACTIVITY = "由于长时间没有新消息，对话已结束。The conversation was closed after a period of inactivity."
IDLE_NUDGE = "请问还有其他可以帮您的吗？Is there anything else I can help you with?"
# Outside business hours a handoff says this instead of HANDOFF (one notice, never both).
OUT_OF_HOURS = (
    "现在是非工作时间，人工客服将于 {zh} 上线；在此之前智能助手会继续为您解答，您的对话已在排队。"
    "Our agents are away until {en}; your conversation is in the queue and the AI assistant will keep "
    "answering until then."
)

# (trigger, reason) -> notice; a reason of None matches any reason of that trigger
_NOTICES: dict[tuple[str, str | None], str] = {
    ("request_handoff", None): HANDOFF,
    ("assign", "transfer"): TRANSFERRED,
    ("assign", None): ASSIGNED,
    ("requeue", None): REQUEUED,
    ("release", "no_agent"): NO_AGENT,
    ("release", None): RELEASED,
    ("close", "inactivity"): INACTIVITY,
    ("close", None): CLOSED,
}


def notice_for(transition: Transition, back_at: tuple[str, str] | None = None) -> str | None:
    """The system message this move shows the customer (None: the move says nothing). `back_at`: the
    (Chinese, English) time agents are back, when the move queues the conversation outside business hours."""
    if back_at is not None and transition.after.state == State.HANDOFF:
        return OUT_OF_HOURS.format(zh=back_at[0], en=back_at[1])
    return _NOTICES.get((transition.trigger, transition.reason)) or _NOTICES.get((transition.trigger, None))
