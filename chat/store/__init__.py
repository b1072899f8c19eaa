"""The SQL store: schema, queries, and the MySQL and embedded SQLite backends."""

from chat.store.db import Database, DatabaseError, DuplicateKey, IntegrityError, connect
from chat.store.models import Message, TransitionEvent
from chat.store.store import Store

__all__ = [
    "Database",
    "DatabaseError",
    "DuplicateKey",
    "IntegrityError",
    "Message",
    "Store",
    "TransitionEvent",
    "connect",
]
