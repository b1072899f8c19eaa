"""Cross-instance fan-out: typed bus messages over Redis pub/sub, and the publisher that turns
domain events into them."""

from chat.bus.messages import BusMessage, PresenceChanged, ToAgents, ToConversation, ToUser, decode, encode
from chat.bus.redis_bus import Bus

__all__ = ["Bus", "BusMessage", "PresenceChanged", "ToAgents", "ToConversation", "ToUser", "decode", "encode"]
