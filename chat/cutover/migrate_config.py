"""Turn the old Node.js services' .env into the chat-api one (PROTOCOL section 7).

Mapping (the original migration guide's): PORT -> PORT; DB_HOST/DB_PORT/DB_USER/DB_PASSWORD/
DB_NAME -> DATABASE_URL=mysql://user:pass@host:port/db; REDIS_HOST/REDIS_PORT/REDIS_PASSWORD/
REDIS_DB -> REDIS_URL=redis://[:pass@]host:port/db; JWT_SECRET -> JWT_SECRET_KEY;
DASHSCOPE_API_KEY -> DASHSCOPE_API_KEY. Secrets are never printed.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

from chat.cutover.common import EXIT_FAILURE, EXIT_OK, EXIT_USAGE, MASK, mask_url
from chat.cutover.envfile import quote_value, read_env, write_env

PROG = "migrate_config.py"
DB_VARS = ("DB_HOST", "DB_PORT", "DB_USER", "DB_PASSWORD", "DB_NAME")
REDIS_VARS = ("REDIS_HOST", "REDIS_PORT", "REDIS_PASSWORD", "REDIS_DB")
DB_DEFAULTS = {
    "DB_HOST": "localhost",
    "DB_PORT": "3306",
    "DB_USER": "root",
    "DB_PASSWORD": "",
    "DB_NAME": "chat_api",
}
REDIS_DEFAULTS = {
    "REDIS_HOST": "localhost",
    "REDIS_PORT": "6379",
    "REDIS_PASSWORD": "",
    "REDIS_DB": "0",
}
RENAMED = {"PORT": "PORT", "JWT_SECRET": "JWT_SECRET_KEY", "DASHSCOPE_API_KEY": "DASHSCOPE_API_KEY"}
# chat-api's own variables (PROTOCOL 7): carried over unchanged when the old file has them.
NEW_NAMES = (
    "PORT",
    "DATABASE_URL",
    "REDIS_URL",
    "JWT_SECRET_KEY",
    "DASHSCOPE_API_KEY",
    "AI_PROVIDER",
    "AI_MODEL",
    "DASHSCOPE_BASE_URL",
    "AI_BASE_URL",
    "AI_API_KEY",
)
SECRET_NAMES = frozenset({"JWT_SECRET_KEY", "DASHSCOPE_API_KEY", "AI_API_KEY"})
URL_NAMES = frozenset({"DATABASE_URL", "REDIS_URL", "DASHSCOPE_BASE_URL", "AI_BASE_URL"})

_HOSTNAME = re.compile(r"[A-Za-z0-9._-]+")
_IPV6 = re.compile(r"[0-9A-Fa-f:.]+")


@dataclass
class Migration:
    """The new variables, in output order, and what the operator should hear about."""

    values: dict[str, str] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)  # new name -> old names it came from
    unmapped: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def migrate(old: Mapping[str, str | None]) -> Migration:
    """Map old variables to new ones; never puts a secret value into a message."""
    result = Migration()
    # A bare ``NAME`` line (no ``=``) sets nothing.
    env = {name: value for name, value in old.items() if value is not None}
    for name, value in old.items():
        if value is None:
            result.notes.append(f"{name} has no value (no '='): ignored")
    used: set[str] = set()

    _port(env, result, used)
    _compose(env, result, used, "DATABASE_URL", DB_VARS, build=_database_url)
    _compose(env, result, used, "REDIS_URL", REDIS_VARS, build=_redis_url)
    for old_name in ("JWT_SECRET", "DASHSCOPE_API_KEY"):
        _rename(env, result, used, old_name, RENAMED[old_name])
    for name in NEW_NAMES:
        if name in env and name not in used:
            _set(result, name, env[name], name)
            used.add(name)
    result.unmapped = [name for name in env if name not in used]
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
    elif _valid_port(env["PORT"]):
        _set(result, "PORT", env["PORT"].strip(), "PORT")
    else:
        result.problems.append(f"PORT is not a port number: {env['PORT']!r}")


def _rename(
    env: dict[str, str], result: Migration, used: set[str], old_name: str, new_name: str
) -> None:
    if old_name not in env:
        return
    used.add(old_name)
    value = env[old_name]
    if new_name != old_name and new_name in env:
        used.add(new_name)
        if env[new_name] != value:
            result.problems.append(
                f"both {old_name} and {new_name} are set, to different values: keep one"
            )
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


def _value(env: Mapping[str, str], name: str, defaults: Mapping[str, str]) -> str:
    """The old services read ``process.env.X || default``: an empty value means the default."""
    return env.get(name) or defaults[name]


def _valid_port(text: str) -> bool:
    text = text.strip()
    return text.isascii() and text.isdigit() and 0 < int(text) < 65536


def _host(name: str, host: str) -> str:
    host = host.strip()
    if ":" in host and _IPV6.fullmatch(host.strip("[]")):
        return f"[{host.strip('[]')}]"
    if not _HOSTNAME.fullmatch(host):
        raise ValueError(f"{name} is not a host name or address: {host!r}")
    return host


def _checked_port(name: str, port: str) -> str:
    if not _valid_port(port):
        raise ValueError(f"{name} is not a port number: {port!r}")
    return port.strip()


def _database_url(env: Mapping[str, str]) -> str:
    """``mysql://user:pass@host:port/db``, user, password and database percent-encoded."""
    host = _host("DB_HOST", _value(env, "DB_HOST", DB_DEFAULTS))
    port = _checked_port("DB_PORT", _value(env, "DB_PORT", DB_DEFAULTS))
    user = quote(_value(env, "DB_USER", DB_DEFAULTS), safe="")
    password = quote(env.get("DB_PASSWORD", ""), safe="")
    database = quote(_value(env, "DB_NAME", DB_DEFAULTS), safe="")
    return f"mysql://{user}:{password}@{host}:{port}/{database}"


def _redis_url(env: Mapping[str, str]) -> str:
    """``redis://[:pass@]host:port/db``, the password percent-encoded."""
    host = _host("REDIS_HOST", _value(env, "REDIS_HOST", REDIS_DEFAULTS))
    port = _checked_port("REDIS_PORT", _value(env, "REDIS_PORT", REDIS_DEFAULTS))
    db = _value(env, "REDIS_DB", REDIS_DEFAULTS).strip()
    if not (db.isascii() and db.isdigit()):
        raise ValueError(f"REDIS_DB is not a database number: {db!r}")
    password = env.get("REDIS_PASSWORD", "")
    auth = f":{quote(password, safe='')}@" if password else ""
    return f"redis://{auth}{host}:{port}/{int(db)}"


def masked(name: str, value: str) -> str:
    """What may be shown of a variable's value."""
    if name in SECRET_NAMES:
        return MASK
    if name in URL_NAMES:
        return mask_url(value)
    return value


def render(migration: Migration, input_name: str, *, mask: bool) -> str:
    """The new .env file's text; with ``mask`` the secrets are replaced by ``***``."""
    lines = [f"# chat-api configuration, generated by scripts/migrate_config.py from {input_name}"]
    if migration.unmapped:
        lines.append("# Not migrated (no chat-api equivalent): " + ", ".join(migration.unmapped))
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
            "REDIS_PORT/REDIS_PASSWORD/REDIS_DB -> REDIS_URL (redis://[:pass@]host:port/db); "
            "JWT_SECRET -> JWT_SECRET_KEY; DASHSCOPE_API_KEY. Other old variables are listed, "
            "by name, and left out. Secret values are never printed."
        ),
        epilog="Exit codes: 0 written (or shown, with --dry-run); 1 a value could not be "
        "mapped, the input is unreadable or the output exists without --force; "
        "2 bad command line.",
    )
    parser.add_argument(
        "--input", required=True, type=Path, metavar="OLD.env", help="the old .env file"
    )
    parser.add_argument(
        "--output",
        required=True,
        type=Path,
        metavar="NEW.env",
        help="the new .env file (created readable by its owner only)",
    )
    parser.add_argument("--force", action="store_true", help="overwrite the output if it exists")
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="print the file that would be written, secrets masked; write nothing",
    )
    return parser


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
    migration = migrate(old)
    migration.problems[:0] = [f"{source}: {message}" for message in parse_warnings]
    print(f"migrate_config: {source} -> {target}{' (dry run)' if args.dry_run else ''}", file=sys.stderr)
    _print_findings(migration)
    if args.dry_run:
        print(render(migration, source.name, mask=True), end="")
        if target.exists() and not args.force:
            print(f"note: {target} exists: the real run needs --force", file=sys.stderr)
    elif not migration.problems:
        _write(migration, source, target, force=args.force)
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


def _write(migration: Migration, source: Path, target: Path, *, force: bool) -> None:
    """Write the new file; a failure becomes one more problem."""
    try:
        write_env(target, render(migration, source.name, mask=False), force=force)
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
    if migration.unmapped:
        print("  not mapped (no chat-api equivalent, left out): " + ", ".join(migration.unmapped))
    if migration.problems:
        print(f"result: FAILED ({len(migration.problems)} problem(s)); nothing written")
        return EXIT_FAILURE
    if dry_run:
        print("result: OK (dry run: nothing written)")
    else:
        print(f"result: OK, wrote {target} ({len(migration.values)} variables)")
    return EXIT_OK
