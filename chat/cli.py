"""`chat-api` (also `python -m chat`): serve, db upgrade, db adopt, token, states diagram, stats rebuild, export,
and the cut-over programs (migrate-redis, migrate-config, backup, rollback, monitor: chat/cutover/commands.py)."""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from chat import export_cli, users_cli
from chat.cutover import commands as cutover
from chat.cutover.common import positive_int
from chat.embedded_accounts import FirstAccount, ensure_first_accounts
from chat.envfile import EnvFile, EnvFileError, load_env_file, merged
from chat.settings import EmbeddedRefused, InstanceData, NoInstanceData, Settings, SettingsError
from chat.settings_parse import PORT_NUMBER

if TYPE_CHECKING:
    from chat.store import Store

DEV_TOKEN_TTL_S = 7 * 24 * 3600


def _read_settings(
    args: argparse.Namespace, instance: InstanceData = "data"
) -> tuple[Settings, EnvFile, dict[str, str]]:
    """Read the `.env` file (`--env-file`, else ./.env) under the environment: the settings, the
    file and the variables they were read from; one clear line and exit 2 when something is wrong.
    `instance`: what the command reads of an embedded instance's data (chat.settings_rules): run where
    there is none, it is refused before anything is made there (a new secret, an empty database)."""
    try:
        env_file = load_env_file(args.env_file, os.environ)
        env = merged(env_file, os.environ)
        return Settings.from_env(env, instance=instance), env_file, env
    except EnvFileError as exc:
        print(f"chat-api: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    except SettingsError as exc:
        print(f"chat-api: configuration error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    except NoInstanceData as exc:
        command = " ".join(filter(None, (args.command, getattr(args, f"{args.command}_command", None))))
        print(f"chat-api {command}: no embedded instance's data in {exc.data_dir.resolve()}: run it in the "
              "directory `chat-api serve` runs in (`./dev serve`: the repository's), or set CHAT_DATA_DIR, "
              "or REDIS_URL and DATABASE_URL", file=sys.stderr)
        raise SystemExit(2) from None


def _settings(args: argparse.Namespace, *, say_env_file: bool = True, instance: InstanceData = "data") -> Settings:
    """The settings (`instance`: as _read_settings); the `.env` file read (or none) is said on stderr."""
    settings, env_file, _ = _read_settings(args, instance)
    if say_env_file:
        print(f"chat-api: {env_file.describe()}", file=sys.stderr, flush=True)
    return settings


def _banner(settings: Settings, host: str, port: int, accounts: list[FirstAccount]) -> str:
    from chat.auth import issue_token

    shown = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    base = f"http://{shown}:{port}"
    tokens = {
        role: issue_token(settings.jwt_secret_key, sub, role, ttl_s=DEV_TOKEN_TTL_S, name=sub)
        for role, sub in (("customer", "customer-1"), ("agent", "agent-1"), ("admin", "admin-1"))
    }
    lines = [
        "chat-api: single-instance development mode (embedded in-process Redis, "
        f"SQLite at {settings.database.path}); AI provider: {settings.ai_provider}",
        "  not for production: set REDIS_URL, DATABASE_URL and JWT_SECRET_KEY for that",
        *([f"  listening on {host} only: `serve --host 0.0.0.0` (or HOST) to be reached from other machines"]
          if host == "127.0.0.1" else []),
        f"  console:   {base}/console/",
        f"  demo:      {base}/demo/   (a sample shop with the customer widget: {base}/widget.js)",
        f"  health:    {base}/health",
        f"  websocket: ws://{shown}:{port}/ws?token=<token>",
        f"  REST:      {base}/api/v1/...   (Authorization: Bearer <token>)",
        f"  OpenAPI:   {base}/api/openapi.json",
        f"  API docs:  {base}/api/docs",
        f"  log in (the console, or POST {base}/api/v1/auth/login {{\"user_id\", \"password\"}}):",
    ]
    for account in accounts:
        password = (f"password {account.password}" if account.password is not None
                    else "password changed since the first start (not shown)")
        lines.append(f"    {account.role:8} user id {account.user_id:8} {password}")
    lines.append("  tokens (valid 7 days):")
    lines += [f"    {role:8} {token}" for role, token in tokens.items()]
    return "\n".join(lines)


def cmd_serve(args: argparse.Namespace) -> int:
    """Run the service until interrupted: one process, or `--workers N` sharing the port (chat/workers.py)."""
    from chat import workers

    # one process makes the embedded instance's data; `--workers N` does not run in that mode, and is refused
    # there before the settings read makes anything (a new secret)
    try:
        settings, env_file, env = _read_settings(args, instance=None if args.workers == 1 else "refused")
    except EmbeddedRefused:  # nothing shared: the port does not matter
        print(f"chat-api: {workers.refusal(args.workers, port=0, shared=False)}", file=sys.stderr)
        return 2
    try:
        settings.check_serve(env)  # the offline echo provider only when asked for, outside the embedded mode
    except SettingsError as exc:
        print(f"chat-api: configuration error: {exc}", file=sys.stderr)
        return 2
    host = args.host or settings.host
    port = args.port if args.port is not None else settings.port
    problem = workers.refusal(args.workers, port=port,
                              shared=settings.redis is not None and settings.database.kind != "sqlite")
    if problem:
        print(f"chat-api: {problem}", file=sys.stderr)
        return 2
    if args.workers == 1:
        return _serve(settings, env_file, host, port, reuse_port=False)
    return workers.supervise(args.workers, lambda: _serve(settings, env_file, host, port, reuse_port=True))


async def freeze_heap(_app: object) -> None:
    """Once the service has started: collect, then move every object alive (the imported modules, the
    app) out of the collector's reach (gc.freeze). The oldest generation's collections then walk only
    what was made since, instead of pausing the loop for tens of milliseconds (61 ms measured during
    the AI benchmark: the slowest of its provider requests waited for it)."""
    gc.collect()
    gc.freeze()


def _serve(settings: Settings, env_file: EnvFile, host: str, port: int, *, reuse_port: bool) -> int:
    """One instance in this process, until SIGTERM or SIGINT (then it drains: aiohttp's run_app)."""
    from aiohttp import web

    from chat import keys
    from chat.app import create_app
    from chat.logs import START_LOGGER, setup_logging
    from chat.store import DatabaseError
    from chat.store.db import CannotConnect
    from chat.store.migrations import ForeignSchema

    app = create_app(settings)
    app.on_startup.append(freeze_heap)  # after every startup context of the app
    setup_logging(settings, app[keys.INSTANCE_ID])  # LOG_FORMAT text|json, tokens and secrets masked
    logging.getLogger(START_LOGGER).info("chat-api starting: %s; %s; pid %d", settings.describe(), env_file.describe(),
                                       os.getpid())  # one line per worker with --workers
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # the default loop works, only slower
        pass
    try:
        if settings.embedded:  # the first admin and agent, made on the first start (chat/embedded_accounts.py)
            print(_banner(settings, host, port, asyncio.run(ensure_first_accounts(settings))), flush=True)
        web.run_app(app, host=host, port=port, reuse_port=reuse_port or None,
                    print=lambda text: print(text, flush=True))
    except ForeignSchema as exc:  # another system's tables under the service's names: nothing written
        print(f"chat-api: {settings.database.describe()}: {exc}", file=sys.stderr)
        return 2
    except CannotConnect as exc:  # MySQL not reached at start (chat.store.db.connect_waiting): one line, no traceback
        waited = ("at once (waiting will not change this)" if exc.lasting
                  else f"after {settings.db_connect_timeout_s:g} s (DB_CONNECT_TIMEOUT_S)")
        print(f"chat-api: gave up on the database {waited}: {exc}", file=sys.stderr)
        return 2
    except DatabaseError as exc:  # an SQLite file that cannot be opened (not waited for), a failed upgrade
        print(f"chat-api: gave up on the database: {exc}", file=sys.stderr)
        return 2
    return 0


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    """Create or upgrade the SQL schema (idempotent)."""
    settings = _settings(args, instance=None)  # like `serve`, it makes the embedded instance's database

    async def upgrade(store: Store) -> int:
        applied = await store.migrations.upgrade()
        version = await store.migrations.version()
        if applied:
            print(f"{settings.database.describe()}: applied schema version(s) {applied}; now at {version}")
        else:
            print(f"{settings.database.describe()}: schema already at version {version}; nothing to do")
        return 0

    return users_cli.run_on_store(settings, upgrade, upgrade=False)


def cmd_db_adopt(args: argparse.Namespace) -> int:
    """Create the SQL rows of migrated Redis records (after scripts/migrate_redis.py)."""
    from redis.exceptions import RedisError

    from chat.adopt import AdoptStats, adopt
    from chat.store import DatabaseError

    settings = _settings(args)
    if settings.redis is None:
        print("chat-api: db adopt needs REDIS_URL (the embedded Redis holds no migrated records)", file=sys.stderr)
        return 2

    def progress(stats: AdoptStats) -> None:
        print(f"  scanned {stats.scanned}, adopted {stats.adopted}", file=sys.stderr, flush=True)

    try:
        stats = asyncio.run(adopt(settings, batch=args.batch, progress=progress))
    except (DatabaseError, RedisError, OSError) as exc:
        print(f"chat-api: db adopt failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        print("result: FAILED (see the error above; rows adopted before it stay, a new run adds only the rest)")
        return 1
    print(f"scanned {stats.scanned} session keys: {stats.adopted} adopted, {stats.present} already had a row, "
          f"{stats.invalid} invalid")
    if stats.invalid:
        print(f"result: FAILED ({stats.invalid} invalid record(s), not adopted: the 'skipped session:...' lines on "
              f"stderr; {stats.adopted} adopted)")
        return 1
    print(f"result: OK ({stats.adopted} adopted, {stats.present} already had a row)")
    return 0


def cmd_db_import_legacy(args: argparse.Namespace) -> int:
    """Copy the old system's tables into the service's by a TOML column mapping (docs/cutover.md)."""
    from chat.store.legacy_import import run_command

    return run_command(_settings(args).database, args.mapping, dry_run=args.dry_run, batch=args.batch)


def cmd_token(args: argparse.Namespace) -> int:
    """Print a JWT signed with the configured secret."""
    from chat.auth import issue_token

    # stdout is the token: the file read is no news here; the embedded instance's secret unless JWT_SECRET_KEY is set
    settings = _settings(args, say_env_file=False, instance="secret")
    teams = [t for t in (args.teams or "").split(",") if t]
    try:
        token = issue_token(settings.jwt_secret_key, args.sub, args.role, ttl_s=args.ttl_s, name=args.name, teams=teams)
    except ValueError as exc:  # a token the service would refuse is not printed
        print(f"chat-api token: {exc}", file=sys.stderr)
        return 2
    print(token)
    return 0


def cmd_users(args: argparse.Namespace) -> int:
    """Staff accounts: add, passwd, deactivate, activate, list (chat/users_cli.py)."""
    return users_cli.run_command(args, _settings(args, say_env_file=False))


def cmd_states_diagram(args: argparse.Namespace) -> int:
    """Print the transition table as a mermaid state diagram."""
    from states import mermaid_diagram

    sys.stdout.write(mermaid_diagram())
    return 0


def cmd_stats_rebuild(args: argparse.Namespace) -> int:
    """Check every conversation row against the replay of its event log (`--repair`: fix the rows)."""
    from chat.stats_rebuild import RebuildReport, rebuild
    from chat.store import DatabaseError

    def progress(report: RebuildReport) -> None:
        print(f"  checked {report.checked}, differing {report.differing}, repaired {report.repaired}, "
              f"broken logs {report.broken_logs}", file=sys.stderr, flush=True)

    try:
        report = asyncio.run(rebuild(_settings(args), repair=args.repair, batch=args.batch, progress=progress))
    except (DatabaseError, OSError) as exc:
        print(f"chat-api: stats rebuild failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    for line in report.lines:
        print(line)
    print(f"checked {report.checked} conversations against their event log: {report.differing} differing "
          f"({report.repaired} repaired), {report.broken_logs} broken logs; the statistics are computed from the "
          "log on each request")
    return 0 if report.broken_logs == 0 and report.differing == report.repaired else 1


def _add_stats(sub: Any) -> None:
    """`chat-api stats rebuild`."""
    stats = sub.add_parser("stats", help="statistics commands")
    stats_sub = stats.add_subparsers(dest="stats_command", required=True)
    rebuild_cmd = stats_sub.add_parser(
        "rebuild", help="check each conversation's row against its replayed event log (the statistics' source)")
    rebuild_cmd.add_argument("--repair", action="store_true", help="rewrite the rows that differ from their log")
    rebuild_cmd.add_argument("--batch", type=positive_int, default=500, help="conversations per read (default 500)")
    rebuild_cmd.set_defaults(func=cmd_stats_rebuild)


def _port(text: str) -> int:
    """argparse type: a listen port, checked as PORT is."""
    try:
        return PORT_NUMBER.read("--port", text)
    except SettingsError as exc:
        raise argparse.ArgumentTypeError(exc.problem) from None


def build_parser() -> argparse.ArgumentParser:
    """The command line of chat-api."""
    parser = argparse.ArgumentParser(prog="chat-api", description="Customer-support chat service")
    parser.add_argument("--env-file", type=Path, metavar="PATH",
                        help="read the variables of this .env file (default: ./.env when it exists); "
                             "variables already in the environment win. Give it before the command (the "
                             "cut-over commands also take it after theirs)")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the service")
    serve.add_argument("--host", help="listen address (default HOST or 0.0.0.0)")
    serve.add_argument("--port", type=_port, help="listen port, 0-65535 (default PORT or 8000)")
    serve.add_argument("--workers", type=int, default=1, metavar="N",
                       help="processes sharing the port (SO_REUSEPORT), each a whole instance; needs REDIS_URL and a "
                            "MySQL DATABASE_URL (default 1)")
    serve.set_defaults(func=cmd_serve)

    db = sub.add_parser("db", help="database commands")
    db_sub = db.add_subparsers(dest="db_command", required=True)
    upgrade = db_sub.add_parser("upgrade", help="create or upgrade the schema (idempotent)")
    upgrade.set_defaults(func=cmd_db_upgrade)
    adopt_cmd = db_sub.add_parser("adopt", help="create the SQL rows of migrated Redis session records")
    adopt_cmd.add_argument("--batch", type=positive_int, default=500, help="keys per SCAN (default 500)")
    adopt_cmd.set_defaults(func=cmd_db_adopt)
    legacy = db_sub.add_parser("import-legacy", help="copy the old system's tables into the service's (TOML mapping)")
    legacy.add_argument("--mapping", type=Path, required=True,
                        help="the column mapping (docs/legacy-mapping.example.toml)")
    legacy.add_argument("--dry-run", action="store_true", help="read and convert everything, write nothing")
    legacy.add_argument("--batch", type=positive_int, default=500, help="old rows per read (default 500)")
    legacy.set_defaults(func=cmd_db_import_legacy)

    token = sub.add_parser("token", help="print a JWT signed with JWT_SECRET_KEY")
    token.add_argument("--sub", required=True, help="user id")
    token.add_argument("--role", required=True, choices=["customer", "agent", "admin"])
    token.add_argument("--ttl-s", type=positive_int, default=3600, help="lifetime in seconds, ≥ 1 (default 3600)")
    token.add_argument("--name", help="display name claim")
    token.add_argument("--teams", help="comma-separated team ids (agents)")
    token.set_defaults(func=cmd_token)

    users_cli.add_to(sub, cmd_users)

    states = sub.add_parser("states", help="state machine commands")
    states_sub = states.add_subparsers(dest="states_command", required=True)
    diagram = states_sub.add_parser("diagram", help="print the transition table as mermaid")
    diagram.set_defaults(func=cmd_states_diagram)

    _add_stats(sub)
    export_cli.add_to(sub)
    cutover.add_to(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script."""
    argv = sys.argv[1:] if argv is None else argv
    code = cutover.run(argv)  # a cut-over program parses its own arguments
    if code is not None:
        return code
    args = build_parser().parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    return func(args)


if __name__ == "__main__":
    sys.exit(main())
