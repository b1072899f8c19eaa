"""Restore a backup taken by backup.py: Redis keys with their TTLs, the SQL tables, the .env files.

The backup is checked first (manifest, every SHA-256, every count): anything off and nothing
is touched. Then the plan is shown and confirmed. With ``--reverse-migrate`` the sessions
created or changed since the backup are not lost: they are turned back into the old Node.js
record (the inverse of migrate_redis.convert) so the old services can carry them on.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path, PurePosixPath
from typing import Any, TypeVar

_HERE = os.path.dirname(os.path.abspath(__file__))
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

import migrate_redis as mr  # noqa: E402
import orjson  # noqa: E402
import pymysql  # noqa: E402
import redis  # noqa: E402
from _backup_format import (  # noqa: E402
    DEFAULT_DATABASE_URL,
    DEFAULT_REDIS_URL,
    FORMAT_NAME,
    FORMAT_VERSION,
    MANIFEST,
    SESSION_PREFIX,
    FormatError,
    count_dump_rows,
    decode_entry,
    decode_sql_value,
    decode_string_dump,
    default_url,
    identifier,
    iter_jsonl,
    mysql_columns,
    mysql_connect,
    mysql_connection_args,
    mysql_counts,
    mysql_existing_tables,
    mysql_option_file,
    redis_time_ms,
    sha256_file,
    show_database,
    sqlite_counts,
    sqlite_identifier,
)
from _common import (  # noqa: E402
    EXIT_FAILURE,
    EXIT_OK,
    EXIT_USAGE,
    Progress,
    format_duration,
    mask_url,
    positive_int,
)
from backup import scan_keys, timed_read  # noqa: E402

from chat.settings import (  # noqa: E402
    DatabaseConfig,
    SettingsError,
    parse_database_url,
    parse_redis_url,
)

DEFAULT_BATCH = 500
ROW_BATCH = 1000
MYSQL = "mysql"

T = TypeVar("T")


def chunks(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    """``items`` in slices of ``size``."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


# --------------------------------------------------------------------------- reverse migration

# The old record's fields, in the order the old service wrote them.
OLD_ORDER = ("userId", "agent", "context", "metadata", "createdAt", "updatedAt")
_ABSENT: Any = type("Absent", (), {"__repr__": lambda self: "<absent>"})()
_UNPARSEABLE = "<unparseable>"
_NUMERIC = re.compile(r"[+-]?\d+(?:\.\d*)?")  # epoch ms as text, as migrate_redis reads it
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class ReverseError(Exception):
    """A new-format record that cannot be turned back into an old one."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


def old_agent(record: dict[str, Any]) -> str:
    """The old ``agent``: ``human`` in handoff and human, ``ai`` in ai; closed keeps agent_type."""
    state = record.get("state")
    if state in ("handoff", "human"):
        return "human"
    if state == "ai":
        return "ai"
    if state not in (None, "closed"):
        raise ReverseError("bad_state", f"state is not one of ai/handoff/human/closed: {state!r}")
    agent_type = record.get("agent_type")
    if agent_type not in mr.AGENT_TYPES:
        raise ReverseError("bad_agent_type", f"agent_type is not 'ai' or 'human': {agent_type!r}")
    return agent_type


def to_old(record: dict[str, Any], original: dict[str, Any] | None = None) -> dict[str, Any]:
    """The old Node.js record for a PROTOCOL 5 record: the inverse of migrate_redis.convert.

    ``user_id -> userId``, state/agent_type -> ``agent``, ``context``, ``metadata``,
    ``created_at -> createdAt``, ``updated_at -> updatedAt``. ``state`` beyond ai/human,
    ``version``, ``agent_id``, ``team_id`` and ``handoff_at`` have no place in the old record.
    With the ``original`` old record the key was migrated from, every field the conversation
    has not changed since takes the original's raw form back (an epoch-ms ``createdAt``, a
    numeric ``userId``, an absent ``metadata``, fields the migration dropped), so an unchanged
    record comes back exactly as it was.
    """
    user_id = record.get("user_id")
    if type(user_id) is not str or not user_id:
        raise ReverseError("bad_user_id", f"user_id is not a non-empty string: {user_id!r}")
    context = record.get("context")
    if context is None:
        context = {}
    if not isinstance(context, dict):
        raise ReverseError("bad_context", "context is not an object")
    old: dict[str, Any] = {"userId": user_id, "agent": old_agent(record), "context": context}
    metadata = record.get("metadata")
    if metadata is not None:
        if not isinstance(metadata, dict):
            raise ReverseError("bad_metadata", "metadata is not an object")
        old["metadata"] = metadata
    for new_name, old_name in (("created_at", "createdAt"), ("updated_at", "updatedAt")):
        value = record.get(new_name)
        if value is None:
            continue
        if type(value) is not str or _canonical_stamp(value) in (None, _UNPARSEABLE):
            problem = f"{new_name} is not an ISO 8601 timestamp: {value!r}"
            raise ReverseError("bad_timestamp", problem)
        old[old_name] = value
    if original is None:
        return old
    return _like_original(old, original)


def _canonical_stamp(value: Any) -> str | None:
    """What migrate_redis makes of a timestamp value (None: absent; _UNPARSEABLE: refused)."""
    if value is _ABSENT:
        return None
    try:
        return mr.parse_timestamp(value, "timestamp")
    except mr.ConversionError:
        return _UNPARSEABLE


def _migrated_user_id(value: Any) -> Any:
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value


def _like_original(old: dict[str, Any], original: dict[str, Any]) -> dict[str, Any]:
    """``old`` with the original's raw value for every field that converts to the same value."""

    def raw(name: str) -> Any:
        return original.get(name, _ABSENT)

    fields: dict[str, Any] = {}
    value = raw("userId")
    fields["userId"] = value if _migrated_user_id(value) == old["userId"] else old["userId"]
    value = raw("agent")
    as_migrated = "ai" if value in (_ABSENT, None) else value  # absent or null meant "ai"
    fields["agent"] = value if as_migrated == old["agent"] else old["agent"]
    for name in ("context", "metadata"):
        value = raw(name)
        current = old.get(name, {})
        as_migrated = {} if value in (_ABSENT, None) else value
        fields[name] = value if _same_json(as_migrated, current) else old.get(name, _ABSENT)

    created, updated = _canonical_stamp(raw("createdAt")), _canonical_stamp(raw("updatedAt"))
    now_created = _canonical_stamp(old.get("createdAt", _ABSENT))
    now_updated = _canonical_stamp(old.get("updatedAt", _ABSENT))
    # migrate_redis: created = createdAt or updatedAt, updated = updatedAt or createdAt; with
    # neither, both are the migration time (unknown here, but created_at never changes after).
    if created is not None:
        same = created == now_created
        fields["createdAt"] = raw("createdAt") if same else _styled(old, "createdAt", raw)
    elif updated is None or updated == now_created:
        fields["createdAt"] = raw("createdAt")
    else:
        fields["createdAt"] = old.get("createdAt", _ABSENT)
    if updated is not None:
        same = updated == now_updated
        fields["updatedAt"] = raw("updatedAt") if same else _styled(old, "updatedAt", raw)
    elif now_updated == (created if created is not None else now_created):
        fields["updatedAt"] = raw("updatedAt")
    else:
        fields["updatedAt"] = old.get("updatedAt", _ABSENT)

    result: dict[str, Any] = {}
    for name, value in original.items():  # the original's key order, dropped fields included
        if name not in mr.OLD_FIELDS:
            result[name] = value
        elif fields[name] is not _ABSENT:
            result[name] = fields[name]
    for name in OLD_ORDER:
        if name not in original and fields[name] is not _ABSENT:
            result[name] = fields[name]
    return result


def _styled(old: dict[str, Any], name: str, original: Callable[[str], Any]) -> Any:
    """A changed timestamp in the style the original used (epoch ms stays epoch ms)."""
    raw = original(name)
    value = old.get(name, _ABSENT)
    if value is _ABSENT:
        return _ABSENT
    stamp = _canonical_stamp(value)
    if isinstance(raw, (int, float)) and not isinstance(raw, bool):
        return iso_ms(stamp)
    if isinstance(raw, str) and _NUMERIC.fullmatch(raw.strip()):
        return str(iso_ms(stamp))
    return value


def iso_ms(stamp: str) -> int:
    """A canonical ``YYYY-MM-DDTHH:MM:SS.mmmZ`` as epoch milliseconds."""
    moment = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    return (moment - _EPOCH) // timedelta(milliseconds=1)


def canonical_json(value: Any) -> bytes:
    """Sorted-key compact JSON: equal exactly when the JSON values are equal (1 != 1.0)."""
    try:
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
    except (orjson.JSONEncodeError, TypeError):
        return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def _same_json(a: Any, b: Any) -> bool:
    return canonical_json(a) == canonical_json(b)


def encode_old(old: dict[str, Any], original: tuple[dict[str, Any], bytes] | None = None) -> bytes:
    """The bytes to write: the original's own bytes when nothing differs, else compact JSON."""
    if original is not None and _same_json(old, original[0]):
        return original[1]
    try:
        return mr.dumps(old)
    except mr.ConversionError as exc:
        raise ReverseError("bad_value", exc.reason) from None


def is_old_format(obj: Any) -> bool:
    """An old Node.js record: an object with ``userId`` and not the new format."""
    return isinstance(obj, dict) and "userId" in obj and not mr.is_new_format(obj)


def newest_ms(obj: dict[str, Any]) -> int | None:
    """The later of a record's two timestamps (either format) in epoch ms; None: neither parses."""
    names = ("updated_at", "created_at") if mr.is_new_format(obj) else ("updatedAt", "createdAt")
    newest = None
    for name in names:
        stamp = _canonical_stamp(obj.get(name))
        if stamp in (None, _UNPARSEABLE):
            continue
        ms = iso_ms(stamp)
        newest = ms if newest is None else max(newest, ms)
    return newest


# --------------------------------------------------------------------------- the backup


class BackupInvalid(Exception):
    """The backup does not check out; ``problems`` says why."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


@dataclass
class Backup:
    """A checked backup directory."""

    root: Path
    manifest: dict[str, Any]
    expiries: dict[bytes, int | None] = field(default_factory=dict)  # key -> absolute expiry
    warnings: list[str] = field(default_factory=list)

    @property
    def backup_ms(self) -> int:
        return self.manifest["backup_ms"]

    @property
    def redis(self) -> dict[str, Any] | None:
        return self.manifest["redis"]

    @property
    def database(self) -> dict[str, Any] | None:
        return self.manifest["database"]

    @property
    def config(self) -> list[dict[str, Any]]:
        return self.manifest["config"]

    def path(self, rel: str) -> Path:
        return self.root / rel

    def entries(self) -> Iterator[tuple[bytes, bytes, int | None]]:
        """``(key, DUMP payload, absolute expiry)`` of every backed-up key, from the file."""
        assert self.redis is not None
        for number, obj in iter_jsonl(self.path(self.redis["file"])):
            yield decode_entry(obj, f"{self.redis['file']} line {number}")


def load_backup(root: Path, progress: Progress | None = None) -> Backup:
    """Read and check a backup directory; BackupInvalid lists every problem found."""
    manifest_path = root / MANIFEST
    if not manifest_path.is_file():
        raise BackupInvalid([f"{manifest_path}: missing (not a backup, or an incomplete one)"])
    try:
        manifest = json.loads(manifest_path.read_bytes())
    except (ValueError, OSError) as exc:
        raise BackupInvalid([f"{MANIFEST}: not readable JSON ({exc})"]) from None
    _check_shape(manifest)
    backup = Backup(root.resolve(), manifest)
    problems = _check_files(backup, progress or Progress("verify", enabled=False))
    if problems:  # nothing more is read from files that are not the ones backed up
        raise BackupInvalid(problems)
    for check in (_check_redis, _check_database, _check_config):
        try:
            problems += check(backup)
        except (FormatError, KeyError, TypeError, ValueError, sqlite3.Error) as exc:
            problems.append(f"{check.__name__[7:]}: {exc}")
    if problems:
        raise BackupInvalid(problems)
    return backup


def _check_shape(manifest: Any) -> None:
    def bad(problem: str) -> BackupInvalid:
        return BackupInvalid([f"{MANIFEST}: {problem}"])

    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_NAME:
        raise bad(f"not a {FORMAT_NAME} manifest")
    version = manifest.get("format_version")
    if type(version) is not int or version < 1:
        raise bad("no format_version")
    if version > FORMAT_VERSION:
        raise bad(f"format {version} is newer than this rollback.py understands ({FORMAT_VERSION})")
    if type(manifest.get("backup_ms")) is not int or manifest["backup_ms"] <= 0:
        raise bad("backup_ms is not a positive integer")
    expected = {"files": dict, "counts": dict, "config": list}
    for name, kind in expected.items():
        if not isinstance(manifest.get(name), kind):
            raise bad(f"{name} is missing or not a JSON {kind.__name__}")
    for name in ("redis", "database"):
        if name not in manifest or not isinstance(manifest[name], (dict, type(None))):
            raise bad(f"{name} is missing or not an object")
    for rel, info in manifest["files"].items():
        if not (isinstance(info, dict) and isinstance(info.get("sha256"), str)
                and type(info.get("bytes")) is int):
            raise bad(f"files[{rel!r}] needs sha256 and bytes")
        parts = PurePosixPath(rel)
        if parts.is_absolute() or ".." in parts.parts or rel in ("", MANIFEST):
            raise bad(f"files: {rel!r} is not a path inside the backup")


def _check_files(backup: Backup, progress: Progress) -> list[str]:
    """Every listed file there, with its size and SHA-256; unlisted files are only a warning."""
    problems = []
    listed = backup.manifest["files"]
    total = sum(info["bytes"] for info in listed.values()) or 1
    checked = 0
    for rel, info in listed.items():
        progress.update(checked, checked / total)
        checked += info["bytes"]
        path = backup.path(rel)
        if not path.is_file():
            problems.append(f"{rel}: missing")
        elif path.stat().st_size != info["bytes"]:
            size = path.stat().st_size
            problems.append(f"{rel}: {size:,} bytes, the manifest says {info['bytes']:,}")
        elif sha256_file(path) != info["sha256"]:
            problems.append(f"{rel}: SHA-256 does not match the manifest (changed or corrupt)")
    for path in backup.root.rglob("*"):
        rel = path.relative_to(backup.root).as_posix()
        if path.is_file() and rel != MANIFEST and rel not in listed:
            backup.warnings.append(f"{rel}: not in the manifest, ignored")
    progress.update(checked, 1.0, force=True)
    progress.close()
    return problems


def _listed(backup: Backup, rel: Any, what: str) -> list[str]:
    if not isinstance(rel, str) or rel not in backup.manifest["files"]:
        return [f"{what}: file {rel!r} is not listed with a checksum"]
    return []


def _check_redis(backup: Backup) -> list[str]:
    part, counts = backup.redis, backup.manifest["counts"]
    if part is None:
        if counts.get("redis_keys") is None:
            return []
        return ["counts: redis_keys without a redis part"]
    problems = _listed(backup, part.get("file"), "redis")
    patterns = part.get("patterns")
    if not (isinstance(patterns, list) and patterns and all(isinstance(p, str) for p in patterns)):
        problems.append("redis: patterns missing")
    if problems:
        return problems
    for key, _payload, expire_at_ms in backup.entries():
        if key in backup.expiries:
            problems.append(f"redis: key {key!r} appears twice")
        backup.expiries[key] = expire_at_ms
    found = len(backup.expiries)
    if found != part.get("keys") or found != counts.get("redis_keys"):
        problems.append(
            f"redis: {found:,} keys in {part['file']}, the manifest says "
            f"{part.get('keys')} (counts: {counts.get('redis_keys')})"
        )
    return problems


def _check_database(backup: Backup) -> list[str]:
    part, counts = backup.database, backup.manifest["counts"]
    if part is None:
        return [] if counts.get("rows") is None else ["counts: rows without a database part"]
    tables = part.get("tables")
    if not isinstance(tables, dict):
        return ["database: tables missing"]
    expected = {name: info["rows"] for name, info in tables.items()}
    problems = []
    if counts.get("rows") != expected:
        problems.append("counts: rows per table differ from the database part")
    method = part.get("method")
    known = {("mysql", "logical"), ("mysql", "mysqldump"), ("sqlite", "sqlite")}
    if (part.get("kind"), method) not in known:
        return [*problems, f"database: unknown kind/method {part.get('kind')}/{method}"]
    if method == "logical":
        order = part.get("order")
        if not isinstance(order, list) or set(order) != set(tables):
            return [*problems, "database: order does not list the tables"]
        for table in order:
            problems += _check_table_file(backup, table, tables[table])
    elif method == "mysqldump":
        problems += _listed(backup, part.get("file"), "database")
        if not problems:
            found = count_dump_rows(backup.path(part["file"]))
            if found != expected:
                problems.append(f"database: rows in {part['file']} differ from the manifest")
    else:
        problems += _listed(backup, part.get("file"), "database")
        if not problems:
            conn = sqlite3.connect(_sqlite_ro_uri(backup.path(part["file"])), uri=True)
            try:
                (check,) = conn.execute("PRAGMA quick_check").fetchone()
                if check != "ok":
                    problems.append(f"database: {part['file']} fails quick_check: {check}")
                elif sqlite_counts(conn) != tables:
                    problems.append(f"database: rows in {part['file']} differ from the manifest")
            finally:
                conn.close()
    return problems


def _check_table_file(backup: Backup, table: str, info: dict[str, Any]) -> list[str]:
    identifier(table)
    if info.get("absent"):
        return [] if info.get("rows") == 0 else [f"table {table}: absent yet has rows"]
    columns = info.get("columns")
    if not isinstance(columns, list) or not columns:
        return [f"table {table}: no columns"]
    for column in columns:
        identifier(column)
    problems = _listed(backup, info.get("file"), f"table {table}")
    if problems:
        return problems
    rows = 0
    for number, row in iter_jsonl(backup.path(info["file"])):
        if not isinstance(row, list) or len(row) != len(columns):
            return [f"table {table}: line {number} does not have {len(columns)} values"]
        for value in row:
            decode_sql_value(value)
        rows += 1
    if rows != info.get("rows"):
        claimed = info.get("rows")
        return [f"table {table}: {rows:,} rows in {info['file']}, the manifest says {claimed}"]
    return []


def _check_config(backup: Backup) -> list[str]:
    problems = []
    for entry in backup.config:
        if not (isinstance(entry, dict) and isinstance(entry.get("original"), str)
                and os.path.isabs(entry["original"]) and type(entry.get("mode")) is int):
            problems.append(f"config: malformed entry {entry!r}")
            continue
        problems += _listed(backup, entry.get("file"), "config")
    if len(backup.config) != backup.manifest["counts"].get("config_files"):
        problems.append("counts: config_files differs from the config list")
    return problems


def _sqlite_ro_uri(path: Path) -> str:
    # immutable: reading the backup must not leave -wal/-shm files beside it
    return path.resolve().as_uri() + "?mode=ro&immutable=1"


# --------------------------------------------------------------------------- redis


@dataclass
class Reverse:
    """One session to write back in the old format."""

    key: bytes
    value: bytes
    expire_at_ms: int | None
    exact: bool  # byte for byte the original old record


@dataclass
class RedisPlan:
    """What the Redis part of the rollback will do."""

    now_ms: int
    restore: int = 0
    expired: int = 0
    remove: list[bytes] = field(default_factory=list)
    reverse: list[Reverse] = field(default_factory=list)
    kept: list[bytes] = field(default_factory=list)
    failed: list[tuple[bytes, str]] = field(default_factory=list)
    skip: set[bytes] = field(default_factory=set)  # neither restored nor removed


def server_ms(client: redis.Redis) -> int:
    """The Redis server's clock in epoch ms (the clock ABSTTL and PEXPIREAT use)."""
    return redis_time_ms(client.time())


def plan_redis(
    backup: Backup,
    client: redis.Redis,
    reverse_client: redis.Redis | None,
    *,
    in_place: bool,
    batch: int,
) -> RedisPlan:
    """Look at the live keys (reads only) and decide what happens to each."""
    assert backup.redis is not None
    live: set[bytes] = set()
    for keys, _fraction in scan_keys(client, backup.redis["patterns"], batch):
        live.update(keys)
    plan = RedisPlan(now_ms=server_ms(client))
    if reverse_client is not None:
        _plan_reverse(backup, client, reverse_client, plan, live, in_place=in_place, batch=batch)
    plan.skip.update(key for key, _ in plan.failed)
    for key, expire_at_ms in backup.expiries.items():
        if key in plan.skip:
            continue
        if expire_at_ms is not None and expire_at_ms <= plan.now_ms:
            plan.expired += 1
        else:
            plan.restore += 1
    plan.remove = sorted(live - backup.expiries.keys() - plan.skip)
    return plan


def _plan_reverse(
    backup: Backup,
    client: redis.Redis,
    target: redis.Redis,
    plan: RedisPlan,
    live: set[bytes],
    *,
    in_place: bool,
    batch: int,
) -> None:
    """Find the sessions created or changed since the backup and convert them back."""
    candidates: dict[bytes, tuple[dict[str, Any], int | None]] = {}
    sessions = sorted(key for key in live if key.startswith(SESSION_PREFIX))
    for chunk in chunks(sessions, batch):
        now_ms, reads = timed_read(client, chunk, "GET")
        for key, (value, pttl) in zip(chunk, reads, strict=True):
            if not isinstance(value, bytes) or pttl == -2:
                continue  # not a string, or gone: restored or removed like any other key
            try:
                obj = mr.loads(value)
            except mr.ConversionError:
                continue
            if not isinstance(obj, dict):
                continue
            newest = newest_ms(obj)
            if key in backup.expiries and (newest is None or newest <= backup.backup_ms):
                continue  # unchanged since the backup: the backup has it
            if mr.is_new_format(obj):
                candidates[key] = (obj, now_ms + pttl if pttl >= 0 else None)
            elif in_place and is_old_format(obj):
                plan.kept.append(key)  # an old record newer than the backup (a rerun, say)
    originals = _originals(backup, candidates.keys())
    if not in_place and candidates:
        _target_originals(target, list(candidates), originals, plan, batch)
    conflicts = {key for key, _ in plan.failed}
    for key, (record, expire_at_ms) in candidates.items():
        if key in conflicts:
            continue
        original = originals.get(key)
        try:
            value = encode_old(to_old(record, original[0] if original else None), original)
        except ReverseError as exc:
            plan.failed.append((key, f"cannot convert back ({exc.code}): {exc.reason}"))
            continue
        exact = original is not None and value == original[1]
        plan.reverse.append(Reverse(key, value, expire_at_ms, exact))
    if in_place:
        plan.skip.update(r.key for r in plan.reverse)
        plan.skip.update(plan.kept)


def _originals(backup: Backup, keys: Any) -> dict[bytes, tuple[dict[str, Any], bytes]]:
    """The backed-up old-format records of these keys (a backup taken before the migration)."""
    wanted = {key for key in keys if key in backup.expiries}
    found: dict[bytes, tuple[dict[str, Any], bytes]] = {}
    if not wanted:
        return found
    for key, payload, _expiry in backup.entries():
        if key not in wanted:
            continue
        raw = decode_string_dump(payload)
        if raw is None:
            continue
        try:
            obj = mr.loads(raw)
        except mr.ConversionError:
            continue
        if is_old_format(obj):
            found[key] = (obj, raw)
    return found


def _target_originals(
    target: redis.Redis,
    keys: list[bytes],
    originals: dict[bytes, tuple[dict[str, Any], bytes]],
    plan: RedisPlan,
    batch: int,
) -> None:
    """Old records the reverse target still holds (the migration's source, left intact)."""
    for chunk in chunks(keys, batch):
        pipe = target.pipeline(transaction=False)
        for key in chunk:
            pipe.get(key)
        for key, value in zip(chunk, pipe.execute(raise_on_error=False), strict=True):
            if isinstance(value, redis.ResponseError):
                reason = "the reverse target holds another type there: not overwritten"
                plan.failed.append((key, reason))
            elif isinstance(value, bytes) and key not in originals:
                try:
                    obj = mr.loads(value)
                except mr.ConversionError:
                    continue
                if is_old_format(obj):
                    originals[key] = (obj, value)


@dataclass
class RedisDone:
    """What the Redis part did."""

    restored: int = 0
    expired: int = 0
    removed: int = 0
    reversed: int = 0
    exact: int = 0
    failed: list[tuple[bytes, str]] = field(default_factory=list)


def apply_redis(
    backup: Backup,
    plan: RedisPlan,
    client: redis.Redis,
    reverse_client: redis.Redis | None,
    *,
    batch: int,
    progress: Progress,
) -> RedisDone:
    """Write the reverse-migrated sessions, restore the backed-up keys, remove the newer ones.

    The reverse-migrated sessions go first: if the run breaks off later, a second run finds
    them as old records newer than the backup and keeps them.
    """
    done = RedisDone(failed=list(plan.failed))
    total = len(plan.reverse) + plan.restore + plan.expired + len(plan.remove)
    if plan.reverse:
        assert reverse_client is not None
        for chunk in chunks(plan.reverse, batch):
            pipe = reverse_client.pipeline(transaction=True)
            for item in chunk:
                pipe.set(item.key, item.value)
                if item.expire_at_ms is not None:
                    pipe.pexpireat(item.key, item.expire_at_ms)
            pipe.execute()
            done.reversed += len(chunk)
            done.exact += sum(item.exact for item in chunk)
            progress.update(done.reversed, done.reversed / total)
    pending: list[tuple[bytes, bytes, int | None]] = []
    for entry in backup.entries():
        if entry[0] in plan.skip:
            continue
        pending.append(entry)
        if len(pending) >= batch:
            _restore_batch(client, pending, done)
            pending = []
            handled = done.reversed + done.restored + done.expired
            progress.update(handled, handled / total)
    if pending:
        _restore_batch(client, pending, done)
    for chunk in chunks(plan.remove, batch):
        done.removed += client.unlink(*chunk)
        progress.update(total - len(plan.remove) + done.removed, None)
    progress.update(total, 1.0, force=True)
    return done


def _restore_batch(
    client: redis.Redis, entries: list[tuple[bytes, bytes, int | None]], done: RedisDone
) -> None:
    """RESTORE ... REPLACE ABSTTL each key, or delete it when its expiry has passed meanwhile."""
    now_ms = server_ms(client)
    pipe = client.pipeline(transaction=False)
    expired = []
    for key, payload, expire_at_ms in entries:
        if expire_at_ms is not None and expire_at_ms <= now_ms:
            pipe.delete(key)
            expired.append(True)
        else:
            absolute = expire_at_ms is not None
            pipe.restore(key, expire_at_ms or 0, payload, replace=True, absttl=absolute)
            expired.append(False)
    replies = pipe.execute(raise_on_error=False)
    for (key, _, _), was_expired, reply in zip(entries, expired, replies, strict=True):
        if isinstance(reply, redis.ResponseError):
            done.failed.append((key, f"RESTORE refused: {reply}"))
        elif was_expired:
            done.expired += 1
        else:
            done.restored += 1


# --------------------------------------------------------------------------- database


class RestoreFailed(Exception):
    """The database part could not be restored (a transaction rolled back, or a count is off)."""


def preflight_database(backup: Backup, config: DatabaseConfig) -> list[str]:
    """Problems that would stop the database restore, found before anything is changed."""
    part = backup.database
    assert part is not None
    if part["kind"] != config.kind:
        kinds = f"the backup is of a {part['kind']} database, the target is {config.kind}"
        return [f"database: {kinds}"]
    if part["method"] == "sqlite":
        parent = Path(config.path).resolve().parent
        return [] if parent.is_dir() else [f"database: directory {parent} does not exist"]
    if part["method"] == "mysqldump" and shutil.which(MYSQL) is None:
        return ["database: the backup is a mysqldump file and the mysql client is not installed"]
    problems = []
    try:
        conn = mysql_connect(config)
    except pymysql.MySQLError as exc:
        return [f"database: cannot connect to {config.describe()}: {exc}"]
    try:
        with conn.cursor() as cur:
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
    return problems


def database_now(
    backup: Backup, config: DatabaseConfig
) -> dict[str, tuple[int | None, int | None]]:
    """Per backed-up table: rows now and rows created since the backup (None: unknown/absent)."""
    assert backup.database is not None
    tables = list(backup.database["tables"])
    now: dict[str, tuple[int | None, int | None]] = {}
    if config.kind == "sqlite":
        if not Path(config.path).is_file():
            return {table: (None, None) for table in tables}
        conn = sqlite3.connect(Path(config.path).resolve().as_uri() + "?mode=ro", uri=True)
        try:
            listing = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            existing = {row[0] for row in listing}
            for table in tables:
                if table not in existing:
                    now[table] = (None, None)
                    continue
                name = sqlite_identifier(table)
                (rows,) = conn.execute(f"SELECT COUNT(*) FROM {name}").fetchone()
                columns = {r[1] for r in conn.execute(f"PRAGMA table_info({name})")}
                since = None
                if "created_ms" in columns:
                    (since,) = conn.execute(
                        f"SELECT COUNT(*) FROM {name} WHERE created_ms > ?", (backup.backup_ms,)
                    ).fetchone()
                now[table] = (rows, since)
        finally:
            conn.close()
        return now
    conn = mysql_connect(config)
    try:
        with conn.cursor() as cur:
            existing = mysql_existing_tables(cur)
            for table in tables:
                if table not in existing:
                    now[table] = (None, None)
                    continue
                cur.execute(f"SELECT COUNT(*) FROM {identifier(table)}")
                rows = int(cur.fetchone()[0])
                since = None
                if "created_ms" in mysql_columns(cur, table)[0]:
                    cur.execute(
                        f"SELECT COUNT(*) FROM {identifier(table)} WHERE created_ms > %s",
                        (backup.backup_ms,),
                    )
                    since = int(cur.fetchone()[0])
                now[table] = (rows, since)
        conn.rollback()
    finally:
        conn.close()
    return now


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
    order, tables = part["order"], part["tables"]
    total = sum(info["rows"] for info in tables.values()) or 1
    inserted = 0
    try:
        conn = mysql_connect(config)
    except pymysql.MySQLError as exc:
        raise RestoreFailed(f"cannot connect to {config.describe()}: {exc}") from None
    try:
        conn.begin()
        with conn.cursor() as cur:
            existing = mysql_existing_tables(cur)
            for table in reversed(order):
                if table in existing:
                    # DELETE, not TRUNCATE: TRUNCATE commits on its own and ignores the order.
                    cur.execute(f"DELETE FROM {identifier(table)}")
            for table in order:
                info = tables[table]
                if info.get("absent"):
                    continue
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
                        progress.update(inserted, inserted / total)
                if rows:
                    cur.executemany(sql, rows)
                    inserted += len(rows)
            counts = {}
            for table in order:
                if table in existing or not tables[table].get("absent"):
                    cur.execute(f"SELECT COUNT(*) FROM {identifier(table)}")
                    counts[table] = int(cur.fetchone()[0])
            wrong = [t for t in counts if counts[t] != tables[t]["rows"]]
            if wrong:
                wrong_text = ", ".join(wrong)
                raise RestoreFailed(f"row counts differ before commit in {wrong_text}: rolled back")
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
        source = sqlite3.connect(_sqlite_ro_uri(backup.path(part["file"])), uri=True)
        try:
            target = sqlite3.connect(config.path)
            try:
                source.backup(
                    target,
                    pages=1024,
                    progress=lambda _s, left, total: progress.update(
                        total - left, (total - left) / total if total else None
                    ),
                )
                counts = sqlite_counts(target)
            finally:
                target.close()
        finally:
            source.close()
    except sqlite3.Error as exc:
        raise RestoreFailed(f"restoring {config.path}: {exc}") from None
    return {t: i["rows"] for t, i in counts.items() if not i.get("absent")}


# --------------------------------------------------------------------------- configuration


def config_destinations(
    backup: Backup, config_dir: Path | None
) -> list[tuple[dict[str, Any], Path]]:
    """Where each backed-up file goes: --config-dir/<name>, or where it was taken from."""
    destinations = []
    for entry in backup.config:
        original = Path(entry["original"])
        destinations.append((entry, config_dir / original.name if config_dir else original))
    return destinations


def restore_configs(backup: Backup, destinations: list[tuple[dict[str, Any], Path]]) -> int:
    """Put each file back atomically (temporary file and rename), with the mode it had."""
    for entry, dest in destinations:
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.")
        try:
            with os.fdopen(fd, "wb") as out, open(backup.path(entry["file"]), "rb") as source:
                shutil.copyfileobj(source, out)
            os.chmod(tmp, entry["mode"])
            os.replace(tmp, dest)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    return len(destinations)


# --------------------------------------------------------------------------- cli


class UsageError(Exception):
    """A bad argument found after parsing."""


def build_parser() -> argparse.ArgumentParser:
    """The command line (see --help)."""
    parser = argparse.ArgumentParser(
        prog="rollback.py",
        description=(
            "Restore a backup taken by backup.py: the Redis keys (values and TTLs; keys under the "
            "backed-up patterns created since are removed), the SQL tables and the configuration "
            "files. The backup is checked first (manifest, checksums, counts) and nothing is "
            "changed if it does not check out. Stop the services writing to these stores first."
        ),
        epilog=(
            "Exit codes: 0 everything restored; 1 the backup does not check out, a server is "
            "unreachable, a part failed, or the confirmation was declined; 2 bad command line, "
            "or no --yes with a non-interactive stdin. Passwords in URLs are never echoed."
        ),
    )
    parser.add_argument(
        "--from", dest="source", required=True, metavar="DIR", help="backup directory"
    )
    parser.add_argument(
        "--redis-url",
        metavar="URL",
        help=f"Redis to restore (default: $REDIS_URL, else {DEFAULT_REDIS_URL})",
    )
    parser.add_argument(
        "--database-url",
        metavar="URL",
        help=f"SQL database to restore (default: $DATABASE_URL, else {DEFAULT_DATABASE_URL})",
    )
    parser.add_argument(
        "--config-dir",
        metavar="DIR",
        help="put the configuration files here (default: where each was backed up from)",
    )
    parser.add_argument(
        "--reverse-migrate",
        action="store_true",
        help="keep the sessions created or changed since the backup: write them back in the old "
        "Node.js format (with their TTL) instead of losing them",
    )
    parser.add_argument(
        "--reverse-target",
        metavar="URL",
        help="with --reverse-migrate: the Redis the old services read, when it is not the one "
        "restored (e.g. redis://localhost:6379/0 after a migration from db 0 to db 1); "
        "default: --redis-url itself",
    )
    parser.add_argument("--skip-redis", action="store_true", help="leave Redis alone")
    parser.add_argument("--skip-database", action="store_true", help="leave the SQL database alone")
    parser.add_argument(
        "--skip-config", action="store_true", help="leave the configuration files alone"
    )
    parser.add_argument(
        "--batch",
        type=positive_int,
        default=DEFAULT_BATCH,
        metavar="N",
        help=f"keys per pipeline (default {DEFAULT_BATCH})",
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="check the backup, show the plan, change nothing"
    )
    parser.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    parser.add_argument("--quiet", action="store_true", help="no progress output")
    return parser


@dataclass
class Options:
    """The command line, checked."""

    source: Path
    redis_url: str | None
    reverse_url: str | None
    database: DatabaseConfig | None
    database_url: str | None
    config_dir: Path | None
    restore_config: bool
    batch: int
    dry_run: bool
    yes: bool
    quiet: bool


def check_options(args: argparse.Namespace) -> Options:
    """Resolve defaults and check what argparse cannot; UsageError on a bad value."""
    if args.reverse_target and not args.reverse_migrate:
        raise UsageError("--reverse-target needs --reverse-migrate")
    if args.reverse_migrate and args.skip_redis:
        raise UsageError("--reverse-migrate works on Redis: it cannot go with --skip-redis")
    redis_url = reverse_url = database_url = None
    database = None
    if not args.skip_redis:
        redis_url = args.redis_url or default_url(os.environ, "REDIS_URL", DEFAULT_REDIS_URL)
        urls = [("--redis-url", redis_url)]
        if args.reverse_migrate:
            reverse_url = args.reverse_target or redis_url
            urls.append(("--reverse-target", reverse_url))
        for option, url in urls:
            try:
                parse_redis_url(url, option)
                redis.Redis.from_url(url).close()  # redis-py's own checks; connects lazily
            except SettingsError as exc:
                raise UsageError(str(exc)) from None
            except ValueError as exc:
                raise UsageError(f"{option}: {exc}") from None
    if not args.skip_database:
        database_url = args.database_url or default_url(
            os.environ, "DATABASE_URL", DEFAULT_DATABASE_URL
        )
        try:
            database = parse_database_url(database_url, "--database-url")
        except SettingsError as exc:
            raise UsageError(str(exc)) from None
    return Options(
        source=Path(args.source),
        redis_url=redis_url,
        reverse_url=reverse_url,
        database=database,
        database_url=database_url,
        config_dir=Path(args.config_dir).resolve() if args.config_dir else None,
        restore_config=not args.skip_config,
        batch=args.batch,
        dry_run=args.dry_run,
        yes=args.yes,
        quiet=args.quiet,
    )


@dataclass
class Plan:
    """Everything the rollback will do, worked out before anything changes."""

    redis: RedisPlan | None = None
    in_place: bool = True
    database_now: dict[str, tuple[int | None, int | None]] | None = None
    configs: list[tuple[dict[str, Any], Path]] = field(default_factory=list)


def _version(text: Any) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in str(text).split(".")[:3])
    except ValueError:
        return ()


def _key_name(key: bytes) -> str:
    return key.decode("utf-8", "backslashreplace")


def _row(label: str, count: int, note: str, indent: int = 2) -> None:
    """One line of the plan or the summary: label, right-aligned count, note."""
    print(f"{' ' * indent}{label:<{30 - indent}}{count:>10,}  {note}")


def print_plan(backup: Backup, options: Options, plan: Plan) -> None:
    """What will be (or, with --dry-run, would be) done."""
    manifest = backup.manifest
    print(f"rollback plan: backup {backup.root} of {manifest.get('created_at')}", end="")
    print(f" (backup_ms {backup.backup_ms})")
    for warning in backup.warnings:
        print(f"  warning: {warning}")
    if plan.redis is not None and backup.redis is not None:
        redis_plan = plan.redis
        source = backup.redis.get("url")
        print(f"  redis {mask_url(options.redis_url or '')} (backed up from {source})")
        _row("restore", redis_plan.restore, "keys, values and TTLs as backed up", 4)
        _row("expired", redis_plan.expired, "backed-up keys whose TTL ran out since: deleted", 4)
        patterns = ", ".join(backup.redis["patterns"])
        _row("remove", len(redis_plan.remove), f"keys under {patterns} created since", 4)
        if options.reverse_url is not None:
            where = "in place" if plan.in_place else f"into {mask_url(options.reverse_url)}"
            note = f"sessions created or changed since, old format, {where}"
            _row("reverse-migrate", len(redis_plan.reverse), note, 4)
            if plan.in_place:
                _row("keep", len(redis_plan.kept), "old-format sessions newer than the backup", 4)
        for key, reason in redis_plan.failed:
            print(f"    failed: {_key_name(key)}: {reason} (left untouched)")
    elif options.redis_url is not None:
        print("  redis: the backup has no Redis part: left alone")
    if plan.database_now is not None and backup.database is not None:
        part = backup.database
        assert options.database is not None
        shown = show_database(options.database_url or "", options.database)
        print(f"  database {shown} ({part['method']};", end="")
        print(f" backed up from {part.get('url')})")
        for table, info in part["tables"].items():
            rows_now, since = plan.database_now.get(table, (None, None))
            now_text = "absent" if rows_now is None else f"{rows_now:,} now"
            since_text = f", {since:,} created since the backup (lost)" if since else ""
            after = "emptied" if info.get("absent") else f"-> {info['rows']:,}"
            print(f"    table {table:<20}{now_text:>14}{since_text} {after}")
    elif options.database is not None:
        print("  database: the backup has no database part: left alone")
    for entry, dest in plan.configs:
        if not dest.exists():
            state = "new"
        elif sha256_file(dest) == backup.manifest["files"][entry["file"]]["sha256"]:
            state = "unchanged"
        else:
            state = "replaced"
        print(f"  config {dest} <- {entry['file']} ({state})")


def confirm() -> bool | None:
    """Ask on the terminal; None when stdin is not one (no way to ask)."""
    stdin = sys.stdin
    if stdin is None or not stdin.isatty():
        return None
    print("Roll back as shown above? Type 'yes' to go on: ", end="", flush=True)
    return stdin.readline().strip().lower() in ("y", "yes")


@dataclass
class Outcome:
    """What the rollback did, for the summary."""

    redis: RedisDone | None = None
    rows: dict[str, int] | None = None
    configs: int = 0
    problems: list[str] = field(default_factory=list)


def print_summary(outcome: Outcome, plan: Plan, elapsed_s: float) -> None:
    """The closing table, on stdout."""
    print("summary:")
    done = outcome.redis
    if done is not None:
        rows = [
            ("keys restored", done.restored, "values and TTLs as backed up"),
            ("keys expired", done.expired, "TTL ran out since the backup: not restored"),
            ("keys removed", done.removed, "created after the backup"),
        ]
        if plan.redis is not None and (plan.redis.reverse or plan.redis.kept):
            exact = f"old format ({done.exact:,} byte-identical to their original)"
            rows += [
                ("reverse-migrated", done.reversed, exact),
                ("kept", len(plan.redis.kept), "old-format sessions newer than the backup"),
            ]
        rows.append(("keys failed", len(done.failed), "see above"))
        for label, count, note in rows:
            _row(label, count, note)
    if outcome.rows is not None:
        for table, count in outcome.rows.items():
            _row(f"table {table}", count, "rows")
    _row("config files", outcome.configs, "restored")
    print(f"  {'elapsed':<28}{format_duration(elapsed_s):>10}")
    if outcome.problems:
        print(f"result: FAILED ({len(outcome.problems)} problem(s))")
        for problem in outcome.problems:
            print(f"  - {problem}")
    else:
        print("result: OK")


class Clients:
    """The Redis clients of a run, closed together."""

    def __init__(self, options: Options) -> None:
        self.main: redis.Redis | None = None
        if options.redis_url is not None:
            self.main = redis.Redis.from_url(options.redis_url, protocol=2)
        self.reverse: redis.Redis | None = None
        if options.reverse_url is not None:
            self.reverse = (
                self.main if options.reverse_url == options.redis_url
                else redis.Redis.from_url(options.reverse_url, protocol=2)
            )

    def close(self) -> None:
        for client in {id(c): c for c in (self.main, self.reverse) if c is not None}.values():
            client.close()


def preflight(backup: Backup, options: Options, clients: Clients, plan: Plan) -> list[str]:
    """Reach every server and look at the targets (reads only); problems stop the run."""
    problems = []
    if clients.main is not None and backup.redis is not None:
        targets = ((clients.main, options.redis_url), (clients.reverse, options.reverse_url))
        for client, url in targets:
            if client is None:
                continue
            try:
                version = client.info("server").get("redis_version")
            except redis.RedisError as exc:
                problems.append(f"redis {mask_url(url or '')}: {exc}")
                continue
            source_version = backup.redis.get("redis_version")
            if client is clients.main and _version(version) < _version(source_version):
                problems.append(
                    f"redis: the backup was taken from Redis {backup.redis.get('redis_version')}; "
                    f"DUMP payloads cannot be restored into the older {version}"
                )
        if clients.reverse is not None and clients.reverse is not clients.main and not problems:
            plan.in_place = mr.same_database(clients.main, clients.reverse)
    if options.database is not None and backup.database is not None:
        problems += preflight_database(backup, options.database)
    if options.restore_config:
        plan.configs = config_destinations(backup, options.config_dir)
        names = [dest for _, dest in plan.configs]
        if len(set(names)) != len(names):
            problems.append("config: two backed-up files would land on one path (--config-dir?)")
    return problems


def run(backup: Backup, options: Options, clients: Clients, plan: Plan) -> Outcome:
    """Apply the plan: Redis, then the database, then the configuration files.

    A part that breaks off (a lost connection, a rolled-back transaction) stops the run there;
    keys that failed one by one (shown in the plan) do not, but still fail the exit code.
    """
    outcome = Outcome()
    stopped = False
    if plan.redis is not None:
        assert clients.main is not None
        progress = Progress("redis", enabled=not options.quiet)
        try:
            outcome.redis = apply_redis(
                backup,
                plan.redis,
                clients.main,
                clients.reverse,
                batch=options.batch,
                progress=progress,
            )
        except redis.RedisError as exc:
            outcome.problems.append(f"redis: {exc} (run the rollback again to finish)")
            stopped = True
        finally:
            progress.close()
        if outcome.redis is not None:
            for key, reason in outcome.redis.failed:
                print(f"failed: {_key_name(key)}: {reason}", file=sys.stderr)
            if outcome.redis.failed:
                outcome.problems.append(f"redis: {len(outcome.redis.failed):,} key(s) failed")
    if plan.database_now is not None and not stopped:
        assert options.database is not None
        progress = Progress("database", enabled=not options.quiet)
        try:
            outcome.rows = restore_database(backup, options.database, progress)
        except (RestoreFailed, FormatError, OSError, pymysql.MySQLError, sqlite3.Error) as exc:
            outcome.problems.append(f"database: {exc}")
            stopped = True
        finally:
            progress.close()
    if plan.configs and not stopped:
        try:
            outcome.configs = restore_configs(backup, plan.configs)
        except OSError as exc:
            outcome.problems.append(f"config: {exc}")
    return outcome


def main(argv: list[str] | None = None) -> int:
    """Run the rollback; see ``--help``."""
    args = build_parser().parse_args(argv)
    try:
        options = check_options(args)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    started = time.monotonic()
    try:
        backup = load_backup(options.source, Progress("verify (bytes)", enabled=not options.quiet))
    except BackupInvalid as exc:
        for problem in exc.problems:
            print(f"error: {problem}", file=sys.stderr)
        print("result: REFUSED (the backup does not check out; nothing was changed)")
        return EXIT_FAILURE

    clients = Clients(options)
    plan = Plan()
    try:
        try:
            problems = preflight(backup, options, clients, plan)
            if not problems:
                if clients.main is not None and backup.redis is not None:
                    plan.redis = plan_redis(
                        backup,
                        clients.main,
                        clients.reverse,
                        in_place=plan.in_place,
                        batch=options.batch,
                    )
                if options.database is not None and backup.database is not None:
                    plan.database_now = database_now(backup, options.database)
        except (redis.RedisError, pymysql.MySQLError, sqlite3.Error, OSError) as exc:
            problems = [f"while planning: {exc}"]
        if problems:
            for problem in problems:
                print(f"error: {problem}", file=sys.stderr)
            print("result: REFUSED (nothing was changed)")
            return EXIT_FAILURE

        print_plan(backup, options, plan)
        will_fail = bool(plan.redis and plan.redis.failed)
        if options.dry_run:
            print("result: " + ("FAILED" if will_fail else "OK") + " (dry run: nothing changed)")
            return EXIT_FAILURE if will_fail else EXIT_OK
        if not options.yes:
            answer = confirm()
            if answer is None:
                message = "stdin is not a terminal: pass --yes to roll back without a question"
                print(f"error: {message}", file=sys.stderr)
                return EXIT_USAGE
            if not answer:
                print("result: ABORTED (nothing was changed)")
                return EXIT_FAILURE
        outcome = run(backup, options, clients, plan)
    except KeyboardInterrupt:
        print("result: INTERRUPTED (a rollback that had started: run the same command again)")
        return EXIT_FAILURE
    finally:
        clients.close()
    print_summary(outcome, plan, time.monotonic() - started)
    return EXIT_FAILURE if outcome.problems else EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
