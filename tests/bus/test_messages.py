"""Bus messages: every kind survives encode/decode; anything else is refused clearly."""

import pytest

from chat.bus.messages import BusMessageError, PresenceChanged, ToAgents, ToConversation, ToUser, decode, encode

FRAME = {"type": "message.created", "data": {"conversation_id": "c1", "message": {"content": "你好"}}}


@pytest.mark.parametrize(
    "message",
    [
        ToConversation("c1", "cust-1", FRAME),
        ToConversation("c1", "cust-1", FRAME, agents_only=True, skip="sock-1"),
        ToConversation("c1", "cust-1", FRAME, customer_only=True),
        ToUser("agent-1", FRAME, subscribe="c1"),
        ToUser("agent-1", None, subscribe="c1"),
        ToAgents(None, FRAME),
        ToAgents("billing", FRAME),
        PresenceChanged("agent-1", "online", ("billing", "vip")),
        PresenceChanged("agent-1", "offline"),
    ],
)
def test_round_trip(message):
    assert decode(encode(message)) == message


@pytest.mark.parametrize("raw", [b"not json", b"[]", b'{"k": "nope"}', b'{"k": "user"}', b'{"k": "agents"}'])
def test_bad_bytes_are_refused(raw):
    with pytest.raises(BusMessageError):
        decode(raw)
