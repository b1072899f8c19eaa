"""Turn the old Node.js services' .env into the chat-api one (PROTOCOL section 7).

Mapping (the original migration guide's): PORT -> PORT; DB_HOST/DB_PORT/DB_USER/DB_PASSWORD/
DB_NAME -> DATABASE_URL=mysql://user:pass@host:port/db; REDIS_HOST/REDIS_PORT/REDIS_PASSWORD/
REDIS_DB -> REDIS_URL=redis://[:pass@]host:port/N where N is the database migrate_redis.py writes
to (db 1 unless ``--redis-db``; the old REDIS_DB names the migration's source); JWT_SECRET ->
JWT_SECRET_KEY; DASHSCOPE_API_KEY -> DASHSCOPE_API_KEY; LOG_LEVEL -> LOG_LEVEL; DASHSCOPE_MODEL ->
AI_MODEL. Every other variable is listed with the reason it is left out. Secrets are never printed.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from chat.cutover.common import EXIT_FAILURE, EXIT_OK, EXIT_USAGE, MASK, mask_url
from chat.cutover.config_urls import (
    REDIS_DEFAULTS,
    database_url,
    redis_db_of,
    redis_url,
    valid_port,
    value_or_default,
    with_redis_db,
)
from chat.cutover.envfile import quote_value, read_env, write_env

PROG = "migrate_config.py"
DB_VARS = ("DB_HOST", "DB_PORT", "DB_USER", "DB_PASSWORD", "DB_NAME")
REDIS_VARS = ("REDIS_HOST", "REDIS_PORT", "REDIS_PASSWORD", "REDIS_DB")
RENAMED = {
    "PORT": "PORT",
    "JWT_SECRET": "JWT_SECRET_KEY",
    "DASHSCOPE_API_KEY": "DASHSCOPE_API_KEY",
    "DASHSCOPE_MODEL": "AI_MODEL",
}
# The database migrate_redis.py writes to by default (PROTOCOL 8): the new service reads it.
TARGET_REDIS_DB = 1
# Node (winston) level names -> chat-api's LOG_LEVEL choices (debug, info, warning, error, critical).
LOG_LEVELS = {
    "error": "error",
    "warn": "warning",
    "warning": "warning",
    "info": "info",
    "http": "debug",
    "verbose": "debug",
    "debug": "debug",
    "silly": "debug",
    "critical": "critical",
}
# Why a known old variable is left out; any other gets GENERIC_REASON.
UNMAPPED_REASONS = {
    "NODE_ENV": "chat-api has no environment switch (production unless started in embedded mode)",
}
GENERIC_REASON = "no chat-api equivalent"
# chat-api's own variables (PROTOCOL 7): carried over unchanged when the old file has them.
NEW_NAMES = (
    "PORT",
    "DATABASE_URL",
    "REDIS_URL",
    "JWT_SECRET_KEY",
    "DASHSCOPE_API_KEY",
    "AI_PROVIDER",
    "AI_MODEL",
    "LOG_LEVEL",
    "DASHSCOPE_BASE_URL",
    "AI_BASE_URL",
    "AI_API_KEY",
)
SECRET_NAMES = frozenset({"JWT_SECRET_KEY", "DASHSCOPE_API_KEY", "AI_API_KEY"})
URL_NAMES = frozenset({"DATABASE_URL", "REDIS_URL", "DASHSCOPE_BASE_URL", "AI_BASE_URL"})


@dataclass
class Migration:
    """The new variables, in output order, and what the operator should hear about."""

    values: dict[str, str] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)  # new name -> old names it came from
    unmapped: dict[str, str] = field(default_factory=dict)  # old name -> why it is left out
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def migrate(old: Mapping[str, str | None], *, redis_db: int = TARGET_REDIS_DB) -> Migration:
    """Map old variables to new ones; never puts a secret value into a message.

    ``REDIS_URL`` names ``redis_db``, the database the migrated records are written to.
    """
    result = Migration()
    # A bare ``NAME`` line (no ``=``) sets nothing.
    env = {name: value for name, value in old.items() if value is not None}
    for name, value in old.items():
        if value is None:
            result.notes.append(f"{name} has no value (no '='): ignored")
    used: set[str] = set()

    _port(env, result, used)
    _compose(env, result, used, "DATABASE_URL", DB_VARS, build=database_url)
    _compose(env, result, used, "REDIS_URL", REDIS_VARS, build=lambda values: redis_url(values, redis_db))
    _note_target_db(env, result, redis_db)
    for old_name in ("JWT_SECRET", "DASHSCOPE_API_KEY", "DASHSCOPE_MODEL"):
        _rename(env, result, used, old_name, RENAMED[old_name])
    _log_level(env, result, used)
    for name in NEW_NAMES:
        if name in env and name not in used:
            _set(result, name, env[name], name)
            used.add(name)
    _carried_redis_db(env, result, redis_db)
    result.unmapped = {name: UNMAPPED_REASONS.get(name, GENERIC_REASON) for name in env if name not in used}
    result.values = {name: result.values[name] for name in NEW_NAMES if name in result.values}
    return result


def _set(result: Migration, name: str, value: str, *old_names: str) -> None:
    result.values[name] = value
    result.sources[name] = ", ".join(old_names)


def _port(env: dict[str, str], result: Migration, used: set[str]) -> None:
    if "PORT" not in env:
        return
    used.add("PORT")
    if env["PORT"] == "":
        result.notes.append("PORT is empty: left out (chat-api defaults to 8000)")
    elif valid_port(env["PORT"]):
        _set(result, "PORT", env["PORT"].strip(), "PORT")
    else:
        result.problems.append(f"PORT is not a port number: {env['PORT']!r}")


def _note_target_db(env: Mapping[str, str], result: Migration, redis_db: int) -> None:
    """Say why REDIS_URL's database is not the old REDIS_DB."""
    if "REDIS_URL" not in result.values or "REDIS_URL" in env:
        return
    result.sources["REDIS_URL"] += f"; db {redis_db}: the migration's target"
    old_db = value_or_default(env, "REDIS_DB", REDIS_DEFAULTS).strip()
    if old_db != str(redis_db):
        result.notes.append(
            f"REDIS_DB={old_db} is the old services' database: REDIS_URL names db {redis_db}, "
            "where migrate-redis writes the converted records (--redis-db to change)"
        )


def _carried_redis_db(env: Mapping[str, str], result: Migration, redis_db: int) -> None:
    """A REDIS_URL the old .env already had names the migration's target too (PROTOCOL 8): the
    service must read the database migrate_redis.py writes, not the old services' one."""
    url = result.values.get("REDIS_URL")
    if url is None or result.sources.get("REDIS_URL") != "REDIS_URL":
        return
    old_db = redis_db_of(url)
    if old_db == redis_db:
        return
    _set(result, "REDIS_URL", with_redis_db(url, redis_db), "REDIS_URL")
    result.sources["REDIS_URL"] += f"; db {redis_db}: the migration's target"
    result.notes.append(
        f"REDIS_URL={mask_url(url)} names db {old_db}, the old services' database: rewritten to db {redis_db}, "
        "where migrate-redis writes the converted records (--redis-db to change)"
    )


def _log_level(env: dict[str, str], result: Migration, used: set[str]) -> None:
    """LOG_LEVEL keeps its name; Node's level names become the service's."""
    if "LOG_LEVEL" not in env:
        return
    used.add("LOG_LEVEL")
    value = env["LOG_LEVEL"].strip()
    if value == "":
        result.notes.append("LOG_LEVEL is empty: left out (chat-api defaults to INFO)")
        return
    level = LOG_LEVELS.get(value.lower())
    if level is None:
        result.problems.append(f"LOG_LEVEL is not a level chat-api knows: {value!r} (debug, info, warning, error)")
        return
    if level != value.lower():
        result.notes.append(f"LOG_LEVEL={value} becomes {level} (the nearest chat-api level)")
    _set(result, "LOG_LEVEL", level, "LOG_LEVEL")


def _rename(env: dict[str, str], result: Migration, used: set[str], old_name: str, new_name: str) -> None:
    if old_name not in env:
        return
    used.add(old_name)
    value = env[old_name]
    if new_name != old_name and new_name in env:
        used.add(new_name)
        if env[new_name] != value:
            result.problems.append(f"both {old_name} and {new_name} are set, to different values: keep one")
            return
    if value == "":
        result.notes.append(f"{old_name} is empty: {new_name} left out")
        return
    _set(result, new_name, value, old_name)


def _compose(
    env: dict[str, str],
    result: Migration,
    used: set[str],
    new_name: str,
    parts: tuple[str, ...],
    *,
    build: Callable[[Mapping[str, str]], str],
) -> None:
    present = [name for name in parts if name in env]
    if not present:
        return
    used.update(present)
    if new_name in env:
        used.add(new_name)
        result.problems.append(f"both {new_name} and {'/'.join(present)} are set: keep one")
        return
    try:
        url = build(env)
    except ValueError as exc:
        result.problems.append(str(exc))
        return
    _set(result, new_name, url, *present)


def masked(name: str, value: str) -> str:
    """What may be shown of a variable's value."""
    if name in SECRET_NAMES:
        return MASK
    if name in URL_NAMES:
        return mask_url(value)
    return value


def render(migration: Migration, source: Path, *, mask: bool, prog: str = PROG) -> str:
    """The new .env file's text; with ``mask`` the secrets are replaced by ``***``.

    The header names the command that was run (``prog``) and the input file's full path."""
    lines = [f"# chat-api configuration, generated by {prog} from {source.resolve()}"]
    for name, reason in migration.unmapped.items():
        lines.append(f"# Not migrated: {name} ({reason})")
    for name, value in migration.values.items():
        lines.append(f"{name}={masked(name, value) if mask else quote_value(value)}")
    return "\n".join(lines) + "\n"


def build_parser(prog: str = PROG) -> argparse.ArgumentParser:
    """The command line (see --help)."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description=(
            "Convert the old Node.js .env into the chat-api .env: PORT; DB_HOST/DB_PORT/DB_USER/"
            "DB_PASSWORD/DB_NAME -> DATABASE_URL (mysql://user:pass@host:port/db); REDIS_HOST/"
            "REDIS_PORT/REDIS_PASSWORD -> REDIS_URL (redis://[:pass@]host:port/N, N the database "
            "migrate-redis writes to: --redis-db, default 1; the old REDIS_DB is the migration's "
            "source); JWT_SECRET -> JWT_SECRET_KEY; DASHSCOPE_API_KEY; DASHSCOPE_MODEL -> AI_MODEL; "
            "LOG_LEVEL. Other old variables are listed, with the reason, and left out. Secret "
            "values are never printed."
        ),
        epilog="Exit codes: 0 written (or shown, with --dry-run); 1 a value could not be "
        "mapped, the input is unreadable or the output exists without --force; "
        "2 bad command line.",
    )
    parser.add_argument("--input", required=True, type=Path, metavar="OLD.env", help="the old .env file")
    parser.add_argument(
        "--output",
        required=True,
        type=Path,
        metavar="NEW.env",
        help="the new .env file (created readable by its owner only)",
    )
    parser.add_argument("--force", action="store_true", help="overwrite the output if it exists")
    parser.add_argument(
        "--redis-db",
        type=_database_number,
        default=TARGET_REDIS_DB,
        metavar="N",
        help=f"the Redis database REDIS_URL names: migrate-redis's --target (default {TARGET_REDIS_DB})",
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="print the file that would be written, secrets masked; write nothing",
    )
    return parser


def _database_number(text: str) -> int:
    if not (text.isascii() and text.isdigit()):
        raise argparse.ArgumentTypeError(f"not a database number: {text!r}")
    return int(text)


def main(argv: list[str] | None = None, *, prog: str = PROG) -> int:
    """Run the conversion; see ``--help``."""
    args = build_parser(prog).parse_args(argv)
    source, target = args.input, args.output
    if target.exists() and source.exists() and os.path.samefile(source, target):
        print("error: --output is the --input file", file=sys.stderr)
        return EXIT_USAGE
    try:
        old, parse_warnings = read_env(source)
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        print(f"error: cannot read {source}: {reason}", file=sys.stderr)
        return EXIT_FAILURE
    migration = migrate(old, redis_db=args.redis_db)
    migration.problems[:0] = [f"{source}: {message}" for message in parse_warnings]
    print(f"migrate_config: {source} -> {target}{' (dry run)' if args.dry_run else ''}", file=sys.stderr)
    _print_findings(migration)
    if args.dry_run:
        print(render(migration, source, mask=True, prog=prog), end="")
        if target.exists() and not args.force:
            print(f"note: {target} exists: the real run needs --force", file=sys.stderr)
    elif not migration.problems:
        _write(migration, source, target, force=args.force, prog=prog)
    return _summary(migration, target, dry_run=args.dry_run)


def _print_findings(migration: Migration) -> None:
    """Notes, problems and the ``${`` warning, on stderr."""
    for note in migration.notes:
        print(f"note: {note}", file=sys.stderr)
    for problem in migration.problems:
        print(f"error: {problem}", file=sys.stderr)
    expanding = [name for name, value in migration.values.items() if "${" in value]
    if expanding:
        print(
            "warning: " + ", ".join(expanding) + " contain '${': load the file with variable "
            "expansion off (python-dotenv: interpolate=False) or they will change",
            file=sys.stderr,
        )


def _write(migration: Migration, source: Path, target: Path, *, force: bool, prog: str) -> None:
    """Write the new file; a failure becomes one more problem."""
    try:
        write_env(target, render(migration, source, mask=False, prog=prog), force=force)
    except FileExistsError:
        migration.problems.append(f"{target} exists: not overwritten (use --force)")
        print(f"error: {target} exists: not overwritten (use --force)", file=sys.stderr)
    except OSError as exc:
        migration.problems.append(f"cannot write {target}")
        print(f"error: cannot write {target}: {exc.strerror or exc}", file=sys.stderr)


def _summary(migration: Migration, target: Path, *, dry_run: bool) -> int:
    """The closing lines on stdout, and the exit code."""
    print("summary:")
    for name, value in migration.values.items():
        print(f"  {name}={masked(name, value)}  (from {migration.sources[name]})")
    for name, reason in migration.unmapped.items():
        print(f"  not mapped, left out: {name} ({reason})")
    if migration.problems:
        print(f"result: FAILED ({len(migration.problems)} problem(s)); nothing written")
        return EXIT_FAILURE
    if dry_run:
        print("result: OK (dry run: nothing written)")
    else:
        print(f"result: OK, wrote {target} ({len(migration.values)} variables)")
    return EXIT_OK
