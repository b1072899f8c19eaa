"""What was written after the backup, saved before a rollback restores the database, and brought back.

PROTOCOL 8: the rollback never loses what was written after the backup. Before the database is
restored, every row of every service table that was created or changed since the backup (one of its
time columns, SAVE_RULES, later than the backup's ``backup_ms``), or that is not in the backup as it is
now (backed_up.py: rows --restore-saved or db import-legacy wrote keep their older times), is written to
``saved-since-backup-<time>.jsonl`` in the backup folder (mode 0600: it holds customers' messages and
password hashes): a header line ``{"type": "saved", "backup_ms", "saved_ms", "counts"}``, then one
``{"type": "row", "table", "row": {column: value}}`` per row, parents first. conversation_labels has
no time column: the labels of every saved conversation are saved (setting labels touches the
conversation's ``updated_ms``). ``chat-api rollback --restore-saved FILE`` (restore.py) puts them back: rows that can
change (UPDATED_ON_RESTORE) are updated to their saved state, the others are added unless already
there. A saved row whose place is taken by another row (the old system, running again after the
rollback, went on with the conversation, and a later import gave its messages the same seqs) stops the
restore with nothing written: it is never dropped quietly.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pymysql  # type: ignore[import-untyped]  # no stubs installed (types-PyMySQL)

from chat.cutover.backup_format import iter_jsonl
from chat.cutover.backup_sql import (
    encode_sql_value,
    identifier,
    mysql_columns,
    mysql_connect,
    sqlite_identifier,
)
from chat.cutover.rollback.backed_up import BackedUp, digest
from chat.settings import DatabaseConfig
from chat.store.schema import BASE_NAMES, Tables
from states.clock import iso_from_ms, now_ms

# Per service table (without DB_TABLE_PREFIX): the time columns of which any later than the backup
# marks a row created or changed since. Every write of the service moves one of them, except
# conversation_labels (saved with its conversations: see OF_SAVED_CONVERSATIONS).
SAVE_RULES: dict[str, tuple[str, ...]] = {
    "users": ("created_ms", "updated_ms"),  # a new password moves updated_ms too
    "customer_contacts": ("created_ms",),
    "teams": ("created_ms", "updated_ms"),
    "team_members": ("created_ms",),
    "labels": ("created_ms",),
    "conversations": ("created_ms", "updated_ms"),
    "messages": ("created_ms",),
    "conversation_events": ("created_ms",),
    "refresh_tokens": ("created_ms", "used_ms", "revoked_ms"),
    "csat_responses": ("created_ms",),
    "canned_responses": ("created_ms", "updated_ms"),
    "conversation_marks": ("created_ms",),
    "webhooks": ("created_ms",),
    "webhook_deliveries": ("created_ms", "last_attempt_ms", "delivered_ms"),
    "conversation_purges": ("purged_ms",),
}
OF_SAVED_CONVERSATIONS = frozenset({"conversation_labels"})
# Rows the service changes after writing them: put back as saved; the others are only ever added.
UPDATED_ON_RESTORE = frozenset({"users", "teams", "conversations", "refresh_tokens", "canned_responses",
                                "webhook_deliveries"})


def table_base(table: str, prefix: str) -> str | None:
    """A service table's name without its (known) DB_TABLE_PREFIX; None: not one of the schema's."""
    base = table[len(prefix):] if table.startswith(prefix) else None
    return base if base in BASE_NAMES else None


def schema_order(tables: list[str], prefix: str) -> list[str]:
    """``tables`` in the schema's order, parents first (a mysqldump lists them alphabetically); others last."""
    rank = {name: index for index, name in enumerate(Tables(prefix).all())}
    return sorted(tables, key=lambda t: rank.get(t, len(rank)))


def save_note(table: str, prefix: str) -> str | None:
    """What of a table the rollback saves first, in the plan's words; None: nothing (schema bookkeeping)."""
    base = table_base(table, prefix)
    if base is None or base == "schema_version":
        return None
    if base in OF_SAVED_CONVERSATIONS:
        return "those of the conversations saved, or not in the backup as they were"
    return " or ".join(SAVE_RULES[base]) + " after the backup, or not in the backup as it was"


def saved_prefix(path: Path) -> str | None:
    """The DB_TABLE_PREFIX a saved file was written with (its header); None: an older file without it."""
    for _number, entry in iter_jsonl(path):
        prefix = entry.get("table_prefix") if entry.get("type") == "saved" else None
        return prefix if isinstance(prefix, str) else None
    return None


class TakenPlace(Exception):
    """A saved row clashes with another row than itself (its seq or version is held by another)."""

    def __init__(self, table: str, row: dict[str, Any], why: str | None = None) -> None:
        keys = ("conversation_id", "seq", "version", "close_version", "short_code", "title", "name")
        where = ", ".join(f"{k} {row[k]!r}" for k in keys if k in row)
        why = why or "another row holds its place now (written since the rollback)"
        super().__init__(f"{table} row {row.get('id')!r} ({where}): {why}; nothing was restored: move the "
                         "clashing row in the database (or take the saved one out of the file), then run "
                         "--restore-saved again")


@dataclass
class Saved:
    """The file written and the rows per table in it."""

    path: Path
    counts: dict[str, int]


class Database:
    """Just enough of MySQL (pymysql) and SQLite for the save and the restore."""

    def __init__(self, config: DatabaseConfig) -> None:
        self.sqlite = config.kind == "sqlite"
        self.prefix = config.table_prefix
        self.conn: Any = sqlite3.connect(config.path) if self.sqlite else mysql_connect(config)
        self.mark = "?" if self.sqlite else "%s"

    def close(self) -> None:
        self.conn.close()

    def replace_labels(self, table: str, conversations: set[Any]) -> None:
        """Clear the labels of the conversations put back as saved: their saved labels are the whole set
        (a label removed after the backup stays removed)."""
        cur = self.conn.cursor()
        try:
            for conversation_id in sorted(conversations):
                cur.execute(f"DELETE FROM {self.name(table)} WHERE conversation_id = {self.mark}", [conversation_id])
        finally:
            cur.close()

    def name(self, table: str) -> str:
        return sqlite_identifier(table) if self.sqlite else identifier(table)

    def shape(self, table: str) -> tuple[list[str], list[str]] | None:
        """The table's columns and primary key columns; None when it does not exist."""
        cur = self.conn.cursor()
        try:
            if self.sqlite:
                cur.execute(f"PRAGMA table_info({self.name(table)})")
                info = cur.fetchall()
                columns = [row[1] for row in info]
                key = [row[1] for row in sorted(info, key=lambda r: r[5]) if row[5]]
            else:
                columns, key = mysql_columns(cur, table)
        finally:
            cur.close()
        return (columns, key) if columns else None

    def put(self, table: str, row: dict[str, Any]) -> bool:
        """Insert the row; one already there (same primary key) is updated to it when its table's rows
        change (UPDATED_ON_RESTORE) and the saved row is the newer (_newer), else left alone (False);
        TakenPlace when another row holds its place."""
        shape = self.shape(table)
        key = shape[1] if shape and shape[1] else ["id"]
        names = ", ".join(self.name(c) for c in row)
        marks = ", ".join([self.mark] * len(row))
        where = " AND ".join(f"{self.name(c)} = {self.mark}" for c in key)
        cur = self.conn.cursor()
        try:
            try:
                cur.execute(f"INSERT INTO {self.name(table)} ({names}) VALUES ({marks})", list(row.values()))
                return bool(cur.rowcount)
            except (sqlite3.IntegrityError, pymysql.err.IntegrityError) as exc:
                if not _duplicate(exc):
                    raise  # a missing parent, a NULL: the error says which
            # a plain insert that failed changed nothing (the transaction goes on): itself, or another?
            cur.execute(f"SELECT * FROM {self.name(table)} WHERE {where}", [row.get(c) for c in key])
            found = cur.fetchone()
            if found is None:
                raise TakenPlace(table, row)
            live = dict(zip([d[0] for d in cur.description], found, strict=True))
            base = table_base(table, self.prefix)
            if base not in UPDATED_ON_RESTORE:
                return False
            if base == "refresh_tokens":  # a token used or revoked since stays so: never cleared
                row = {**row, **{c: live[c] for c in ("used_ms", "revoked_ms") if live.get(c) is not None}}
            elif not _newer(base, row, live):
                return False  # changed again since it was saved: the live row is the newer state
            sets = ", ".join(f"{self.name(c)} = {self.mark}" for c in row if c not in key)
            try:
                cur.execute(f"UPDATE {self.name(table)} SET {sets} WHERE {where}",
                            [*(v for c, v in row.items() if c not in key), *(row.get(c) for c in key)])
            except (sqlite3.IntegrityError, pymysql.err.IntegrityError) as exc:
                if not _duplicate(exc):
                    raise
                raise TakenPlace(table, row) from None
            return bool(cur.rowcount)
        finally:
            cur.close()


def _newer(base: str, saved: dict[str, Any], live: dict[str, Any]) -> bool:
    """Is the saved row a later state than the live one, by its time columns (SAVE_RULES) and, for a
    conversation, its version (never below the events the live one has)?"""
    def latest(row: dict[str, Any]) -> int:
        return max((int(row[c]) for c in SAVE_RULES[base] if row.get(c) is not None), default=-1)

    if "version" in saved and live.get("version") is not None and int(saved["version"]) < int(live["version"]):
        return False
    return latest(saved) > latest(live)


def _duplicate(exc: Exception) -> bool:
    """Was an integrity error a unique key's (MySQL's ER_DUP_ENTRY 1062; SQLite's UNIQUE or PRIMARY KEY)?"""
    if isinstance(exc, pymysql.err.IntegrityError):
        return bool(exc.args) and exc.args[0] == 1062
    return "UNIQUE constraint failed" in str(exc)


class _Selection:
    """The rows a save takes, table after table, parents first: those the time columns mark (SAVE_RULES)
    and every row not in the backup as it was (BackedUp: written since with older times, by --restore-saved
    or db import-legacy); the labels of every conversation saved."""

    def __init__(self, db: Database, since_ms: int, backed_up: BackedUp) -> None:
        self.db = db
        self.since_ms = since_ms
        self.backed_up = backed_up
        self.conversations: set[Any] = set()

    def rows(self, table: str) -> Iterator[dict[str, Any]]:
        base = table_base(table, self.db.prefix)
        backed = self.backed_up.digests(table)
        # a table the backup does not hold: all its rows are new
        for row in self._not_backed_up(table, base, *(backed if backed is not None else ([], set()))):
            if base == "conversations":
                self.conversations.add(row["id"])
            yield row

    def _not_backed_up(self, table: str, base: str | None, columns: list[str], digests: set[int]) \
            -> Iterator[dict[str, Any]]:
        db = self.db
        shape = db.shape(table)
        if shape is None:
            return
        times = [c for c in SAVE_RULES.get(base or "", ()) if c in shape[0]]
        cur = db.conn.cursor() if db.sqlite else db.conn.cursor(pymysql.cursors.SSCursor)  # streamed
        try:
            cur.execute(f"SELECT * FROM {db.name(table)}")
            names = [d[0] for d in cur.description]
            for values in cur:
                row = dict(zip(names, values, strict=True))
                if (any(row[c] is not None and int(row[c]) > self.since_ms for c in times)
                        or (base in OF_SAVED_CONVERSATIONS and row["conversation_id"] in self.conversations)
                        or not columns or any(c not in row for c in columns)
                        or digest([row[c] for c in columns]) not in digests):
                    yield row
        finally:
            cur.close()


def save_since_backup(backup_root: Path, tables: list[str], backup_ms: int, config: DatabaseConfig,
                      backed_up: BackedUp) -> Saved:
    """Write every row created or changed after ``backup_ms`` (SAVE_RULES) and every row not in the backup
    as it was, to a new file in the backup folder."""
    saved_ms = now_ms()
    path = backup_root / f"saved-since-backup-{iso_from_ms(saved_ms).replace(':', '')}.jsonl"
    counts: dict[str, int] = {}
    lines: list[bytes] = []
    with closing(Database(config)) as db:
        selection = _Selection(db, backup_ms, backed_up)
        for table in schema_order(tables, config.table_prefix):  # parents first
            if save_note(table, config.table_prefix) is None or db.shape(table) is None:
                continue
            counts[table] = 0
            for row in selection.rows(table):
                lines.append(orjson.dumps({"type": "row", "table": table,
                                           "row": {k: encode_sql_value(v) for k, v in row.items()}}))
                counts[table] += 1
        db.conn.rollback()
    header = orjson.dumps({"type": "saved", "backup_ms": backup_ms, "saved_ms": saved_ms, "counts": counts,
                           "table_prefix": config.table_prefix})
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(b"\n".join([header, *lines]) + b"\n")
        out.flush()
        os.fsync(out.fileno())
    return Saved(path, counts)


def counts_to_save(tables: list[str], backup_ms: int, config: DatabaseConfig,
                   backed_up: BackedUp) -> dict[str, int | None]:
    """Per backed-up table, the rows a save would take now (None: the table is absent or never saved)."""
    counts: dict[str, int | None] = dict.fromkeys(tables)
    with closing(Database(config)) as db:
        selection = _Selection(db, backup_ms, backed_up)
        for table in schema_order(tables, config.table_prefix):
            if save_note(table, config.table_prefix) is None:
                continue
            if db.shape(table) is not None:
                counts[table] = sum(1 for _row in selection.rows(table))
        db.conn.rollback()
    return counts
