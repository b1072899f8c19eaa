"""What was written after the backup, saved before a rollback restores the database, and brought back.

PROTOCOL 8: the rollback never loses what was written after the backup. Before the database is
restored, every conversation, message and event created or changed since the backup
(``created_ms`` or ``updated_ms`` later than the backup's ``backup_ms``) is written to
``saved-since-backup-<time>.jsonl`` in the backup folder (mode 0600: it holds customers'
messages): a header line ``{"type": "saved", "backup_ms", "saved_ms", "counts"}``, then one
``{"type": "row", "table", "row": {column: value}}`` per row, parents first. ``rollback.py
--restore-saved FILE`` puts them back (conversations updated to their saved state, messages and
events added unless already there). A saved message or event whose place is taken by another row (the
old system, running again after the rollback, went on with the conversation, and a later import gave
its messages the same seqs) stops the restore with nothing written: it is never dropped quietly.
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
from chat.cutover.backup_sql import decode_sql_value, encode_sql_value, identifier, mysql_connect, sqlite_identifier
from chat.settings import DatabaseConfig
from states.clock import iso_from_ms, now_ms

# Parents first: the order rows are saved and put back in.
SAVED_TABLES = ("conversations", "messages", "conversation_events")
CHANGED_COLUMNS = ("created_ms", "updated_ms")
# Only a conversation changes after it is written; messages and events are added, never changed.
UPDATED_ON_RESTORE = frozenset({"conversations"})


class TakenPlace(Exception):
    """A saved row clashes with another row than itself (its seq or version is held by another)."""

    def __init__(self, table: str, row: dict[str, Any]) -> None:
        where = ", ".join(f"{k} {row[k]!r}" for k in ("conversation_id", "seq", "version") if k in row)
        super().__init__(f"{table} row {row.get('id')!r} ({where}): another row holds its place now "
                         "(written since the rollback); nothing was restored")


@dataclass
class Saved:
    """The file written and the rows per table in it."""

    path: Path
    counts: dict[str, int]


def saved_tables(tables: list[str]) -> list[str]:
    """The backed-up tables whose rows are saved (with any DB_TABLE_PREFIX), parents first."""
    return list(dict.fromkeys(t for base in SAVED_TABLES for t in tables if t.endswith(base)))


class _Database:
    """Just enough of MySQL (pymysql) and SQLite for the save and the restore."""

    def __init__(self, config: DatabaseConfig) -> None:
        self.sqlite = config.kind == "sqlite"
        self.conn: Any = sqlite3.connect(config.path) if self.sqlite else mysql_connect(config)
        self.mark = "?" if self.sqlite else "%s"

    def close(self) -> None:
        self.conn.close()

    def name(self, table: str) -> str:
        return sqlite_identifier(table) if self.sqlite else identifier(table)

    def columns(self, table: str) -> list[str] | None:
        """The table's columns; None when it does not exist."""
        cur = self.conn.cursor()
        try:
            if self.sqlite:
                cur.execute(f"PRAGMA table_info({self.name(table)})")
                names = [row[1] for row in cur.fetchall()]
            else:
                cur.execute(
                    "SELECT column_name FROM information_schema.columns WHERE table_schema = DATABASE() "
                    "AND table_name = %s ORDER BY ordinal_position",
                    (table,),
                )
                names = [row[0] for row in cur.fetchall()]
        finally:
            cur.close()
        return names or None

    def rows_since(self, table: str, since_ms: int) -> Iterator[dict[str, Any]]:
        columns = self.columns(table)
        if columns is None:
            return
        changed = [c for c in CHANGED_COLUMNS if c in columns]
        if not changed:
            return
        where = " OR ".join(f"{self.name(c)} > {self.mark}" for c in changed)
        order = self.name("created_ms") if "created_ms" in columns else "1"
        cur = self.conn.cursor()
        try:
            cur.execute(f"SELECT * FROM {self.name(table)} WHERE {where} ORDER BY {order}", [since_ms] * len(changed))
            names = [d[0] for d in cur.description]
            for row in cur.fetchall():
                yield dict(zip(names, row, strict=True))
        finally:
            cur.close()

    def put(self, table: str, row: dict[str, Any]) -> bool:
        """Insert the row; a conversation already there is updated. False: already there (same id), left
        alone; TakenPlace when another row holds its unique place."""
        names = ", ".join(self.name(c) for c in row)
        marks = ", ".join([self.mark] * len(row))
        sql = f"INSERT INTO {self.name(table)} ({names}) VALUES ({marks})"
        update = any(table.endswith(base) for base in UPDATED_ON_RESTORE)
        if self.sqlite and update:
            sets = ", ".join(f"{self.name(c)} = excluded.{self.name(c)}" for c in row if c != "id")
            sql += f" ON CONFLICT(id) DO UPDATE SET {sets}"
        elif update:
            sql += " ON DUPLICATE KEY UPDATE " + ", ".join(f"{self.name(c)} = VALUES({self.name(c)})" for c in row)
        cur = self.conn.cursor()
        try:
            try:
                cur.execute(sql, list(row.values()))
            except (sqlite3.IntegrityError, pymysql.err.IntegrityError) as exc:
                if not _duplicate(exc):
                    raise  # a missing parent, a NULL: the error says which
                # a plain insert that failed changed nothing (the transaction goes on): itself, or another?
                cur.execute(f"SELECT 1 FROM {self.name(table)} WHERE id = {self.mark}", (row.get("id"),))
                if cur.fetchone() is None:
                    raise TakenPlace(table, row) from None
                return False
            return bool(cur.rowcount)
        finally:
            cur.close()


def _duplicate(exc: Exception) -> bool:
    """Was an integrity error a unique key's (MySQL's ER_DUP_ENTRY 1062; SQLite's UNIQUE or PRIMARY KEY)?"""
    if isinstance(exc, pymysql.err.IntegrityError):
        return bool(exc.args) and exc.args[0] == 1062
    return "UNIQUE constraint failed" in str(exc)


def save_since_backup(backup_root: Path, tables: list[str], backup_ms: int, config: DatabaseConfig) -> Saved:
    """Write every saved table's rows created or changed after ``backup_ms`` to a new file in the backup folder."""
    saved_ms = now_ms()
    path = backup_root / f"saved-since-backup-{iso_from_ms(saved_ms).replace(':', '')}.jsonl"
    counts = dict.fromkeys(saved_tables(tables), 0)
    lines: list[bytes] = []
    with closing(_Database(config)) as db:
        for table in counts:
            for row in db.rows_since(table, backup_ms):
                lines.append(orjson.dumps({"type": "row", "table": table,
                                           "row": {k: encode_sql_value(v) for k, v in row.items()}}))
                counts[table] += 1
        db.conn.rollback()
    header = orjson.dumps({"type": "saved", "backup_ms": backup_ms, "saved_ms": saved_ms, "counts": counts})
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(b"\n".join([header, *lines]) + b"\n")
        out.flush()
        os.fsync(out.fileno())
    return Saved(path, counts)


def restore_saved(path: Path, config: DatabaseConfig, *, dry_run: bool = False) -> dict[str, tuple[int, int]]:
    """Put a saved file's rows back, in one transaction: per table ``(written, already there)``."""
    done: dict[str, tuple[int, int]] = {}
    with closing(_Database(config)) as db:
        try:
            for _number, entry in iter_jsonl(path):
                if entry.get("type") != "row":
                    continue
                table = entry["table"]
                row = {k: decode_sql_value(v) for k, v in entry["row"].items()}
                written, there = done.get(table, (0, 0))
                if dry_run or db.put(table, row):
                    done[table] = (written + 1, there)
                else:
                    done[table] = (written, there + 1)
            if dry_run:
                db.conn.rollback()
            else:
                db.conn.commit()
        except BaseException:
            db.conn.rollback()
            raise
    return done
