"""Taking a backup: every part into the directory, then the manifest that makes it one."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

from chat import __version__ as CHAT_API_VERSION
from chat.cutover.backup.database import BackupFailed, backup_mysql_logical, backup_mysqldump, backup_sqlite
from chat.cutover.backup.redis_part import backup_redis
from chat.cutover.backup_format import (
    CONFIG_DIR,
    DATABASE_DIR,
    FORMAT_NAME,
    FORMAT_VERSION,
    MANIFEST,
    TOOL_VERSION,
    sha256_file,
    show_database,
)
from chat.cutover.common import Progress, mask_url
from chat.settings import DatabaseConfig
from states.clock import iso_from_ms, now_ms


@dataclass
class Result:
    """What went into the backup, for the manifest and the summary."""

    redis: dict[str, Any] | None = None
    database: dict[str, Any] | None = None
    config: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Options:
    """The command line, checked."""

    out: Path
    redis_url: str | None
    database: DatabaseConfig | None
    database_url: str | None
    configs: list[Path]
    patterns: list[str]
    batch: int
    mysqldump: str | None
    dry_run: bool
    force: bool
    quiet: bool
    sources: list[str] = field(default_factory=list)  # the .env read, where each URL came from (masked)


def database_method(options: Options) -> str:
    """sqlite, mysqldump (when the binary is there) or logical."""
    assert options.database is not None
    if options.database.kind == "sqlite":
        return "sqlite"
    return "mysqldump" if options.mysqldump else "logical"


def copy_configs(paths: list[Path], out: Path) -> list[dict[str, Any]]:
    """Copy each file byte for byte as config/<n>-<name>; remember where it came from."""
    entries = []
    (out / CONFIG_DIR).mkdir(mode=0o700, exist_ok=True)
    for number, source in enumerate(paths, 1):
        rel = f"{CONFIG_DIR}/{number}-{source.name}"
        try:
            shutil.copyfile(source, out / rel)
            mode = source.stat().st_mode & 0o777
        except OSError as exc:
            raise BackupFailed(f"copying {source}: {exc}") from None
        os.chmod(out / rel, 0o600)  # .env files hold secrets, whatever their mode was
        entries.append({"original": str(source), "file": rel, "mode": mode})
    return entries


def take_backup(options: Options) -> Result:
    """Write every part; BackupFailed or a server error stops the run."""
    out = options.out
    result = Result()
    if options.redis_url is not None:
        client = redis.Redis.from_url(options.redis_url, protocol=2)
        progress = Progress("redis", enabled=not options.quiet)
        try:
            client.ping()
            result.redis = backup_redis(client, out, options.patterns, options.batch, progress)
        except redis.RedisError as exc:
            raise BackupFailed(f"Redis {mask_url(options.redis_url)}: {exc}") from None
        finally:
            progress.close()
            client.close()
        result.redis["url"] = mask_url(options.redis_url)
    if options.database is not None:
        (out / DATABASE_DIR).mkdir(mode=0o700, exist_ok=True)
        method = database_method(options)
        progress = Progress(f"database ({method})", enabled=not options.quiet)
        try:
            if method == "sqlite":
                part = backup_sqlite(options.database, out, progress)
            elif method == "mysqldump":
                assert options.mysqldump is not None
                part = backup_mysqldump(options.mysqldump, options.database, out, progress)
            else:
                part = backup_mysql_logical(options.database, out, progress)
        finally:
            progress.close()
        part["url"] = show_database(options.database_url or "", options.database)
        part["kind"] = options.database.kind
        part["table_prefix"] = options.database.table_prefix  # which tables are the service's
        result.database = part
    result.config = copy_configs(options.configs, out)
    return result


def build_manifest(options: Options, result: Result, started_ms: int) -> dict[str, Any]:
    """manifest.json: what, from where, how many, and the checksum of every file."""
    files = {}
    for path in sorted(p for p in options.out.rglob("*") if p.is_file()):
        rel = path.relative_to(options.out).as_posix()
        if rel == MANIFEST or path.name.startswith(f".{MANIFEST}."):
            continue
        files[rel] = {"sha256": sha256_file(path), "bytes": path.stat().st_size}
    rows = {t: info["rows"] for t, info in (result.database or {}).get("tables", {}).items()}
    finished_ms = now_ms()
    return {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "tool": "scripts/backup.py",
        "tool_version": TOOL_VERSION,
        "chat_api_version": CHAT_API_VERSION,
        "created_at": iso_from_ms(started_ms),
        "backup_ms": started_ms,
        "finished_ms": finished_ms,
        "redis": result.redis,
        "database": result.database,
        "config": result.config,
        "counts": {
            "redis_keys": result.redis["keys"] if result.redis else None,
            "rows": rows if result.database else None,
            "config_files": len(result.config),
        },
        "files": files,
    }
