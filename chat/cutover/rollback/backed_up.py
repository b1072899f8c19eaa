"""The rows a backup holds, as digests: which live rows are not in the backup as they were.

The time columns (saved.SAVE_RULES) miss rows written after the backup with times from before it:
``--restore-saved`` and ``db import-legacy`` keep a row's original ``created_ms``/``updated_ms``. So the
rollback also saves every live row whose digest (8 bytes of BLAKE2b over its values, in the backup's
column order, encoded as in the logical dump) is not among the digests of the backed-up rows of its
table: a row added since, or changed since, whatever its times. One table at a time: its backed-up
rows are read once (the logical dump's table file, the SQLite copy, or the mysqldump file's INSERTs)
into a set of 64-bit numbers (about 70 bytes of memory per backed-up row of that table), then the live
table is read once. A value the two sides spell differently (a float, a column added since) makes the
row look changed: it is saved, never lost.
"""

from __future__ import annotations

import decimal
import hashlib
import re
import sqlite3
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import orjson

from chat.cutover.backup_format import iter_jsonl
from chat.cutover.backup_sql import decode_sql_value, encode_sql_value, sqlite_identifier
from chat.cutover.rollback.checks import Backup, sqlite_ro_uri


def digest(values: list[Any]) -> int:
    """A row's 64-bit digest: its values (JSON-encoded as in the logical dump) in the backup's order."""
    data = orjson.dumps([encode_sql_value(v) for v in values])
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "big")


class BackedUp:
    """The backed-up rows of one backup, table by table, as ``(columns, digests)``."""

    def __init__(self, backup: Backup) -> None:
        assert backup.database is not None
        self.backup = backup
        self.part: dict[str, Any] = backup.database

    def digests(self, table: str) -> tuple[list[str], set[int]] | None:
        """The table's backed-up columns and the digests of its rows; None: not in the backup."""
        info = self.part["tables"].get(table)
        if info is None:
            return None
        if info.get("absent"):
            return [], set()
        method = self.part["method"]
        if method == "logical":
            columns = list(info["columns"])
            path = self.backup.path(info["file"])
            return columns, {digest([decode_sql_value(v) for v in row]) for _number, row in iter_jsonl(path)}
        if method == "sqlite":
            return _sqlite_digests(self.backup.path(self.part["file"]), table)
        columns, rows = [], set()
        for names, row in dump_rows(self.backup.path(self.part["file"]), table):
            columns = names
            rows.add(digest(row))
        return columns, rows


def _sqlite_digests(path: Path, table: str) -> tuple[list[str], set[int]]:
    with closing(sqlite3.connect(sqlite_ro_uri(path), uri=True)) as conn:
        columns = [row[1] for row in conn.execute(f"PRAGMA table_info({sqlite_identifier(table)})")]
        if not columns:
            return [], set()
        cursor = conn.execute(f"SELECT * FROM {sqlite_identifier(table)}")
        return columns, {digest(list(row)) for row in cursor}


# --------------------------------------------------------------------------- mysqldump files

_CREATE_TABLE = re.compile(rb"^CREATE TABLE `((?:[^`]|``)+)` \(")
_COLUMN = re.compile(rb"^  `((?:[^`]|``)+)` ")
_INSERT = re.compile(rb"^INSERT INTO `((?:[^`]|``)+)` VALUES")
# mysqldump --hex-blob: strings (backslash escapes), 0x... binaries, NULL, numbers, and the punctuation
_TOKEN = re.compile(rb"'(?:[^'\\]|\\.)*'|0x[0-9A-Fa-f]*|NULL|[-+]?[0-9][0-9.eE+-]*|[();]")
_ESCAPES = {b"0": b"\0", b"b": b"\b", b"n": b"\n", b"r": b"\r", b"t": b"\t", b"Z": b"\x1a"}
_ESCAPE = re.compile(rb"\\(.)", re.DOTALL)


def _name(quoted: bytes) -> str:
    return quoted.replace(b"``", b"`").decode("utf-8")


def _value(token: bytes) -> Any:
    """A mysqldump value as pymysql reads the column: str, bytes (0x...), None, int or Decimal."""
    if token.startswith(b"'"):
        raw = _ESCAPE.sub(lambda m: _ESCAPES.get(m.group(1), m.group(1)), token[1:-1])
        return raw.decode("utf-8", "surrogateescape")
    if token.startswith(b"0x"):
        return bytes.fromhex(token[2:].decode("ascii"))
    if token == b"NULL":
        return None
    number = token.decode("ascii")
    try:
        return int(number)
    except ValueError:
        return decimal.Decimal(number)


def dump_rows(path: Path, table: str) -> Iterator[tuple[list[str], list[Any]]]:
    """``(columns, values)`` of every row of one table in a mysqldump file (its CREATE TABLE's column order)."""
    columns: list[str] = []
    row: list[Any] = []
    for kind, text in _table_lines(path, table):
        if kind == "column":
            columns.append(_name(text))
            continue
        for token in _TOKEN.findall(text):
            if token == b"(":
                row = []
            elif token == b")":
                yield columns, row
            elif token != b";":
                row.append(_value(token))


def _table_lines(path: Path, table: str) -> Iterator[tuple[str, bytes]]:
    """One table's parts of a mysqldump file: ``("column", name)`` of its CREATE TABLE, ``("values",
    text)`` of its INSERTs. A statement's last line ends with ``;`` (mysqldump escapes newlines in strings)."""
    creating = inserting = skipping = False
    with open(path, "rb") as fh:
        for line in fh:
            ends = line.rstrip().endswith(b";")
            if inserting:  # within this table's INSERT
                yield "values", line
                inserting = not ends
                continue
            if skipping:  # within another table's
                skipping = not ends
                continue
            if creating:
                column = _COLUMN.match(line)
                if column:
                    yield "column", column.group(1)
                creating = not line.startswith(b")")
                continue
            create = _CREATE_TABLE.match(line)
            insert = _INSERT.match(line) if create is None else None
            if create is not None:
                creating = _name(create.group(1)) == table
            elif insert is not None and _name(insert.group(1)) == table:
                yield "values", line[insert.end():]
                inserting = not ends
            elif insert is not None:
                skipping = not ends
