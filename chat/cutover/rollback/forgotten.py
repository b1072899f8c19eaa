"""The conversations chat-api scrubbed since the backup: erased customers and retention purges.

Their old records must not come back in the old services' database after a rollback. The SQL
store records both durably (chat/store/erasure.py): an erasure writes a `conversation_events` row
with trigger `erase`, and every scrub (erasure or purge) a `conversation_purges` row with its time.
"""

from __future__ import annotations

from contextlib import closing
from pathlib import Path

from chat.cutover.rollback.saved import Database
from chat.settings import DatabaseConfig
from chat.store.erasure import ERASE_TRIGGER
from chat.store.schema import Tables

ERASED, PURGED = "erased", "purged"


def scrubbed_since(config: DatabaseConfig, backup_ms: int) -> dict[str, str]:
    """Conversation id -> ERASED or PURGED, for those scrubbed after ``backup_ms`` (reads only; a table a
    schema from before erasure lacks finds none)."""
    if config.kind == "sqlite" and not Path(config.path).is_file():
        return {}
    tables = Tables(config.table_prefix)
    found: dict[str, str] = {}
    with closing(Database(config)) as db:
        m = db.mark
        for table, where, args, what in (
            (tables.conversation_purges, f"purged_ms > {m}", (backup_ms,), PURGED),
            (tables.conversation_events, f"trigger_name = {m} AND created_ms > {m}", (ERASE_TRIGGER, backup_ms),
             ERASED),
        ):
            if db.shape(table) is None:
                continue
            cur = db.conn.cursor()
            try:
                cur.execute(f"SELECT DISTINCT conversation_id FROM {db.name(table)} WHERE {where}", args)
                found.update((row[0], what) for row in cur.fetchall())
            finally:
                cur.close()
        db.conn.rollback()
    return found
