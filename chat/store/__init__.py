"""The SQL store: schema, one repository per resource, and the MySQL and embedded SQLite backends."""

from chat.store.db import Database, DatabaseError, DuplicateKey, IntegrityError, connect
from chat.store.messages import NewMessage
from chat.store.models import Message, TransitionEvent
from chat.store.store import Store

__all__ = [
    "Database",
    "DatabaseError",
    "DuplicateKey",
    "IntegrityError",
    "Message",
    "NewMessage",
    "Store",
    "TransitionEvent",
    "connect",
]
