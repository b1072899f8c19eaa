"""The backup directory format shared by backup.py and rollback.py (docs/backup.md).

Layout of a backup directory::

    manifest.json            written last: a directory without it is an incomplete backup
    redis/keys.jsonl         one JSON object per key: key, type, pttl, expire_at_ms, dump
    database/...             mysqldump.sql | <table>.jsonl per table | sqlite.db
    config/<n>-<name>        the configuration files, byte for byte

No I/O at import. Besides the standard library it needs orjson, pymysql and, from this
repository, the schema's table list (chat.store.schema) and DatabaseConfig (chat.settings).
"""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import hashlib
import json
import os
import re
import sqlite3
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson
import pymysql
from _common import mask_url

from chat.settings import DatabaseConfig
from chat.store.schema import table_names

FORMAT_NAME = "chat-api-backup"
FORMAT_VERSION = 1
TOOL_VERSION = "1.0.0"

MANIFEST = "manifest.json"
REDIS_FILE = "redis/keys.jsonl"
DATABASE_DIR = "database"
MYSQLDUMP_FILE = f"{DATABASE_DIR}/mysqldump.sql"
SQLITE_FILE = f"{DATABASE_DIR}/sqlite.db"
CONFIG_DIR = "config"

# The guide's defaults (legacy/migration-guide.md): the migration writes Redis db 1.
DEFAULT_REDIS_URL = "redis://localhost:6379/1"
DEFAULT_DATABASE_URL = "mysql://root@localhost:3306/chat_api"
SESSION_PATTERN = "session:*"
SESSION_PREFIX = b"session:"

# Bookkeeping table of `chat-api db upgrade`; not in table_names() but part of the schema.
SCHEMA_VERSION_TABLE = "schema_version"

_IDENTIFIER = re.compile(r"[A-Za-z0-9_]{1,64}")
_GLOB_SPECIAL = re.compile(r"([*?\[\]\\])")


class FormatError(Exception):
    """A backup file that does not have the expected shape."""


# --------------------------------------------------------------------------- small helpers


def default_url(env: Mapping[str, str], name: str, fallback: str) -> str:
    """The service's variable (REDIS_URL, DATABASE_URL) when set and not empty, else the guide's."""
    value = env.get(name, "").strip()
    return value or fallback


def show_database(url: str, config: DatabaseConfig) -> str:
    """A database URL fit to print: masked; an SQLite path as given (mask_url drops a slash)."""
    return config.describe() if config.kind == "sqlite" else mask_url(url)


def redis_time_ms(reply: Any) -> int:
    """A Redis TIME reply (seconds, microseconds) as epoch milliseconds."""
    seconds, micros = reply
    return int(seconds) * 1000 + int(micros) // 1000


def prefix_pattern(prefix: str) -> str:
    """A SCAN MATCH pattern for every key starting with ``prefix`` (glob characters escaped)."""
    return _GLOB_SPECIAL.sub(r"\\\1", prefix) + "*"


def default_patterns(prefixes: tuple[str, ...] | list[str]) -> list[str]:
    """``session:*`` and one pattern per key prefix the service writes, without duplicates."""
    patterns = [SESSION_PATTERN]
    for prefix in prefixes:
        pattern = prefix_pattern(prefix)
        if pattern not in patterns:
            patterns.append(pattern)
    return patterns


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


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def dumps(value: Any) -> bytes:
    """Compact JSON; the standard library takes over for what orjson refuses (ints over 64 bits)."""
    try:
        return orjson.dumps(value)
    except (orjson.JSONEncodeError, TypeError):
        return json.dumps(
            value, separators=(",", ":"), ensure_ascii=False, allow_nan=False
        ).encode()


def loads(raw: bytes | str) -> Any:
    """Parse JSON, with the standard library as the fallback (for lone surrogate escapes).

    orjson reads an integer outside [-2**63, 2**64) as a float, without an error; the files
    read here hold none (epoch ms, and column values of MySQL's 64-bit integer types).
    """
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return json.loads(raw)


def iter_jsonl(path: Path) -> Iterator[tuple[int, Any]]:
    """``(line number, parsed object)`` for every line of a JSON-lines file."""
    with open(path, "rb") as fh:
        for number, line in enumerate(fh, 1):
            try:
                yield number, loads(line)
            except ValueError as exc:
                raise FormatError(f"{path.name} line {number}: not JSON ({exc})") from None


def write_json_atomic(path: Path, value: Any, mode: int = 0o600) -> None:
    """Write ``value`` as indented JSON through a temporary file and a rename."""
    data = orjson.dumps(value, option=orjson.OPT_INDENT_2) + b"\n"
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# --------------------------------------------------------------------------- redis entries

# The first byte of a DUMP payload is the RDB object type: a name for people reading the file.
_RDB_TYPES = {
    0: "string",
    1: "list",
    2: "set",
    3: "zset",
    4: "hash",
    5: "zset",
    6: "module",
    7: "module",
    9: "hash",
    10: "list",
    11: "set",
    12: "zset",
    13: "hash",
    14: "list",
    15: "stream",
    16: "hash",
    17: "zset",
    18: "list",
    19: "stream",
    20: "set",
    21: "stream",
}


def dump_type(payload: bytes) -> str:
    """The Redis type of a DUMP payload (``unknown`` for an RDB type this table does not know)."""
    return _RDB_TYPES.get(payload[0], "unknown") if payload else "unknown"


def encode_entry(key: bytes, payload: bytes, pttl: int, expire_at_ms: int | None) -> bytes:
    """One line of redis/keys.jsonl (with its newline)."""
    entry: dict[str, Any]
    try:
        entry = {"key": key.decode("utf-8")}
    except UnicodeDecodeError:
        entry = {"key_b64": base64.b64encode(key).decode("ascii")}
    entry["type"] = dump_type(payload)
    entry["pttl"] = pttl
    entry["expire_at_ms"] = expire_at_ms
    entry["dump"] = base64.b64encode(payload).decode("ascii")
    return orjson.dumps(entry) + b"\n"


def decode_entry(obj: Any, where: str) -> tuple[bytes, bytes, int | None]:
    """``(key, DUMP payload, absolute expiry ms or None)`` of a parsed line; FormatError if bad."""
    if not isinstance(obj, dict):
        raise FormatError(f"{where}: not a JSON object")
    try:
        if "key" in obj:
            key = obj["key"].encode("utf-8")
        else:
            key = base64.b64decode(obj["key_b64"], validate=True)
        payload = base64.b64decode(obj["dump"], validate=True)
        expire_at_ms = obj["expire_at_ms"]
    except (KeyError, AttributeError, TypeError, ValueError) as exc:
        raise FormatError(f"{where}: missing or malformed field ({exc})") from None
    if expire_at_ms is not None and (type(expire_at_ms) is not int or expire_at_ms <= 0):
        raise FormatError(f"{where}: expire_at_ms is not a positive integer")
    if len(payload) < 11:
        raise FormatError(f"{where}: DUMP payload too short")
    return key, payload, expire_at_ms


def decode_string_dump(payload: bytes) -> bytes | None:
    """The value of a string key from its DUMP payload; None for another type or an odd payload.

    Rollback needs the backed-up value of a few session records (the originals that make the
    reverse migration lossless) without writing them to Redis first. A string is one RDB
    string object: plain, an integer encoding, or LZF-compressed; then the 2-byte RDB version
    and the 8-byte CRC, which the backup's SHA-256 already covers.
    """
    if not payload or payload[0] != 0:
        return None
    try:
        value, end = _rdb_string(payload, 1)
    except (IndexError, ValueError):
        return None
    return value if end == len(payload) - 10 else None


def _rdb_length(data: bytes, pos: int) -> tuple[int, bool, int]:
    """``(length or encoding, is_encoded, next position)`` of an RDB length field."""
    first = data[pos]
    kind = first >> 6
    if kind == 0:
        return first & 0x3F, False, pos + 1
    if kind == 1:
        return ((first & 0x3F) << 8) | data[pos + 1], False, pos + 2
    if kind == 3:
        return first & 0x3F, True, pos + 1
    if first == 0x80:
        return int.from_bytes(data[pos + 1 : pos + 5], "big"), False, pos + 5
    if first == 0x81:
        return int.from_bytes(data[pos + 1 : pos + 9], "big"), False, pos + 9
    raise ValueError(f"unknown RDB length byte {first:#x}")


def _rdb_string(data: bytes, pos: int) -> tuple[bytes, int]:
    length, encoded, pos = _rdb_length(data, pos)
    if not encoded:
        if pos + length > len(data):
            raise ValueError("truncated string")
        return data[pos : pos + length], pos + length
    if length in (0, 1, 2):  # 8, 16, 32-bit little-endian signed integers
        size = 1 << length
        number = int.from_bytes(data[pos : pos + size], "little", signed=True)
        return str(number).encode("ascii"), pos + size
    if length == 3:  # LZF
        compressed_len, _, pos = _rdb_length(data, pos)
        plain_len, _, pos = _rdb_length(data, pos)
        end = pos + compressed_len
        return lzf_decompress(data[pos:end], plain_len), end
    raise ValueError(f"unknown RDB string encoding {length}")


def lzf_decompress(data: bytes, expected_len: int) -> bytes:
    """liblzf's format, as Redis writes it for strings over 20 bytes."""
    out = bytearray()
    pos, size = 0, len(data)
    while pos < size:
        ctrl = data[pos]
        pos += 1
        if ctrl < 32:  # a literal run of ctrl + 1 bytes
            run = ctrl + 1
            if pos + run > size:
                raise ValueError("truncated LZF literal")
            out += data[pos : pos + run]
            pos += run
            continue
        length = ctrl >> 5
        if length == 7:
            length += data[pos]
            pos += 1
        ref = len(out) - ((ctrl & 0x1F) << 8) - data[pos] - 1
        pos += 1
        length += 2
        if ref < 0:
            raise ValueError("LZF back reference before the start")
        if ref + length <= len(out):
            out += out[ref : ref + length]
        else:  # overlapping copy: byte by byte, as in C
            for i in range(length):
                out.append(out[ref + i])
    if len(out) != expected_len:
        raise ValueError("LZF length mismatch")
    return bytes(out)


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
            if table is None:
                match = _INSERT.match(line)
                if match is None:
                    match = _CREATE_TABLE.match(line)
                    if match:
                        counts.setdefault(_dump_name(match.group(1)), 0)
                    continue
                table = _dump_name(match.group(1))
                line = line[match.end() :]
            values = _QUOTED.sub(b"", line)
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


def backup_tables() -> list[str]:
    """The tables a logical dump takes, parents first (children are restored after them)."""
    return [*table_names(), SCHEMA_VERSION_TABLE]


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


def sqlite_counts(conn: sqlite3.Connection) -> dict[str, dict[str, Any]]:
    """Rows per schema table of an SQLite database (absent tables marked so)."""
    existing = {
        row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
    }
    tables: dict[str, dict[str, Any]] = {}
    for table in backup_tables():
        if table in existing:
            (rows,) = conn.execute(f"SELECT COUNT(*) FROM {sqlite_identifier(table)}").fetchone()
            tables[table] = {"rows": rows}
        else:
            tables[table] = {"rows": 0, "absent": True}
    return tables
