"""The conversation state machine, its Redis record and the compare-and-set repository.

No aiohttp here: the service, the scripts and the tests all use this package directly.
"""

from states.errors import ConversationNotFound, InvalidTransition, StaleVersion, TransitionError
from states.machine import TRANSITIONS, AgentType, State, Trigger, mermaid_diagram
from states.record import Conversation, RecordError, dump_record, load_record

__all__ = [
    "TRANSITIONS",
    "AgentType",
    "Conversation",
    "ConversationNotFound",
    "InvalidTransition",
    "RecordError",
    "StaleVersion",
    "State",
    "TransitionError",
    "Trigger",
    "dump_record",
    "load_record",
    "mermaid_diagram",
]
