"""Reading a backup directory and checking it: manifest, every SHA-256, every count.

Nothing is restored from a backup that does not check out: BackupInvalid lists every problem.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, cast

from chat.cutover.backup_format import (
    FORMAT_NAME,
    FORMAT_VERSION,
    MANIFEST,
    FormatError,
    decode_entry,
    iter_jsonl,
    sha256_file,
)
from chat.cutover.backup_sql import backup_prefix, count_dump_rows, decode_sql_value, identifier, sqlite_counts
from chat.cutover.common import Progress


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
        """When the backup was taken, epoch ms."""
        return int(self.manifest["backup_ms"])

    @property
    def redis(self) -> dict[str, Any] | None:
        """The manifest's Redis part (None: the backup has none)."""
        return cast(dict[str, Any] | None, self.manifest["redis"])

    @property
    def database(self) -> dict[str, Any] | None:
        """The manifest's database part (None: the backup has none)."""
        return cast(dict[str, Any] | None, self.manifest["database"])

    @property
    def config(self) -> list[dict[str, Any]]:
        """The backed-up configuration files."""
        return cast(list[dict[str, Any]], self.manifest["config"])

    def path(self, rel: str) -> Path:
        """A file of the backup."""
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


def _bad(problem: str) -> BackupInvalid:
    return BackupInvalid([f"{MANIFEST}: {problem}"])


def _check_shape(manifest: Any) -> None:
    """The manifest's fields are there with the right JSON types; BackupInvalid at the first that is not."""
    bad = _bad
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
        if name not in manifest or not isinstance(manifest[name], dict | None):
            raise bad(f"{name} is missing or not an object")
    _check_listing(manifest["files"])


def _check_listing(files: dict[str, Any]) -> None:
    bad = _bad
    for rel, info in files.items():
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
        return problems
    problems += _listed(backup, part.get("file"), "database")
    if problems:
        return problems
    if method == "mysqldump":
        same = count_dump_rows(backup.path(part["file"])) == expected
        return [] if same else [f"database: rows in {part['file']} differ from the manifest"]
    return _check_sqlite_file(backup.path(part["file"]), part["file"], tables, backup_prefix(part) or "")


def _check_sqlite_file(path: Path, rel: str, tables: dict[str, Any], prefix: str) -> list[str]:
    conn = sqlite3.connect(sqlite_ro_uri(path), uri=True)
    try:
        (check,) = conn.execute("PRAGMA quick_check").fetchone()
        if check != "ok":
            return [f"database: {rel} fails quick_check: {check}"]
        if sqlite_counts(conn, prefix) != tables:
            return [f"database: rows in {rel} differ from the manifest"]
        return []
    finally:
        conn.close()


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


def sqlite_ro_uri(path: Path) -> str:
    # immutable: reading the backup must not leave -wal/-shm files beside it
    return path.resolve().as_uri() + "?mode=ro&immutable=1"
