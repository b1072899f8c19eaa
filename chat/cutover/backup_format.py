"""The backup directory format shared by backup and rollback (docs/backup.md).

Layout of a backup directory::

    manifest.json            written last: a directory without it is an incomplete backup
    redis/keys.jsonl         one JSON object per key: key, type, pttl, expire_at_ms, dump
    database/...             mysqldump.sql | <table>.jsonl per table | sqlite.db
    config/<n>-<name>        the configuration files, byte for byte

No I/O at import. backup_sql.py holds the SQL side, backup_rdb.py reads DUMP payloads.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import orjson

from chat.cutover.common import mask_url
from chat.cutover.records import compact_json
from chat.settings import DatabaseConfig
from states import redis_keys

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
SESSION_PATTERN = f"{redis_keys.SESSION_PREFIX}*"
SESSION_PREFIX = redis_keys.SESSION_PREFIX.encode()

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


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()



def dumps(value: Any) -> bytes:
    """Compact JSON; the standard library takes over for what orjson refuses (ints over 64 bits)."""
    return compact_json(value, ensure_ascii=False)


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
        key = obj["key"].encode("utf-8") if "key" in obj else base64.b64decode(obj["key_b64"], validate=True)
        payload = base64.b64decode(obj["dump"], validate=True)
        expire_at_ms = obj["expire_at_ms"]
    except (KeyError, AttributeError, TypeError, ValueError) as exc:
        raise FormatError(f"{where}: missing or malformed field ({exc})") from None
    if expire_at_ms is not None and (type(expire_at_ms) is not int or expire_at_ms <= 0):
        raise FormatError(f"{where}: expire_at_ms is not a positive integer")
    if len(payload) < 11:
        raise FormatError(f"{where}: DUMP payload too short")
    return key, payload, expire_at_ms


