"""Back up what the cut-over touches: Redis keys with their TTLs, the SQL database, the .env files.

The backup directory (docs/backup.md) holds ``redis/keys.jsonl`` (a DUMP payload and the
absolute expiry of every key), ``database/`` (a mysqldump file, one JSON-lines file per table,
or an SQLite copy), ``config/`` (the files as they are) and, written last, ``manifest.json``
with the counts and a SHA-256 of every file. ``scripts/rollback.py --from DIR`` restores it.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

_HERE = os.path.dirname(os.path.abspath(__file__))
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

import pymysql  # noqa: E402
import pymysql.cursors  # noqa: E402
import redis  # noqa: E402
from _backup_format import (  # noqa: E402
    CONFIG_DIR,
    DATABASE_DIR,
    DEFAULT_DATABASE_URL,
    DEFAULT_REDIS_URL,
    FORMAT_NAME,
    FORMAT_VERSION,
    MANIFEST,
    MYSQLDUMP_FILE,
    REDIS_FILE,
    SQLITE_FILE,
    TOOL_VERSION,
    FormatError,
    backup_tables,
    count_dump_rows,
    default_patterns,
    default_url,
    dump_type,
    dumps,
    encode_entry,
    encode_sql_value,
    identifier,
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
    write_json_atomic,
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
from migrate_redis import scan_fraction  # noqa: E402

from chat import __version__ as CHAT_API_VERSION  # noqa: E402
from chat.settings import (  # noqa: E402
    DatabaseConfig,
    SettingsError,
    parse_database_url,
    parse_redis_url,
)
from states.redis_keys import PREFIXES  # noqa: E402

DEFAULT_BATCH = 500
ROW_BATCH = 1000
MYSQLDUMP = "mysqldump"


class BackupFailed(Exception):
    """A part of the backup could not be taken; the directory gets no manifest."""


@dataclass
class Result:
    """What went into the backup, for the manifest and the summary."""

    redis: dict[str, Any] | None = None
    database: dict[str, Any] | None = None
    config: list[dict[str, Any]] = field(default_factory=list)


# --------------------------------------------------------------------------- redis


def scan_keys(
    client: redis.Redis, patterns: list[str], batch: int
) -> Iterator[tuple[list[bytes], float]]:
    """Every key matching any pattern once, in batches, with the share of the work done.

    One SCAN per pattern (never KEYS); a key matching two patterns is handed out once.
    """
    seen: set[bytes] = set()
    for index, pattern in enumerate(patterns):
        cursor = 0
        while True:
            cursor, keys = client.scan(cursor, match=pattern, count=batch)
            fresh = [key for key in keys if key not in seen]
            seen.update(fresh)
            done_share = (index + (1.0 if cursor == 0 else scan_fraction(cursor))) / len(patterns)
            if fresh:
                yield fresh, done_share
            if cursor == 0:
                break


def timed_read(
    client: redis.Redis, keys: Sequence[bytes], command: str
) -> tuple[int, list[tuple[Any, int]]]:
    """The server's time (epoch ms) and ``(command reply, PTTL)`` per key, in one MULTI/EXEC.

    The transaction makes each key's value and TTL one consistent reading, and the server's
    own clock turns the TTL into an absolute expiry without any client clock skew. An error
    reply (GET on a hash: WRONGTYPE) comes back as its exception object.
    """
    pipe = client.pipeline(transaction=True)
    pipe.time()
    for key in keys:
        pipe.execute_command(command, key)
        pipe.pttl(key)
    replies = pipe.execute(raise_on_error=False)
    pairs = [(replies[i], replies[i + 1]) for i in range(1, len(replies), 2)]
    return redis_time_ms(replies[0]), pairs


def backup_redis(
    client: redis.Redis, out: Path, patterns: list[str], batch: int, progress: Progress
) -> dict[str, Any]:
    """Write redis/keys.jsonl; return the manifest's ``redis`` part."""
    path = out / REDIS_FILE
    path.parent.mkdir(mode=0o700, exist_ok=True)
    keys = with_ttl = vanished = 0
    types: Counter[str] = Counter()
    with open(path, "wb") as fh:
        for batch_keys, fraction in scan_keys(client, patterns, batch):
            now_ms, pairs = timed_read(client, batch_keys, "DUMP")
            lines = []
            for key, (payload, pttl) in zip(batch_keys, pairs, strict=True):
                if isinstance(payload, redis.ResponseError):
                    raise payload
                if payload is None or pttl == -2:
                    vanished += 1  # expired or deleted between SCAN and DUMP
                    continue
                expire_at_ms = now_ms + pttl if pttl >= 0 else None
                lines.append(encode_entry(key, payload, pttl, expire_at_ms))
                types[dump_type(payload)] += 1
                with_ttl += pttl >= 0
            fh.write(b"".join(lines))
            keys += len(lines)
            progress.update(keys, fraction)
    progress.update(keys, 1.0, force=True)
    os.chmod(path, 0o600)
    info = client.info("server")
    return {
        "file": REDIS_FILE,
        "keys": keys,
        "with_ttl": with_ttl,
        "vanished": vanished,
        "types": dict(sorted(types.items())),
        "patterns": patterns,
        "db": int(client.connection_pool.connection_kwargs.get("db", 0)),
        "redis_version": info.get("redis_version"),
    }


# --------------------------------------------------------------------------- database


def backup_mysql_logical(config: DatabaseConfig, out: Path, progress: Progress) -> dict[str, Any]:
    """Every schema table as JSON lines, all read in one consistent snapshot."""
    tables: dict[str, dict[str, Any]] = {}
    total = 0
    order = backup_tables()
    try:
        conn = mysql_connect(config, cursorclass=pymysql.cursors.SSCursor)
    except pymysql.MySQLError as exc:
        raise BackupFailed(f"cannot connect to {config.describe()}: {exc}") from None
    try:
        with conn.cursor() as cur:
            cur.execute("SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            cur.execute("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")
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
        source = sqlite3.connect(source_path.resolve().as_uri() + "?mode=ro", uri=True)
        try:
            target = sqlite3.connect(path)
            try:
                source.backup(
                    target,
                    pages=1024,
                    progress=lambda _s, left, total: progress.update(
                        total - left, (total - left) / total if total else None
                    ),
                )
                tables = sqlite_counts(target)
            finally:
                target.close()
        finally:
            source.close()
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
                t: (None if i.get("absent") else i["rows"]) for t, i in sqlite_counts(conn).items()
            }
        finally:
            conn.close()
    try:
        counts = mysql_counts(config, backup_tables())
    except pymysql.MySQLError as exc:
        raise BackupFailed(f"{config.describe()}: {exc}") from None
    return {table: counts.get(table) for table in backup_tables()}


# --------------------------------------------------------------------------- configuration


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


# --------------------------------------------------------------------------- cli


def build_parser() -> argparse.ArgumentParser:
    """The command line (see --help)."""
    parser = argparse.ArgumentParser(
        prog="backup.py",
        description=(
            "Back up the Redis keys of the service (with their TTLs), the SQL database and the "
            "configuration files into DIR, with a manifest of counts and SHA-256 checksums. "
            "Restore with scripts/rollback.py --from DIR. Take it with the writers stopped "
            "for a snapshot of one moment (each Redis key and the SQL dump are consistent on "
            "their own in any case)."
        ),
        epilog=(
            "Exit codes: 0 the backup is complete; 1 a part failed (a server unreachable, a "
            "dump error: no manifest is written, the directory is not a usable backup); "
            "2 bad command line, or DIR not empty without --force. Passwords in URLs are never "
            "echoed."
        ),
    )
    parser.add_argument(
        "--out", required=True, metavar="DIR", help="backup directory (created; must be empty)"
    )
    parser.add_argument(
        "--redis-url",
        metavar="URL",
        help=f"Redis to back up (default: $REDIS_URL, else {DEFAULT_REDIS_URL})",
    )
    parser.add_argument(
        "--database-url",
        metavar="URL",
        help="SQL database: mysql://... or sqlite:///path "
        f"(default: $DATABASE_URL, else {DEFAULT_DATABASE_URL})",
    )
    parser.add_argument(
        "--config",
        action="append",
        default=[],
        metavar="FILE",
        help="a configuration file to copy (repeat for several, e.g. the old and the new .env)",
    )
    parser.add_argument(
        "--pattern",
        action="append",
        metavar="GLOB",
        help="SCAN MATCH pattern of the keys to take (repeatable; default 'session:*' and every "
        "prefix in states/redis_keys.py PREFIXES)",
    )
    parser.add_argument(
        "--batch",
        type=positive_int,
        default=DEFAULT_BATCH,
        metavar="N",
        help=f"keys per SCAN call and per DUMP transaction (default {DEFAULT_BATCH})",
    )
    parser.add_argument(
        "--no-mysqldump",
        action="store_true",
        help="dump MySQL tables as JSON lines from Python even when mysqldump is installed",
    )
    parser.add_argument("--skip-redis", action="store_true", help="do not back up Redis")
    parser.add_argument(
        "--skip-database", action="store_true", help="do not back up the SQL database"
    )
    parser.add_argument(
        "--force", action="store_true", help="write into DIR even if it is not empty"
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="count what would be backed up; write nothing"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress output")
    return parser


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


class UsageError(Exception):
    """A bad argument found after parsing."""


def check_options(args: argparse.Namespace) -> Options:
    """Resolve defaults and check what argparse cannot; UsageError on a bad value."""
    redis_url = database_url = None
    database = None
    if not args.skip_redis:
        redis_url = args.redis_url or default_url(os.environ, "REDIS_URL", DEFAULT_REDIS_URL)
        try:
            parse_redis_url(redis_url, "--redis-url")
            redis.Redis.from_url(redis_url).close()  # redis-py's own checks; connects lazily
        except SettingsError as exc:
            raise UsageError(str(exc)) from None
        except ValueError as exc:
            raise UsageError(f"--redis-url: {exc}") from None
    if not args.skip_database:
        database_url = args.database_url or default_url(
            os.environ, "DATABASE_URL", DEFAULT_DATABASE_URL
        )
        try:
            database = parse_database_url(database_url, "--database-url")
        except SettingsError as exc:
            raise UsageError(str(exc)) from None
    configs = []
    for name in args.config:
        path = Path(name).resolve()
        if not path.is_file():
            raise UsageError(f"--config {name}: not a file")
        configs.append(path)
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out}: exists and is not a directory")
    if out.is_dir() and any(out.iterdir()) and not args.force:
        raise UsageError(f"--out {out}: not empty (use another directory, or --force)")
    mysqldump = None
    if database is not None and database.kind == "mysql" and not args.no_mysqldump:
        mysqldump = shutil.which(MYSQLDUMP)
    return Options(
        out=out,
        redis_url=redis_url,
        database=database,
        database_url=database_url,
        configs=configs,
        patterns=args.pattern or default_patterns(PREFIXES),
        batch=args.batch,
        mysqldump=mysqldump,
        dry_run=args.dry_run,
        force=args.force,
        quiet=args.quiet,
    )


def _method(options: Options) -> str:
    assert options.database is not None
    if options.database.kind == "sqlite":
        return "sqlite"
    return "mysqldump" if options.mysqldump else "logical"


def dry_run(options: Options) -> int:
    """Count what a real run would take and print it."""
    print("dry run: nothing is written")
    if options.redis_url is not None:
        client = redis.Redis.from_url(options.redis_url, protocol=2)
        try:
            client.ping()
            total = sum(len(keys) for keys, _ in scan_keys(client, options.patterns, options.batch))
        except redis.RedisError as exc:
            print(f"error: Redis {mask_url(options.redis_url)}: {exc}", file=sys.stderr)
            return EXIT_FAILURE
        finally:
            client.close()
        print(f"  redis keys      {total:>10,}  would be backed up ({', '.join(options.patterns)})")
    if options.database is not None:
        try:
            counts = count_rows(options.database)
        except BackupFailed as exc:
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_FAILURE
        shown = show_database(options.database_url or "", options.database)
        print(f"  database        {_method(options):>10}  {shown}")
        for table, rows in counts.items():
            shown = "absent" if rows is None else f"{rows:,}"
            print(f"  table {table:<22}{shown:>10}")
    for path in options.configs:
        print(f"  config          {path}")
    print(f"  into            {options.out}")
    print("result: OK (dry run)")
    return EXIT_OK


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
        method = _method(options)
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
    finished_ms = time.time_ns() // 1_000_000
    return {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "tool": "scripts/backup.py",
        "tool_version": TOOL_VERSION,
        "chat_api_version": CHAT_API_VERSION,
        "created_at": datetime.fromtimestamp(started_ms / 1000, UTC)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z"),
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


def print_summary(manifest: dict[str, Any], out: Path, elapsed_s: float) -> None:
    """The closing table, on stdout."""
    print("summary:")
    redis_part = manifest["redis"]
    if redis_part:
        ttl_note = f"({redis_part['with_ttl']:,} with a TTL)"
        print(f"  {'redis keys':<28}{redis_part['keys']:>10,}  from {redis_part['url']} {ttl_note}")
        vanished_note = "expired or deleted between SCAN and DUMP"
        print(f"  {'vanished':<28}{redis_part['vanished']:>10,}  {vanished_note}")
    database = manifest["database"]
    if database:
        print(f"  {'database':<28}{database['method']:>10}  from {database['url']}")
        for table, info in database["tables"].items():
            shown = "absent" if info.get("absent") else f"{info['rows']:,}"
            print(f"  {'table ' + table:<28}{shown:>10}")
    print(f"  {'config files':<28}{len(manifest['config']):>10,}")
    size = sum(f["bytes"] for f in manifest["files"].values())
    print(
        f"  {'files':<28}{len(manifest['files']):>10,}  {size:,} bytes, SHA-256 in {out / MANIFEST}"
    )
    print(f"  {'elapsed':<28}{format_duration(elapsed_s):>10}")
    print(f"result: OK (backup_ms {manifest['backup_ms']})")


def main(argv: list[str] | None = None) -> int:
    """Take the backup; see ``--help``."""
    args = build_parser().parse_args(argv)
    try:
        options = check_options(args)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if options.dry_run:
        return dry_run(options)

    started = time.monotonic()
    started_ms = time.time_ns() // 1_000_000
    parts = [
        f"redis {mask_url(options.redis_url)}" if options.redis_url else None,
        f"database {show_database(options.database_url, options.database)}"
        if options.database_url and options.database
        else None,
        f"{len(options.configs)} config file(s)" if options.configs else None,
    ]
    print(
        f"backup: {', '.join(p for p in parts if p) or 'nothing'} -> {options.out}", file=sys.stderr
    )
    try:
        options.out.mkdir(mode=0o700, parents=True, exist_ok=True)
        # An older manifest must not vouch for a directory that is being rewritten.
        (options.out / MANIFEST).unlink(missing_ok=True)
        result = take_backup(options)
        manifest = build_manifest(options, result, started_ms)
        write_json_atomic(options.out / MANIFEST, manifest)
    except (BackupFailed, FormatError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        print(f"result: FAILED (no manifest in {options.out}: not a usable backup)")
        return EXIT_FAILURE
    except KeyboardInterrupt:
        print(f"result: INTERRUPTED (no manifest in {options.out}: not a usable backup)")
        return EXIT_FAILURE
    print_summary(manifest, options.out, time.monotonic() - started)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
