"""The SQL side of a backup: column values as JSON, mysqldump files, MySQL and SQLite helpers."""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import os
import re
import sqlite3
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pymysql  # type: ignore[import-untyped]  # no stubs installed (types-PyMySQL)

from chat.cutover.backup_format import FormatError
from chat.cutover.common import Progress
from chat.settings import DatabaseConfig
from chat.store.migrations import ForeignSchema, columns_by_table, foreign_tables, mysql_columns_sql
from chat.store.schema import Tables

TABLE_PREFIX_VARIABLE = "DB_TABLE_PREFIX"  # the service's setting: its tables' names start with it

_IDENTIFIER = re.compile(r"[A-Za-z0-9_]{1,64}")


def identifier(name: str) -> str:
    """A table or column name, checked and backquoted: identifiers cannot be SQL parameters."""
    if not _IDENTIFIER.fullmatch(name):
        raise FormatError(f"not a plain SQL identifier: {name!r}")
    return f"`{name}`"


def sqlite_identifier(name: str) -> str:
    """The SQLite spelling of ``identifier``."""
    if not _IDENTIFIER.fullmatch(name):
        raise FormatError(f"not a plain SQL identifier: {name!r}")
    return f'"{name}"'


# --------------------------------------------------------------------------- SQL values


def encode_sql_value(value: Any) -> Any:
    """A column value as JSON: native types as they are, the others tagged (``{"$bytes": ...}``)."""
    if value is None or isinstance(value, (str, int, float)):
        return value
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {"$bytes": base64.b64encode(bytes(value)).decode("ascii")}
    if isinstance(value, decimal.Decimal):
        return {"$decimal": str(value)}
    if isinstance(value, dt.datetime):
        return {"$datetime": value.isoformat()}
    if isinstance(value, dt.date):
        return {"$date": value.isoformat()}
    if isinstance(value, dt.timedelta):
        return {"$timedelta_us": value // dt.timedelta(microseconds=1)}
    raise FormatError(f"cannot store a column value of type {type(value).__name__}")


def decode_sql_value(value: Any) -> Any:
    """The inverse of ``encode_sql_value``."""
    if not isinstance(value, dict):
        return value
    if len(value) != 1:
        raise FormatError(f"unknown tagged value {value!r}")
    ((tag, text),) = value.items()
    if tag == "$bytes":
        return base64.b64decode(text, validate=True)
    if tag == "$decimal":
        return decimal.Decimal(text)
    if tag == "$datetime":
        return dt.datetime.fromisoformat(text)
    if tag == "$date":
        return dt.date.fromisoformat(text)
    if tag == "$timedelta_us":
        return dt.timedelta(microseconds=text)
    raise FormatError(f"unknown tagged value {tag!r}")


# --------------------------------------------------------------------------- mysqldump files

_CREATE_TABLE = re.compile(rb"^CREATE TABLE `((?:[^`]|``)+)` \(")
_INSERT = re.compile(rb"^INSERT INTO `((?:[^`]|``)+)` (?:\([^)]*\) )?VALUES")
_QUOTED = re.compile(rb"'(?:[^'\\]|\\.)*'")


def count_dump_rows(path: Path) -> dict[str, int]:
    """Rows per table in a mysqldump file (every table it creates, 0 for an empty one).

    An INSERT holds one ``(...)`` tuple per row, all on its line (older mysqldump) or one per
    line (MariaDB 10.11+). mysqldump escapes newlines inside strings, so each string ends on
    its line; with the strings cut out (and --hex-blob, binary values are 0x...), every ``(``
    left opens a row, and a ``;`` at the end of a line ends the statement.
    """
    counts: dict[str, int] = {}
    table: str | None = None
    with open(path, "rb") as fh:
        for line in fh:
            rest = line
            if table is None:
                match = _INSERT.match(line)
                if match is None:
                    match = _CREATE_TABLE.match(line)
                    if match:
                        counts.setdefault(_dump_name(match.group(1)), 0)
                    continue
                table = _dump_name(match.group(1))
                rest = line[match.end() :]
            values = _QUOTED.sub(b"", rest)
            counts[table] = counts.get(table, 0) + values.count(b"(")
            if values.rstrip().endswith(b";"):
                table = None
    return counts


def _dump_name(quoted: bytes) -> str:
    return quoted.replace(b"``", b"`").decode("utf-8")


def _option_value(text: str) -> str:
    """A value for a MySQL option file: double-quoted with the escapes the client reads."""
    escaped = (
        text.replace("\\", "\\\\")
        .replace('"', '\\"')
        .replace("\n", "\\n")
        .replace("\r", "\\r")
        .replace("\t", "\\t")
    )
    return f'"{escaped}"'


@contextmanager
def mysql_option_file(user: str, password: str) -> Iterator[str]:
    """A 0600 option file with the credentials, so the password never shows on a command line."""
    fd, path = tempfile.mkstemp(prefix="chat-api-mysql-", suffix=".cnf")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write("[client]\n")
            fh.write(f"user={_option_value(user)}\n")
            if password:
                fh.write(f"password={_option_value(password)}\n")
        yield path
    finally:
        os.unlink(path)


def mysql_connection_args(option_file: str, host: str, port: int) -> list[str]:
    """The common arguments of mysqldump and mysql (the option file must come first)."""
    return [
        f"--defaults-extra-file={option_file}",
        "--protocol=TCP",  # the URL names a host and port; "localhost" would mean the socket
        f"--host={host}",
        f"--port={port}",
        "--default-character-set=utf8mb4",
    ]


# --------------------------------------------------------------------------- SQL helpers


def backup_tables(prefix: str) -> list[str]:
    """The tables a logical dump takes, parents first (children are restored after them): the
    service's, named with `prefix` (DB_TABLE_PREFIX as the service reads it: chat/cutover/targets.py)."""
    return Tables(prefix).all()


def backup_prefix(part: dict[str, Any]) -> str | None:
    """The DB_TABLE_PREFIX a backup's database part was taken with; None: not known (a mysqldump backup
    of a version that did not record it). Older logical and SQLite backups tell it by their tables."""
    prefix = part.get("table_prefix")
    if isinstance(prefix, str):
        return prefix
    tables = [str(t) for t in (part.get("order") if part.get("method") == "logical" else part.get("tables")) or []]
    first = Tables("").all()[0]
    if part.get("method") in ("logical", "sqlite") and tables and tables[0].endswith(first):
        candidate = tables[0][: -len(first)]
        try:
            return candidate if Tables(candidate).all() == tables else None
        except ValueError:  # not a prefix the service accepts
            return None
    return None


def mysql_connect(config: DatabaseConfig, **kwargs: Any) -> pymysql.connections.Connection:
    """A pymysql connection like the service's: utf8mb4, UTC, explicit transactions."""
    return pymysql.connect(
        host=config.host,
        port=config.port,
        user=config.user,
        password=config.password,
        database=config.database,
        charset="utf8mb4",
        autocommit=False,
        connect_timeout=10,
        init_command="SET SESSION time_zone = '+00:00'",
        **kwargs,
    )


def mysql_columns(cur: Any, table: str) -> tuple[list[str], list[str]]:
    """``(columns in table order, primary key columns)`` of a table in the current database."""
    cur.execute(
        "SELECT COLUMN_NAME FROM information_schema.COLUMNS "
        "WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = %s ORDER BY ORDINAL_POSITION",
        (table,),
    )
    columns = [row[0] for row in cur.fetchall()]
    cur.execute(
        "SELECT COLUMN_NAME FROM information_schema.KEY_COLUMN_USAGE "
        "WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = %s AND CONSTRAINT_NAME = 'PRIMARY' "
        "ORDER BY ORDINAL_POSITION",
        (table,),
    )
    return columns, [row[0] for row in cur.fetchall()]


def mysql_foreign_tables(cur: Any, prefix: str) -> str | None:
    """When tables under the service's names (`prefix`) have another shape (the old system's
    `users`, `messages`... with no prefix set), what the service's upgrade would say of them; else None."""
    tables = Tables(prefix)
    names = tables.all()
    cur.execute(mysql_columns_sql(len(names)), names)
    differences = foreign_tables(columns_by_table(cur.fetchall()), tables)
    return ForeignSchema(differences, tables.prefix).explain() if differences else None


def mysql_existing_tables(cur: Any) -> set[str]:
    """Names of the base tables of the current database."""
    cur.execute(
        "SELECT TABLE_NAME FROM information_schema.TABLES "
        "WHERE TABLE_SCHEMA = DATABASE() AND TABLE_TYPE = 'BASE TABLE'"
    )
    return {row[0] for row in cur.fetchall()}


def mysql_counts(config: DatabaseConfig, tables: list[str]) -> dict[str, int]:
    """Rows now in each of ``tables`` that exists (a read-only look, rolled back)."""
    conn = mysql_connect(config)
    try:
        with conn.cursor() as cur:
            existing = mysql_existing_tables(cur)
            counts = {}
            for table in tables:
                if table in existing:
                    cur.execute(f"SELECT COUNT(*) FROM {identifier(table)}")
                    counts[table] = int(cur.fetchone()[0])
        conn.rollback()
        return counts
    finally:
        conn.close()


def sqlite_counts(conn: sqlite3.Connection, prefix: str) -> dict[str, dict[str, Any]]:
    """Rows per schema table (named with `prefix`) of an SQLite database (absent tables marked so)."""
    existing = {
        row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
    }
    tables: dict[str, dict[str, Any]] = {}
    for table in backup_tables(prefix):
        if table in existing:
            (rows,) = conn.execute(f"SELECT COUNT(*) FROM {sqlite_identifier(table)}").fetchone()
            tables[table] = {"rows": rows}
        else:
            tables[table] = {"rows": 0, "absent": True}
    return tables


def sqlite_copy(
    source_uri: str, target: Path | str, progress: Progress, prefix: str
) -> dict[str, dict[str, Any]]:
    """sqlite3's backup API, page by page (consistent while another process writes); rows per table after."""
    source = sqlite3.connect(source_uri, uri=True)
    try:
        copy = sqlite3.connect(target)
        try:
            source.backup(copy, pages=1024, progress=lambda _s, left, total: _pages_done(progress, total - left, total))
            return sqlite_counts(copy, prefix)
        finally:
            copy.close()
    finally:
        source.close()


def _pages_done(progress: Progress, done: int, total: int) -> None:
    progress.update(done, done / total if total else None)
