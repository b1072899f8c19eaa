"""The database part of a rollback: checked first, then restored by the backup's method."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pymysql  # type: ignore[import-untyped]  # no stubs installed (types-PyMySQL)

from chat.cutover.backup_format import iter_jsonl
from chat.cutover.backup_sql import (
    decode_sql_value,
    identifier,
    mysql_columns,
    mysql_connect,
    mysql_connection_args,
    mysql_counts,
    mysql_existing_tables,
    mysql_option_file,
    sqlite_copy,
    sqlite_identifier,
)
from chat.cutover.common import Progress
from chat.cutover.rollback.backed_up import BackedUp
from chat.cutover.rollback.checks import Backup, sqlite_ro_uri
from chat.cutover.rollback.grants import check_account
from chat.cutover.rollback.saved import counts_to_save
from chat.settings import DatabaseConfig

ROW_BATCH = 1000
MYSQL = "mysql"


class RestoreFailed(Exception):
    """The database part could not be restored (a transaction rolled back, or a count is off)."""


def preflight_database(backup: Backup, config: DatabaseConfig) -> tuple[list[str], list[str]]:
    """Problems that would stop the database restore, found before anything is changed (the target's
    kind, its tables for a logical dump, the mysql client for a mysqldump file, the account's privileges:
    grants.py), and the plan's lines about the account."""
    part = backup.database
    assert part is not None
    if part["kind"] != config.kind:
        kinds = f"the backup is of a {part['kind']} database, the target is {config.kind}"
        return [f"database: {kinds}"], []
    if part["method"] == "sqlite":
        parent = Path(config.path).resolve().parent
        return [] if parent.is_dir() else [f"database: directory {parent} does not exist"], []
    if part["method"] == "mysqldump" and shutil.which(MYSQL) is None:
        return ["database: the backup is a mysqldump file and the mysql client is not installed"], []
    try:
        conn = mysql_connect(config)
    except pymysql.MySQLError as exc:
        return [f"database: cannot connect to {config.describe()}: {exc}"], []
    try:
        with conn.cursor() as cur:
            problems, account = check_account(cur, backup, config.database)
            if part["method"] == "logical":
                existing = mysql_existing_tables(cur)
                for table in part["order"]:
                    info = part["tables"][table]
                    if info.get("absent"):
                        continue
                    if table not in existing:
                        problems.append(f"table {table}: missing (run `chat-api db upgrade` first)")
                        continue
                    columns, _ = mysql_columns(cur, table)
                    missing = [c for c in info["columns"] if c not in columns]
                    if missing:
                        problems.append(f"table {table}: no column(s) {', '.join(missing)}")
        conn.rollback()
    finally:
        conn.close()
    return problems, account


TableNow = dict[str, tuple[int | None, int | None]]


def database_now(backup: Backup, config: DatabaseConfig) -> TableNow:
    """Per backed-up table: rows now and rows the rollback saves first (None: absent / never saved)."""
    assert backup.database is not None
    tables = list(backup.database["tables"])
    if config.kind == "sqlite":
        rows_now = _sqlite_rows(Path(config.path), tables)
    else:
        rows_now = {}
        conn = mysql_connect(config)
        try:
            with conn.cursor() as cur:
                existing = mysql_existing_tables(cur)
                for table in tables:
                    rows_now[table] = None
                    if table in existing:
                        cur.execute(f"SELECT COUNT(*) FROM {identifier(table)}")
                        rows_now[table] = int(cur.fetchone()[0])
            conn.rollback()
        finally:
            conn.close()
    if all(rows is None for rows in rows_now.values()):
        return {table: (None, None) for table in tables}
    to_save = counts_to_save(tables, backup.backup_ms, config, BackedUp(backup))
    return {table: (rows, to_save.get(table) if rows is not None else None) for table, rows in rows_now.items()}


def _sqlite_rows(path: Path, tables: list[str]) -> dict[str, int | None]:
    if not path.is_file():
        return dict.fromkeys(tables)
    rows_now: dict[str, int | None] = {}
    conn = sqlite3.connect(path.resolve().as_uri() + "?mode=ro", uri=True)
    try:
        listing = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        existing = {row[0] for row in listing}
        for table in tables:
            rows_now[table] = None
            if table in existing:
                (rows_now[table],) = conn.execute(f"SELECT COUNT(*) FROM {sqlite_identifier(table)}").fetchone()
    finally:
        conn.close()
    return rows_now


def restore_database(backup: Backup, config: DatabaseConfig, progress: Progress) -> dict[str, int]:
    """Restore by the backup's method; rows per table afterwards, checked against the manifest."""
    part = backup.database
    assert part is not None
    if part["method"] == "logical":
        return _restore_logical(backup, config, progress)
    if part["method"] == "mysqldump":
        _restore_mysqldump(backup, config, progress)
        counts = mysql_counts(config, list(part["tables"]))
    else:
        counts = _restore_sqlite(backup, config, progress)
    expected = {t: i["rows"] for t, i in part["tables"].items() if not i.get("absent")}
    wrong = [t for t, rows in expected.items() if counts.get(t) != rows]
    if wrong:
        raise RestoreFailed(
            "after the restore, rows differ from the backup in " + ", ".join(
                f"{t} ({counts.get(t)} instead of {expected[t]})" for t in wrong)
        )
    return {t: counts[t] for t in expected}


def _restore_logical(backup: Backup, config: DatabaseConfig, progress: Progress) -> dict[str, int]:
    """One transaction: delete children first, insert parents first, check the counts, commit."""
    part = backup.database
    assert part is not None
    tables = part["tables"]
    try:
        conn = mysql_connect(config)
    except pymysql.MySQLError as exc:
        raise RestoreFailed(f"cannot connect to {config.describe()}: {exc}") from None
    try:
        conn.begin()
        with conn.cursor() as cur:
            counts, inserted = _replace_tables(cur, backup, part["order"], tables, progress)
        conn.commit()
    except pymysql.MySQLError as exc:
        conn.rollback()
        raise RestoreFailed(f"{config.describe()}: {exc} (rolled back: nothing changed)") from None
    except BaseException:
        conn.rollback()
        raise
    finally:
        conn.close()
    progress.update(inserted, 1.0, force=True)
    return {t: c for t, c in counts.items() if not tables[t].get("absent")}


def _replace_tables(
    cur: Any, backup: Backup, order: list[str], tables: dict[str, Any], progress: Progress
) -> tuple[dict[str, int], int]:
    """Every table's rows replaced by the backup's, in the caller's transaction: rows per table, inserted."""
    total = sum(info["rows"] for info in tables.values()) or 1
    existing = mysql_existing_tables(cur)
    for table in reversed(order):
        if table in existing:
            # DELETE, not TRUNCATE: TRUNCATE commits on its own and ignores the order.
            cur.execute(f"DELETE FROM {identifier(table)}")
    inserted = 0
    for table in order:
        if not tables[table].get("absent"):
            inserted = _insert_rows(
                cur, backup, table, tables[table], inserted=inserted, report=lambda n: progress.update(n, n / total)
            )
    counts = {}
    for table in order:
        if table in existing or not tables[table].get("absent"):
            cur.execute(f"SELECT COUNT(*) FROM {identifier(table)}")
            counts[table] = int(cur.fetchone()[0])
    wrong = [t for t in counts if counts[t] != tables[t]["rows"]]
    if wrong:
        raise RestoreFailed(f"row counts differ before commit in {', '.join(wrong)}: rolled back")
    return counts, inserted


def _insert_rows(
    cur: Any, backup: Backup, table: str, info: dict[str, Any], *, inserted: int, report: Callable[[int], None]
) -> int:
    """INSERT one table's backed-up rows, ROW_BATCH at a time; the running total of rows inserted."""
    columns = info["columns"]
    names = ", ".join(identifier(c) for c in columns)
    marks = ", ".join(["%s"] * len(columns))
    sql = f"INSERT INTO {identifier(table)} ({names}) VALUES ({marks})"
    rows: list[list[Any]] = []
    for _number, row in iter_jsonl(backup.path(info["file"])):
        rows.append([decode_sql_value(v) for v in row])
        if len(rows) >= ROW_BATCH:
            cur.executemany(sql, rows)
            inserted += len(rows)
            rows = []
            report(inserted)
    if rows:
        cur.executemany(sql, rows)
        inserted += len(rows)
    return inserted


def _restore_mysqldump(backup: Backup, config: DatabaseConfig, progress: Progress) -> None:
    """Pipe the dump into the mysql client (it drops and recreates each table it holds)."""
    part = backup.database
    assert part is not None
    binary = shutil.which(MYSQL)
    if binary is None:
        raise RestoreFailed("the mysql client is not installed")
    path = backup.path(part["file"])
    size = path.stat().st_size or 1
    with (
        mysql_option_file(config.user, config.password) as option_file,
        open(path, "rb") as dump,
        tempfile.TemporaryFile() as errors,
    ):
        connection = mysql_connection_args(option_file, config.host, config.port)
        command = [binary, *connection, config.database]
        proc = subprocess.Popen(command, stdin=dump, stdout=subprocess.DEVNULL, stderr=errors)
        while True:
            try:
                code = proc.wait(timeout=progress.interval_s)
                break
            except subprocess.TimeoutExpired:
                # The client reads our open file: its offset is how far the restore got.
                read = os.lseek(dump.fileno(), 0, os.SEEK_CUR)
                progress.update(read, read / size)
        if code != 0:
            errors.seek(0)
            message = errors.read().decode("utf-8", "replace").strip()
            raise RestoreFailed(f"mysql exited with {code}: {message[-500:]}")
    progress.update(size, 1.0, force=True)


def _restore_sqlite(backup: Backup, config: DatabaseConfig, progress: Progress) -> dict[str, int]:
    """sqlite3's backup API from the copy onto the live file: the whole database at once."""
    part = backup.database
    assert part is not None
    try:
        counts = sqlite_copy(sqlite_ro_uri(backup.path(part["file"])), config.path, progress, config.table_prefix)
    except sqlite3.Error as exc:
        raise RestoreFailed(f"restoring {config.path}: {exc}") from None
    return {t: i["rows"] for t, i in counts.items() if not i.get("absent")}
