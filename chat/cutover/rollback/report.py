"""What the rollback will do and what it did, on stdout: the plan, the confirmation, the summary."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chat.cutover.backup_format import sha256_file, show_database
from chat.cutover.common import format_duration, mask_url
from chat.cutover.rollback.checks import Backup
from chat.cutover.rollback.database import TableNow
from chat.cutover.rollback.options import Options
from chat.cutover.rollback.redis_apply import RedisDone
from chat.cutover.rollback.redis_plan import RedisPlan
from chat.cutover.rollback.saved import Saved, save_note


@dataclass
class Plan:
    """Everything the rollback will do, worked out before anything changes."""

    redis: RedisPlan | None = None
    in_place: bool = True
    database_now: TableNow | None = None
    account: list[str] = field(default_factory=list)  # may the database account restore (grants.py)
    configs: list[tuple[dict[str, Any], Path]] = field(default_factory=list)


def key_name(key: bytes) -> str:
    return key.decode("utf-8", "backslashreplace")


RESTORE_SAVED = "chat-api rollback --restore-saved"  # what the operator runs (in the cut-over folder too)


REVERSE_LABELS = len("not written back")  # the widest label of the reverse lines (reverse_report.py)


def plan_row(label: str, count: int, note: str, indent: int = 2, width: int = 28) -> None:
    """One line of the plan or the summary: label (padded to ``width``, and never touching the count),
    right-aligned count, note."""
    print(f"{' ' * indent}{label:<{width}} {count:>10,}  {note}")


def _rows(rows: list[tuple[str, int, str]], indent: int = 2, at_least: int = 0) -> None:
    """Lines of one block, their counts in one column however long a label (a table name) is."""
    width = max((len(label) for label, _, _ in rows), default=at_least)
    width = max(width, at_least)
    for label, count, note in rows:
        plan_row(label, count, note, indent, width)


def print_plan(backup: Backup, options: Options, plan: Plan) -> None:
    """What will be (or, with --dry-run, would be) done."""
    manifest = backup.manifest
    print(f"rollback plan: backup {backup.root} of {manifest.get('created_at')}", end="")
    print(f" (backup_ms {backup.backup_ms})")
    for warning in backup.warnings:
        print(f"  warning: {warning}")
    if plan.redis is not None and backup.redis is not None:
        _print_redis_plan(backup.redis, options, plan.redis, in_place=plan.in_place)
    elif options.redis_url is not None:
        print("  redis: the backup has no Redis part: left alone")
    if plan.database_now is not None and backup.database is not None:
        _print_database_plan(backup.database, options, plan.database_now, plan.account)
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


def _print_redis_plan(part: dict[str, Any], options: Options, redis_plan: RedisPlan, *, in_place: bool) -> None:
    print(f"  redis {mask_url(options.redis_url or '')} (backed up from {part.get('url')})")
    patterns = ", ".join(part["patterns"])
    rows = [
        ("restore", redis_plan.restore, "keys, values and TTLs as backed up"),
        ("expired", redis_plan.expired, "backed-up keys whose TTL ran out since: deleted"),
        ("remove", len(redis_plan.remove), f"keys under {patterns} created since"),
    ]
    if options.reverse_url is not None:
        where = "in place" if in_place else f"into {mask_url(options.reverse_url)}"
        note = f"sessions created or changed since, old format, {where}"
        rows.append(("reverse-migrate", len(redis_plan.reverse), note))
        if in_place:
            rows.append(("keep", len(redis_plan.kept), "old-format sessions newer than the backup"))
    _rows(rows, 4, REVERSE_LABELS if options.reverse_url is not None else 0)  # the reverse lines follow
    for key, reason in redis_plan.failed:
        print(f"    failed: {key_name(key)}: {reason} (left untouched)")


def _print_database_plan(
    part: dict[str, Any], options: Options, database_now: TableNow, account: list[str]
) -> None:
    assert options.database is not None
    shown = show_database(options.database_url or "", options.database)
    print(f"  database {shown} ({part['method']};", end="")
    print(f" backed up from {part.get('url')})")
    for line in account:
        print(f"    {line}")
    print("    rows to save first: written to a file in the backup folder before the restore "
          f"({RESTORE_SAVED} FILE brings them back)")
    width = max((len(table) for table in part["tables"]), default=0)
    for table, info in part["tables"].items():
        rows_now, to_save = database_now.get(table, (None, None))
        now_text = "absent" if rows_now is None else f"{rows_now:,} now"
        note = save_note(table, options.database.table_prefix)
        if rows_now is None:
            save_text = ""
        elif note is None or to_save is None:
            save_text = ", not saved (schema bookkeeping)" if note is None else ", not saved (no time column)"
        else:
            save_text = f", {to_save:,} to save first ({note})"
        after = "emptied" if info.get("absent") else f"-> {info['rows']:,}"
        print(f"    table {table:<{width}} {now_text:>14}{save_text} {after}")


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
    saved: Saved | None = None
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
    else:
        rows = []
    if outcome.saved is not None:
        saved = {table: count for table, count in outcome.saved.counts.items() if count} or {"rows": 0}
        rows += [(f"saved {table}", count, "written since the backup: see the file below")
                 for table, count in saved.items()]
    saved_end = len(rows)  # the file's line goes after the saved rows
    if outcome.rows is not None:
        rows += [(f"table {table}", count, "rows") for table, count in outcome.rows.items()]
    rows.append(("config files", outcome.configs, "restored"))
    width = max(len(label) for label, _, _ in rows)
    for number, (label, count, note) in enumerate(rows, 1):
        plan_row(label, count, note, 2, width)
        if number == saved_end and outcome.saved is not None:
            print(f"  saved to {outcome.saved.path}")
            print(f"  bring them back later with: {RESTORE_SAVED} {outcome.saved.path}")
    print(f"  {'elapsed':<{width}} {format_duration(elapsed_s):>10}")
    if outcome.problems:
        print(f"result: FAILED ({len(outcome.problems)} problem(s))")
        for problem in outcome.problems:
            print(f"  - {problem}")
    else:
        print("result: OK")


