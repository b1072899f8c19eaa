"""The conversations chat-api scrubbed since the backup: erased customers and retention purges.

Their old records must not come back in the old services' database after a rollback. The SQL
store records both durably (chat/store/erasure.py): an erasure writes a `conversation_events` row
with trigger `erase`, and every scrub (erasure or purge) a `conversation_purges` row with its time.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pymysql  # type: ignore[import-untyped]  # no stubs installed (types-PyMySQL)

from chat.cutover.backup_sql import mysql_connect
from chat.settings import DatabaseConfig
from chat.store.erasure import ERASE_TRIGGER
from chat.store.schema import Tables

ERASED, PURGED = "erased", "purged"


def scrubbed_since(config: DatabaseConfig, backup_ms: int) -> dict[str, str]:
    """Conversation id -> ERASED or PURGED, for those scrubbed after ``backup_ms`` (reads only)."""
    tables = Tables(config.table_prefix)
    erased_sql = (f"SELECT DISTINCT conversation_id FROM {tables.conversation_events} "
                  "WHERE trigger_name = %s AND created_ms > %s")
    purged_sql = f"SELECT DISTINCT conversation_id FROM {tables.conversation_purges} WHERE purged_ms > %s"
    found: dict[str, str] = {}
    if config.kind == "sqlite":
        path = Path(config.path)
        if not path.is_file():
            return found
        conn = sqlite3.connect(path.resolve().as_uri() + "?mode=ro", uri=True)
        try:
            existing = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            if tables.conversation_purges in existing:
                found.update((row[0], PURGED) for row in conn.execute(purged_sql.replace("%s", "?"), (backup_ms,)))
            if tables.conversation_events in existing:
                found.update((row[0], ERASED) for row in conn.execute(erased_sql.replace("%s", "?"),
                                                                         (ERASE_TRIGGER, backup_ms)))
        finally:
            conn.close()
        return found
    conn = mysql_connect(config)
    try:
        with conn.cursor() as cur:
            for sql, args, what in ((purged_sql, (backup_ms,), PURGED),
                                    (erased_sql, (ERASE_TRIGGER, backup_ms), ERASED)):
                try:
                    cur.execute(sql, args)
                except pymysql.err.ProgrammingError as exc:
                    if exc.args and exc.args[0] == 1146:  # no such table: a schema from before erasure
                        continue
                    raise
                found.update((row[0], what) for row in cur.fetchall())
        conn.rollback()
    finally:
        conn.close()
    return found
