"""The command line of the backup: options, the dry run, the closing summary."""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import redis

from chat.cutover.backup.database import BackupFailed, count_rows
from chat.cutover.backup.redis_part import keys_left_out, scan_keys
from chat.cutover.backup.take import Options, build_manifest, database_method, take_backup
from chat.cutover.backup_format import (
    DEFAULT_DATABASE_URL,
    DEFAULT_REDIS_URL,
    MANIFEST,
    FormatError,
    default_patterns,
    show_database,
    write_json_atomic,
)
from chat.cutover.common import (
    EXIT_FAILURE,
    EXIT_OK,
    EXIT_USAGE,
    UsageError,
    format_duration,
    mask_url,
    parse_checked,
    positive_int,
)
from chat.cutover.targets import (
    Variables,
    add_env_file_option,
    check_redis_url,
    database_target,
    read_variables,
    redis_target,
)
from states.clock import now_ms
from states.redis_keys import PREFIXES

PROG = "backup.py"
DEFAULT_BATCH = 500
MYSQLDUMP = "mysqldump"


def rollback_command(prog: str) -> str:
    """The rollback as the operator runs it: `chat-api rollback` beside `chat-api backup`."""
    return "chat-api rollback" if prog.startswith("chat-api") else "scripts/rollback.py"


def build_parser(prog: str = PROG) -> argparse.ArgumentParser:
    """The command line (see --help)."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description=(
            "Back up the Redis keys of the service (with their TTLs), the SQL database and the "
            "configuration files into DIR, with a manifest of counts and SHA-256 checksums. "
            f"Restore with {rollback_command(prog)} --from DIR. Take it with the writers stopped "
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
        help=f"Redis to back up (default: $REDIS_URL, else REDIS_URL in the --env-file, else {DEFAULT_REDIS_URL})",
    )
    parser.add_argument(
        "--database-url",
        metavar="URL",
        help="SQL database: mysql://... or sqlite:///path "
        f"(default: $DATABASE_URL, else DATABASE_URL in the --env-file, else {DEFAULT_DATABASE_URL})",
    )
    add_env_file_option(parser)
    parser.add_argument(
        "--config",
        action="append",
        default=[],
        metavar="FILE",
        help="a configuration file to copy (repeat for several, e.g. the old and the new .env); the "
        "--env-file (default ./.env when it exists) is always taken unless --skip-config",
    )
    _add_run_options(parser)
    return parser


def _add_run_options(parser: argparse.ArgumentParser) -> None:
    """--pattern, --batch, --no-mysqldump, the --skip-* options, --force, --dry-run, --quiet."""
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
        "--skip-config", action="store_true", help="do not back up the .env file read (--config files still are)"
    )
    parser.add_argument(
        "--force", action="store_true", help="write into DIR even if it is not empty"
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="count what would be backed up; write nothing"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress output")


def check_options(args: argparse.Namespace) -> Options:
    """Resolve defaults and check what argparse cannot; UsageError on a bad value."""
    redis_url = database_url = None
    database = None
    variables = read_variables(args.env_file)
    sources = []
    if not args.skip_redis:
        redis_url, source = redis_target(args.redis_url, variables)
        check_redis_url(redis_url, "--redis-url")
        sources.append(source)
    if not args.skip_database:
        database_url, database, source = database_target(args.database_url, variables)
        sources.append(source)
    configs = []
    for name in args.config:
        path = Path(name).resolve()
        if not path.is_file():
            raise UsageError(f"--config {name}: not a file")
        configs.append(path)
    # the configuration the service runs with is part of what a rollback must put back
    env_path = variables.file_path()
    if env_path is not None and not args.skip_config and env_path not in configs:
        configs.append(env_path)
    sources.insert(0, _env_file_line(variables, env_path, args.skip_config))
    if not configs:
        why = "--skip-config given" if args.skip_config else "no ./.env; name it with --env-file"
        sources.append(f"warning: no configuration file is backed up ({why}; add --config FILE to take one): "
                       "a rollback cannot put the old .env back")
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
        sources=sources,
    )


def _env_file_line(variables: Variables, env_path: Path | None, skip_config: bool) -> str:
    """The first source line: the .env read for the URLs or not, copied or not."""
    if env_path is None or variables.was_read:
        return variables.describe() + (" (not copied: --skip-config)" if env_path and skip_config else "")
    if skip_config:
        return f"{env_path} neither read (the URLs came from elsewhere) nor copied (--skip-config)"
    return f"{env_path} not read for the URLs (they came from elsewhere); copied as a config file"


def left_out_line(count: int, examples: list[str]) -> str:
    """What a summary says of the database's keys outside the patterns."""
    if not count:
        return "no other key in the database"
    shown = ", ".join(examples) + (", ..." if count > len(examples) else "")
    return f"outside the patterns, NOT in the backup (e.g. {shown})"


def dry_run(options: Options) -> int:
    """Count what a real run would take and print it."""
    print("dry run: nothing is written")
    if options.redis_url is not None:
        client = redis.Redis.from_url(options.redis_url, protocol=2)
        try:
            client.ping()
            taken: set[bytes] = set()
            for _ in scan_keys(client, options.patterns, options.batch, taken):
                pass
            left_out, examples = keys_left_out(client, taken, options.batch)
        except redis.RedisError as exc:
            print(f"error: Redis {mask_url(options.redis_url)}: {exc}", file=sys.stderr)
            return EXIT_FAILURE
        finally:
            client.close()
        print(f"  redis keys      {len(taken):>10,}  would be backed up ({', '.join(options.patterns)})")
        print(f"  left out        {left_out:>10,}  {left_out_line(left_out, examples)}")
    if options.database is not None:
        try:
            counts = count_rows(options.database)
        except BackupFailed as exc:
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_FAILURE
        shown = show_database(options.database_url or "", options.database)
        print(f"  database        {database_method(options):>10}  {shown}")
        w = max([22, *(len(t) + 2 for t in counts)])  # the label column: counts line up
        for table, rows in counts.items():
            shown = "absent" if rows is None else f"{rows:,}"
            print(f"  table {table:<{w}}{shown:>10}")
    for path in options.configs:
        print(f"  config          {path}")
    print(f"  into            {options.out}")
    print("result: OK (dry run)")
    return EXIT_OK


def print_summary(manifest: dict[str, Any], out: Path, elapsed_s: float) -> None:
    """The closing table, on stdout."""
    print("summary:")
    tables = (manifest["database"] or {}).get("tables", {})
    w = max([28, *(len(f"table {t}") + 2 for t in tables)])  # the label column: counts line up
    redis_part = manifest["redis"]
    if redis_part:
        ttl_note = f"({redis_part['with_ttl']:,} with a TTL)"
        print(f"  {'redis keys':<{w}}{redis_part['keys']:>10,}  from {redis_part['url']} {ttl_note}")
        vanished_note = "expired or deleted between SCAN and DUMP"
        print(f"  {'vanished':<{w}}{redis_part['vanished']:>10,}  {vanished_note}")
        left_out = left_out_line(redis_part["left_out"], redis_part["left_out_examples"])
        print(f"  {'left out':<{w}}{redis_part['left_out']:>10,}  {left_out} (db {redis_part['db']})")
    database = manifest["database"]
    if database:
        print(f"  {'database':<{w}}{database['method']:>10}  from {database['url']}")
        for table, info in database["tables"].items():
            shown = "absent" if info.get("absent") else f"{info['rows']:,}"
            print(f"  {'table ' + table:<{w}}{shown:>10}")
    print(f"  {'config files':<{w}}{len(manifest['config']):>10,}")
    size = sum(f["bytes"] for f in manifest["files"].values())
    print(
        f"  {'files':<{w}}{len(manifest['files']):>10,}  {size:,} bytes, SHA-256 in {out / MANIFEST}"
    )
    print(f"  {'elapsed':<{w}}{format_duration(elapsed_s):>10}")
    print(f"result: OK (backup_ms {manifest['backup_ms']})")


def main(argv: list[str] | None = None, *, prog: str = PROG) -> int:
    """Take the backup; see ``--help``."""
    options = parse_checked(build_parser(prog), argv, check_options)
    if options is None:
        return EXIT_USAGE
    for line in options.sources:
        print(f"{prog}: {line}", file=sys.stderr)
    if options.dry_run:
        return dry_run(options)

    started = time.monotonic()
    started_ms = now_ms()
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
