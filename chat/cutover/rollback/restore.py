"""``--restore-saved FILE``: the rows a rollback saved (saved.py) put back, in one transaction.

Parents first, in the schema's order. A conversation kept as it is in the database (newer) still gets
its saved messages, and its ``last_seq`` is raised to the highest seq among them; its version is raised
over the saved events, marks and ratings numbered above it, its state stays the kept one, and one more
log entry (``restore``) leads from where the saved events end to that state. A saved row
whose unique place another row holds stops the restore (TakenPlace): nothing is written.
"""

from __future__ import annotations

from contextlib import closing
from pathlib import Path
from typing import Any

from chat.cutover.backup_format import iter_jsonl
from chat.cutover.backup_sql import decode_sql_value
from chat.cutover.rollback.saved import OF_SAVED_CONVERSATIONS, Database, schema_order, table_base
from chat.settings import DatabaseConfig
from chat.store.erasure import ERASED_STATE
from chat.store.schema import Tables
from states.clock import now_ms
from states.ids import new_id

RESTORE_TRIGGER = "restore"  # the log entry that leads a kept conversation from its saved events to its state
RESTORE_REASON = "rolled forward: the state the conversation was kept in"

# Conversation children numbered by the conversation's version: a saved one above the version of the
# conversation as kept in the database raises that version (else its next transition would take the number).
BY_VERSION = {"conversation_events": "version", "conversation_marks": "version", "csat_responses": "close_version"}


def restore_saved(path: Path, config: DatabaseConfig, *, dry_run: bool = False) -> dict[str, tuple[int, int]]:
    """Put a saved file's rows back, in one transaction, parents first (the schema's order, whatever the
    file's): per table ``(written, already there or newer)``. ``config.table_prefix`` names the tables.
    ``dry_run``: the same transaction, rolled back at its end."""
    by_table: dict[str, list[dict[str, Any]]] = {}
    for _number, entry in iter_jsonl(path):
        if entry.get("type") == "row":
            by_table.setdefault(entry["table"], []).append({k: decode_sql_value(v) for k, v in entry["row"].items()})
    tables = Tables(config.table_prefix)
    if tables.conversations in by_table:  # a saved conversation with no label left has no label rows
        by_table.setdefault(tables.conversation_labels, [])
    done: dict[str, tuple[int, int]] = {}
    with closing(Database(config)) as db:
        try:
            restore = _Restore(db, tables)
            for table in schema_order(list(by_table), config.table_prefix):
                done[table] = restore.table(table, by_table[table])
            if dry_run:  # done for real and rolled back: the counts and the clashes a run would meet
                db.conn.rollback()
            else:
                db.conn.commit()
        except BaseException:
            db.conn.rollback()
            raise
    return done


class _Restore:
    """The tables of one --restore-saved, put back one after the other in the caller's transaction."""

    def __init__(self, db: Database, tables: Tables) -> None:
        self.db = db
        self.tables = tables
        self.written_conversations: set[Any] = set()
        self.versions: dict[Any, int] = {}  # per conversation, its version once the conversations are back

    def table(self, table: str, rows: list[dict[str, Any]]) -> tuple[int, int]:
        """Put one table's saved rows back: (written, already there or newer)."""
        db = self.db
        base = table_base(table, db.prefix)
        if base in OF_SAVED_CONVERSATIONS:
            db.replace_labels(table, self.written_conversations)
        written = there = 0
        highest: dict[Any, int] = {}
        versions: dict[Any, int] = {}
        for row in rows:
            needed = self._version_needed(base, row)
            if needed is not None:
                versions[row["conversation_id"]] = max(versions.get(row["conversation_id"], 0), needed)
            if base in OF_SAVED_CONVERSATIONS and row["conversation_id"] not in self.written_conversations:
                there += 1  # its conversation changed again since: the live labels are the newer
            elif db.put(table, row):
                written += 1
                if base == "conversations":
                    self.written_conversations.add(row["id"])
            else:
                there += 1
            if base == "messages":  # written, or already there: held by its conversation either way
                highest[row["conversation_id"]] = max(highest.get(row["conversation_id"], 0), int(row["seq"]))
        # a conversation kept (newer) is never below a message or an event put back into it: its next
        # message and transition take the places after theirs (GREATEST: never lowered)
        self._raise("last_seq", highest)
        if base == "conversation_events":
            self._bridge(rows, versions)
        self._raise("version", versions)
        for conversation_id, version in versions.items():
            self.versions[conversation_id] = max(self.versions[conversation_id], version)
        return written, there

    def _bridge(self, events: list[dict[str, Any]], versions: dict[Any, int]) -> None:
        """After the saved events put into a kept conversation, one more (`restore`, by the system) leads
        from where they end to the state the conversation is kept in, so its log replays to its row
        (chat-api stats rebuild); the conversation's version is raised to that entry's."""
        last: dict[Any, dict[str, Any]] = {}
        for event in events:
            if event["conversation_id"] in versions and int(event["version"]) == versions[event["conversation_id"]]:
                last[event["conversation_id"]] = event
        for conversation_id, event in sorted(last.items()):
            kept = self._one(f"SELECT state, agent_id, team_id FROM {self.db.name(self.tables.conversations)} "
                             f"WHERE id = {self.db.mark}", [conversation_id])
            version = int(event["version"]) + 1
            from_state = event["from_state"] if event["to_state"] == ERASED_STATE else event["to_state"]
            self.db.put(self.tables.conversation_events, {
                "id": new_id(), "conversation_id": conversation_id, "version": version,
                "trigger_name": RESTORE_TRIGGER, "from_state": from_state, "to_state": kept[0],
                "actor_type": "system", "actor_id": None, "reason": RESTORE_REASON, "agent_id": kept[1],
                "team_id": kept[2], "created_ms": now_ms()})
            versions[conversation_id] = version

    def _version_needed(self, base: str | None, row: dict[str, Any]) -> int | None:
        """The version a saved event, mark or rating needs its conversation to be at (its number), when the
        conversation as kept in the database is behind it; else None."""
        column = BY_VERSION.get(base or "")
        if column is None or row.get(column) is None:
            return None
        conversation_id = row["conversation_id"]
        if conversation_id not in self.versions:
            found = self._one(f"SELECT version FROM {self.db.name(self.tables.conversations)} "
                              f"WHERE id = {self.db.mark}", [conversation_id])
            self.versions[conversation_id] = int(found[0]) if found is not None else -1
        live, needed = self.versions[conversation_id], int(row[column])
        return needed if 0 <= live < needed else None

    def _raise(self, column: str, values: dict[Any, int]) -> None:
        """Raise `column` of these conversations to at least the given values."""
        db = self.db
        greatest = "MAX" if db.sqlite else "GREATEST"
        cur = db.conn.cursor()
        try:
            for conversation_id, value in sorted(values.items()):
                cur.execute(f"UPDATE {db.name(self.tables.conversations)} SET {column} = {greatest}({column}, "
                            f"{db.mark}) WHERE id = {db.mark}", [value, conversation_id])
        finally:
            cur.close()

    def _one(self, sql: str, args: list[Any]) -> Any:
        cur = self.db.conn.cursor()
        try:
            cur.execute(sql, args)
            return cur.fetchone()
        finally:
            cur.close()
