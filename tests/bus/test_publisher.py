"""The publisher turns each domain event into the bus message the sockets need."""

from __future__ import annotations

from chat.bus.messages import BusMessage, PresenceChanged, ToAgents, ToConversation, ToUser
from chat.bus.publisher import Publisher
from chat.events import (
    AgentStatusChanged,
    ConversationAssigned,
    ConversationMoved,
    Events,
    MessageStored,
    Typing,
)
from chat.store import Message
from states.record import Conversation
from states.repository import Actor, Transition

T = "2026-01-01T00:00:00.000Z"


class FakeBus:
    def __init__(self) -> None:
        self.sent: list[BusMessage] = []

    async def publish(self, message: BusMessage) -> None:
        self.sent.append(message)

    def publish_soon(self, message: BusMessage) -> None:
        self.sent.append(message)


class FakeConversations:
    async def view(self, conversation: Conversation) -> dict:
        return {"id": conversation.id, "state": conversation.state}


def record(state: str, team_id: str | None = None, agent_id: str | None = None) -> Conversation:
    return Conversation(id="c1", user_id="u1", agent_type="ai", created_at=T, updated_at=T, state=state,
                        team_id=team_id, agent_id=agent_id)


async def publishing(*events_: object) -> list[BusMessage]:
    bus, events = FakeBus(), Events()
    Publisher(bus, FakeConversations()).subscribe_to(events)  # type: ignore[arg-type]
    for event in events_:
        await events.emit(event)
    return bus.sent


async def test_a_move_into_the_queue_tells_subscribers_and_the_team():
    t = Transition(record("ai"), record("handoff", "billing"), "request_handoff", Actor("u1"), "keyword", 0)
    first, second = await publishing(ConversationMoved(t))
    data = {"conversation": {"id": "c1", "state": "handoff"}, "previous_state": "ai", "reason": "keyword"}
    assert first == ToConversation("c1", "u1", {"type": "conversation.updated", "data": data})
    assert second == ToAgents("billing", {"type": "conversation.updated", "data": data})


async def test_a_private_note_is_for_agents_only_and_typing_skips_its_sender():
    note = Message(id="m1", conversation_id="c1", seq=3, sender_type="agent", sender_id="a1", content="vip",
                   private=True, client_msg_id="n1", created_ms=0)
    sent = await publishing(MessageStored(record("human"), note), Typing(record("human"), "agent", True, "agent:a1"))
    assert isinstance(sent[0], ToConversation) and sent[0].agents_only and sent[0].frame["type"] == "message.created"
    assert isinstance(sent[1], ToConversation) and sent[1].skip == "agent:a1" and not sent[1].agents_only


async def test_assignment_subscribes_the_agent_and_tells_it_unless_it_claimed():
    told, claimed = await publishing(ConversationAssigned(record("human", agent_id="a1"), "a1", True),
                                     ConversationAssigned(record("human", agent_id="a1"), "a1", False))
    assert isinstance(told, ToUser) and told.subscribe == "c1" and told.frame["type"] == "conversation.assigned"
    assert claimed == ToUser("a1", None, subscribe="c1")


async def test_presence():
    (presence,) = await publishing(AgentStatusChanged("a1", "online", ("billing",)))
    assert presence == PresenceChanged("a1", "online", ("billing",))
