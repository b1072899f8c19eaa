"""The rollback's command line and its checked options."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from datetime import UTC, tzinfo
from pathlib import Path

from chat.cutover.backup_format import DEFAULT_DATABASE_URL, DEFAULT_REDIS_URL
from chat.cutover.common import UsageError, mask_url, positive_int
from chat.cutover.config_urls import redis_db_of
from chat.cutover.migrate_redis.cli import time_zone
from chat.cutover.targets import (
    Variables,
    add_env_file_option,
    check_redis_url,
    database_target,
    read_variables,
    redis_target,
)
from chat.settings import DatabaseConfig

PROG = "rollback.py"
DEFAULT_BATCH = 500


def build_parser(prog: str = PROG) -> argparse.ArgumentParser:
    """The command line (see --help)."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description=(
            "Restore a backup taken by backup.py: the Redis keys (values and TTLs; keys under the "
            "backed-up patterns created since are removed), the SQL tables and the configuration "
            "files. The backup is checked first (manifest, checksums, counts), then the targets (the "
            "database account's privileges among them), and nothing is changed if one does not check "
            "out. Stop the services writing to these stores first."
        ),
        epilog=(
            "Exit codes: 0 everything restored; 1 the backup does not check out, a server is "
            "unreachable, a part failed, or the confirmation was declined; 2 bad command line, "
            "or no --yes with a non-interactive stdin. Passwords in URLs are never echoed."
        ),
    )
    parser.add_argument("--from", dest="source", metavar="DIR", help="backup directory")
    parser.add_argument(
        "--restore-saved",
        metavar="FILE",
        help="instead of a rollback: put back the rows a rollback saved (saved-since-backup-*.jsonl "
        "in the backup folder) into --database-url; conversations are updated to their saved "
        "state, messages and events added unless already there",
    )
    parser.add_argument(
        "--redis-url",
        metavar="URL",
        help=f"Redis to restore (default: $REDIS_URL, else REDIS_URL in the --env-file, else {DEFAULT_REDIS_URL})",
    )
    parser.add_argument(
        "--database-url",
        metavar="URL",
        help="SQL database to restore (default: $DATABASE_URL, else DATABASE_URL in the --env-file, "
        f"else {DEFAULT_DATABASE_URL}); its account needs SELECT, INSERT, DELETE for a logical backup, "
        "SELECT, INSERT, CREATE, DROP, ALTER, LOCK TABLES for a mysqldump one (docs/backup.md)",
    )
    add_env_file_option(parser)
    parser.add_argument(
        "--config-dir",
        metavar="DIR",
        help="put the configuration files here (default: where each was backed up from)",
    )
    _add_run_options(parser)
    return parser


def _add_run_options(parser: argparse.ArgumentParser) -> None:
    """--reverse-migrate, --reverse-target, the --skip-* options, --batch, --dry-run, --yes, --quiet."""
    parser.add_argument(
        "--reverse-migrate",
        action="store_true",
        help="keep the sessions created or changed since the backup: write them back in the old "
        "Node.js format (with their TTL) instead of losing them",
    )
    parser.add_argument(
        "--reverse-target",
        metavar="URL",
        help="with --reverse-migrate: the Redis the old services read. Needed after a migration "
        "from db 0 to db 1 (the default one): give redis://HOST:6379/0, else the sessions are "
        "written back into the restored database, where the old services do not look; "
        "default: --redis-url itself (a warning says so)",
    )
    parser.add_argument(
        "--naive-tz",
        type=time_zone,
        default=UTC,
        metavar="ZONE",
        help="with --reverse-migrate: the --naive-tz migrate-redis was given (default UTC), so that an "
        "unchanged record whose times had no offset comes back byte for byte",
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
    restore_saved: Path | None = None
    sources: list[str] = field(default_factory=list)  # where each URL came from, masked
    # the service's variables, for DB_TABLE_PREFIX when neither the backup nor the saved file records it
    variables: Variables = field(default_factory=lambda: Variables(None, {}))
    naive_tz: tzinfo = UTC  # --naive-tz: the zone the migration read times without an offset in


def _restore_saved_options(args: argparse.Namespace, variables: Variables) -> Options:
    """--restore-saved FILE: only a database (the saved file's header names its tables' prefix)."""
    database_url = database = None
    sources = []
    if not args.skip_database:
        database_url, database, source = database_target(args.database_url, variables, with_prefix=False)
        sources.append(source)
    return Options(Path(args.source or "."), None, None, database, database_url, None, False,
                   args.batch, args.dry_run, args.yes, args.quiet, Path(args.restore_saved),
                   [variables.describe(), *sources], variables)


def check_options(args: argparse.Namespace) -> Options:
    """Resolve defaults and check what argparse cannot; UsageError on a bad value."""
    if not args.source and not args.restore_saved:
        raise UsageError("--from DIR is required (or --restore-saved FILE)")
    variables = read_variables(args.env_file)
    sources: list[str] = []
    if args.restore_saved:
        return _restore_saved_options(args, variables)
    if args.reverse_target and not args.reverse_migrate:
        raise UsageError("--reverse-target needs --reverse-migrate")
    if args.reverse_migrate and args.skip_redis:
        raise UsageError("--reverse-migrate works on Redis: it cannot go with --skip-redis")
    redis_url = reverse_url = database_url = None
    database = None
    if not args.skip_redis:
        redis_url, source = redis_target(args.redis_url, variables)
        check_redis_url(redis_url, "--redis-url")
        sources.append(source)
        if args.reverse_migrate:
            reverse_url = args.reverse_target or redis_url
            check_redis_url(reverse_url, "--reverse-target")
            if not args.reverse_target:
                sources.append(
                    f"warning: --reverse-migrate without --reverse-target writes the sessions back into "
                    f"{mask_url(redis_url)} (db {redis_db_of(redis_url)}), the database restored; the old "
                    "services read the database migrate-redis read (db 0 by default): give --reverse-target "
                    "redis://HOST:6379/0")
    if not args.skip_database:
        # the tables' prefix is the backup's (its manifest): the .env is not read for it
        database_url, database, source = database_target(args.database_url, variables, with_prefix=False)
        sources.append(source)
    sources.insert(0, variables.describe())
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
        sources=sources,
        variables=variables,
        naive_tz=args.naive_tz,
    )


