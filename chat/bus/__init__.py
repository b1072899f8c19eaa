"""Cross-instance fan-out: typed bus messages over Redis sharded pub/sub, the channels an
instance needs, and the publisher that turns domain events into messages."""

from chat.bus.interest import Interest
from chat.bus.messages import (
    AccountChanged,
    BusMessage,
    PresenceChanged,
    ToAgents,
    ToConversation,
    ToUser,
    decode,
    encode,
)
from chat.bus.redis_bus import Bus, publish_from_outside

__all__ = ["AccountChanged", "Bus", "BusMessage", "Interest", "PresenceChanged", "ToAgents", "ToConversation",
           "ToUser", "decode", "encode", "publish_from_outside"]
