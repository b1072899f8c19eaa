"""The rollback: check the backup, plan, confirm, then restore Redis, the database and the files."""

from __future__ import annotations

import os
import shutil
import sqlite3
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pymysql  # type: ignore[import-untyped]  # no stubs installed (types-PyMySQL)
import redis

from chat.cutover.backup_format import FormatError
from chat.cutover.backup_sql import backup_prefix
from chat.cutover.common import EXIT_FAILURE, EXIT_OK, EXIT_USAGE, Progress, UsageError, mask_url, parse_checked
from chat.cutover.migrate_redis.cli import same_database
from chat.cutover.rollback.backed_up import BackedUp
from chat.cutover.rollback.checks import Backup, BackupInvalid, load_backup
from chat.cutover.rollback.database import RestoreFailed, database_now, preflight_database, restore_database
from chat.cutover.rollback.forgotten import scrubbed_since
from chat.cutover.rollback.options import PROG, Options, build_parser, check_options
from chat.cutover.rollback.redis_apply import apply_redis
from chat.cutover.rollback.redis_plan import ReverseSources, plan_redis
from chat.cutover.rollback.report import Outcome, Plan, confirm, key_name, print_plan, print_summary
from chat.cutover.rollback.restore import restore_saved
from chat.cutover.rollback.reverse_report import print_reverse_done, print_reverse_plan
from chat.cutover.rollback.saved import TakenPlace, save_since_backup, saved_prefix


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


def _version(text: Any) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in str(text).split(".")[:3])
    except ValueError:
        return ()


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
        """Close each client once."""
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
            plan.in_place = same_database(clients.main, clients.reverse)
    if options.database is not None and backup.database is not None:
        found, plan.account = preflight_database(backup, options.database)
        problems += found
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
                print(f"failed: {key_name(key)}: {reason}", file=sys.stderr)
            if outcome.redis.failed:
                outcome.problems.append(f"redis: {len(outcome.redis.failed):,} key(s) failed")
    if plan.database_now is not None and not stopped:
        stopped = _database_part(backup, options, outcome)
    if plan.configs and not stopped:
        try:
            outcome.configs = restore_configs(backup, plan.configs)
        except OSError as exc:
            outcome.problems.append(f"config: {exc}")
    return outcome


def _database_part(backup: Backup, options: Options, outcome: Outcome) -> bool:
    """Save what was written since the backup, then restore the database; True: stopped there."""
    assert options.database is not None and backup.database is not None
    try:
        outcome.saved = save_since_backup(
            backup.root, list(backup.database["tables"]), backup.backup_ms, options.database, BackedUp(backup)
        )
    except (FormatError, OSError, pymysql.MySQLError, sqlite3.Error) as exc:
        outcome.problems.append(f"database: cannot save the rows written since the backup ({exc}): not restored")
        return True
    counts = ", ".join(f"{count:,} {table}" for table, count in outcome.saved.counts.items() if count) or "no rows"
    print(f"saved since the backup: {counts} -> {outcome.saved.path}", flush=True)
    progress = Progress("database", enabled=not options.quiet)
    try:
        outcome.rows = restore_database(backup, options.database, progress)
    except (RestoreFailed, FormatError, OSError, pymysql.MySQLError, sqlite3.Error) as exc:
        outcome.problems.append(f"database: {exc}")
        return True
    finally:
        progress.close()
    return False


def restore_saved_main(options: Options) -> int:
    """``--restore-saved FILE``: put the rows a rollback saved back into --database-url."""
    assert options.restore_saved is not None
    if options.database is None:
        print("error: --restore-saved writes to the database: it cannot go with --skip-database", file=sys.stderr)
        return EXIT_USAGE
    shown = mask_url(options.database_url or "")
    print(f"restore saved rows: {options.restore_saved} -> {shown}{' (dry run)' if options.dry_run else ''}")
    try:
        prefix = saved_prefix(options.restore_saved)
        if prefix is None:  # a file of an older version: the service's DB_TABLE_PREFIX
            prefix = options.variables.table_prefix()[0]
        config = replace(options.database, table_prefix=prefix)
        done = restore_saved(options.restore_saved, config, dry_run=options.dry_run)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (FormatError, OSError, KeyError, TakenPlace, pymysql.MySQLError, sqlite3.Error) as exc:
        print(f"error: {exc}", file=sys.stderr)
        print("result: FAILED (rolled back: nothing written)")
        return EXIT_FAILURE
    print("summary:")
    width = max((len(table) for table in done), default=0)
    for table, (written, there) in done.items():
        print(f"  {table:<{width}} {written:>10,}  written ({there:,} already there, left alone)")
    print("result: OK" + (" (dry run: nothing written)" if options.dry_run else ""))
    return EXIT_OK


def main(argv: list[str] | None = None, *, prog: str = PROG) -> int:
    """Run the rollback; see ``--help``."""
    options = parse_checked(build_parser(prog), argv, check_options)
    if options is None:
        return EXIT_USAGE
    for line in options.sources:
        print(f"{prog}: {line}", file=sys.stderr)
    if options.restore_saved is not None:
        return restore_saved_main(options)
    started = time.monotonic()
    try:
        backup = load_backup(options.source, Progress("verify (bytes)", enabled=not options.quiet))
    except BackupInvalid as exc:
        for problem in exc.problems:
            print(f"error: {problem}", file=sys.stderr)
        print("result: REFUSED (the backup does not check out; nothing was changed)")
        return EXIT_FAILURE
    try:
        _take_backup_prefix(backup, options)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    clients = Clients(options)
    plan = Plan()
    try:
        problems = make_plan(backup, options, clients, plan)
        if problems:
            for problem in problems:
                print(f"error: {problem}", file=sys.stderr)
            print("result: REFUSED (nothing was changed)")
            return EXIT_FAILURE
        print_plan(backup, options, plan)
        print_reverse_plan(plan.redis, options.reverse_url, database_read=options.database is not None)
        stop = _stop_before_changes(options, plan)
        if stop is not None:
            return stop
        outcome = run(backup, options, clients, plan)
    except KeyboardInterrupt:
        print("result: INTERRUPTED (a rollback that had started: run the same command again)")
        return EXIT_FAILURE
    finally:
        clients.close()
    print_reverse_done(outcome.redis, plan.redis, options.reverse_url)
    print_summary(outcome, plan, time.monotonic() - started)
    return EXIT_FAILURE if outcome.problems else EXIT_OK


def _take_backup_prefix(backup: Backup, options: Options) -> None:
    """Name the service's tables as the backup did (its DB_TABLE_PREFIX; a backup that does not record
    it: the service's variables); UsageError when those cannot be read."""
    if options.database is None or backup.database is None:
        return
    prefix = backup_prefix(backup.database)
    if prefix is None:
        prefix, source = options.variables.table_prefix()
        print(f"{PROG}: the backup does not record DB_TABLE_PREFIX: {prefix or '(none)'} ({source})", file=sys.stderr)
    options.database = replace(options.database, table_prefix=prefix)


def make_plan(backup: Backup, options: Options, clients: Clients, plan: Plan) -> list[str]:
    """Preflight, then fill ``plan`` (reads only); the problems that stop the run."""
    try:
        problems = preflight(backup, options, clients, plan)
        if problems:
            return problems
        if clients.main is not None and backup.redis is not None:
            sources = ReverseSources(options.naive_tz)
            if clients.reverse is not None and options.database is not None:
                sources.scrubbed = scrubbed_since(options.database, backup.backup_ms)
            plan.redis = plan_redis(backup, clients.main, clients.reverse, in_place=plan.in_place,
                                    batch=options.batch, sources=sources)
        if options.database is not None and backup.database is not None:
            plan.database_now = database_now(backup, options.database)
    except (redis.RedisError, pymysql.MySQLError, sqlite3.Error, OSError) as exc:
        return [f"while planning: {exc}"]
    return []


def _stop_before_changes(options: Options, plan: Plan) -> int | None:
    """The exit code of a dry run or a declined confirmation; None: go ahead."""
    will_fail = bool(plan.redis and plan.redis.failed)
    if options.dry_run:
        print("result: " + ("FAILED" if will_fail else "OK") + " (dry run: nothing changed)")
        return EXIT_FAILURE if will_fail else EXIT_OK
    if options.yes:
        return None
    answer = confirm()
    if answer is None:
        print("error: stdin is not a terminal: pass --yes to roll back without a question", file=sys.stderr)
        return EXIT_USAGE
    if not answer:
        print("result: ABORTED (nothing was changed)")
        return EXIT_FAILURE
    return None
