"""The database part of a backup: mysqldump, a logical JSON-lines snapshot, or an SQLite copy."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pymysql  # type: ignore[import-untyped]  # no stubs installed (types-PyMySQL)
import pymysql.cursors  # type: ignore[import-untyped]

from chat.cutover.backup_format import DATABASE_DIR, MYSQLDUMP_FILE, SQLITE_FILE, dumps
from chat.cutover.backup_sql import (
    backup_tables,
    count_dump_rows,
    encode_sql_value,
    identifier,
    mysql_columns,
    mysql_connect,
    mysql_connection_args,
    mysql_counts,
    mysql_existing_tables,
    mysql_foreign_tables,
    mysql_option_file,
    sqlite_copy,
    sqlite_counts,
)
from chat.cutover.common import Progress
from chat.settings import DatabaseConfig

ROW_BATCH = 1000


class BackupFailed(Exception):
    """A part of the backup could not be taken; the directory gets no manifest."""


def backup_mysql_logical(config: DatabaseConfig, out: Path, progress: Progress) -> dict[str, Any]:
    """Every schema table as JSON lines, all read in one consistent snapshot."""
    tables: dict[str, dict[str, Any]] = {}
    total = 0
    order = backup_tables(config.table_prefix)
    try:
        conn = mysql_connect(config, cursorclass=pymysql.cursors.SSCursor)
    except pymysql.MySQLError as exc:
        raise BackupFailed(f"cannot connect to {config.describe()}: {exc}") from None
    try:
        with conn.cursor() as cur:
            cur.execute("SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            cur.execute("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")
            foreign = mysql_foreign_tables(cur, config.table_prefix)
            if foreign is not None:  # a rollback would put another system's tables back as if they were ours
                raise BackupFailed(foreign)
            existing = mysql_existing_tables(cur)
            for index, table in enumerate(order):
                if table not in existing:
                    tables[table] = {"rows": 0, "absent": True}
                    continue
                columns, key = mysql_columns(cur, table)
                select = ", ".join(identifier(c) for c in columns)
                by = ", ".join(identifier(c) for c in (key or columns))
                cur.execute(f"SELECT {select} FROM {identifier(table)} ORDER BY {by}")
                rel = f"{DATABASE_DIR}/{table}.jsonl"
                rows = 0
                with open(out / rel, "wb") as fh:
                    while chunk := cur.fetchmany(ROW_BATCH):
                        fh.write(
                            b"".join(
                                dumps([encode_sql_value(v) for v in row]) + b"\n" for row in chunk
                            )
                        )
                        rows += len(chunk)
                        progress.update(total + rows, (index + 0.5) / len(order))
                os.chmod(out / rel, 0o600)
                tables[table] = {"rows": rows, "columns": columns, "file": rel}
                total += rows
            conn.rollback()  # a read-only snapshot: nothing to commit
    except pymysql.MySQLError as exc:
        raise BackupFailed(f"reading {config.describe()}: {exc}") from None
    finally:
        conn.close()
    progress.update(total, 1.0, force=True)
    return {"method": "logical", "order": order, "tables": tables}


def backup_mysqldump(
    binary: str, config: DatabaseConfig, out: Path, progress: Progress
) -> dict[str, Any]:
    """``mysqldump --single-transaction`` of the whole database into one file."""
    path = out / MYSQLDUMP_FILE
    with (
        mysql_option_file(config.user, config.password) as option_file,
        open(path, "wb") as fh,
        tempfile.TemporaryFile() as errors,
    ):
        command = [
            binary,
            *mysql_connection_args(option_file, config.host, config.port),
            "--single-transaction",
            "--no-tablespaces",
            "--hex-blob",  # binary values as 0x...: the row count below needs no binary parsing
            "--skip-dump-date",
            config.database,
        ]
        proc = subprocess.Popen(command, stdout=fh, stderr=errors)
        while True:
            try:
                code = proc.wait(timeout=progress.interval_s)
                break
            except subprocess.TimeoutExpired:
                progress.update(path.stat().st_size)
        if code != 0:
            errors.seek(0)
            message = errors.read().decode("utf-8", "replace").strip()
            raise BackupFailed(f"mysqldump exited with {code}: {message[-500:]}")
    os.chmod(path, 0o600)
    progress.update(path.stat().st_size, 1.0, force=True)
    counts = count_dump_rows(path)
    tables = {name: {"rows": rows} for name, rows in counts.items()}
    return {"method": "mysqldump", "file": MYSQLDUMP_FILE, "tables": tables}


def backup_sqlite(config: DatabaseConfig, out: Path, progress: Progress) -> dict[str, Any]:
    """A page-by-page copy with sqlite3's backup API (consistent even while the service writes)."""
    source_path = Path(config.path)
    if not source_path.is_file():
        raise BackupFailed(f"no SQLite database at {config.path}")
    path = out / SQLITE_FILE
    try:
        tables = sqlite_copy(source_path.resolve().as_uri() + "?mode=ro", path, progress, config.table_prefix)
    except sqlite3.Error as exc:
        raise BackupFailed(f"copying {config.path}: {exc}") from None
    os.chmod(path, 0o600)
    return {"method": "sqlite", "file": SQLITE_FILE, "tables": tables}


def count_rows(config: DatabaseConfig) -> dict[str, int | None]:
    """Rows per schema table as they are now (None: absent), for a dry run."""
    if config.kind == "sqlite":
        if not Path(config.path).is_file():
            raise BackupFailed(f"no SQLite database at {config.path}")
        conn = sqlite3.connect(Path(config.path).resolve().as_uri() + "?mode=ro", uri=True)
        try:
            return {
                t: (None if i.get("absent") else i["rows"]) for t, i in sqlite_counts(conn, config.table_prefix).items()
            }
        finally:
            conn.close()
    try:
        counts = mysql_counts(config, backup_tables(config.table_prefix))
    except pymysql.MySQLError as exc:
        raise BackupFailed(f"{config.describe()}: {exc}") from None
    return {table: counts.get(table) for table in backup_tables(config.table_prefix)}
