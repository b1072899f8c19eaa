"""The command line of the Redis migration: options, connections, the closing summary."""

from __future__ import annotations

import argparse
import sys
import time
from datetime import UTC, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import redis

from chat.cutover.common import (
    EXIT_FAILURE,
    EXIT_OK,
    EXIT_USAGE,
    Progress,
    UsageError,
    format_duration,
    mask_url,
    positive_int,
)
from chat.cutover.migrate_redis.passes import migrate_pass
from chat.cutover.migrate_redis.run import Report, Run
from chat.cutover.migrate_redis.verify import verify_pass
from chat.cutover.migrate_redis.wire import Wire
from states import redis_keys
from states.clock import iso_from_ms, now_ms

PROG = "migrate_redis.py"
DEFAULT_SOURCE = "redis://localhost:6379/0"
DEFAULT_TARGET = "redis://localhost:6379/1"
DEFAULT_PATTERN = f"{redis_keys.SESSION_PREFIX}*"
DEFAULT_BATCH = 1000
DEFAULT_REPORT = "migrate_redis_report.jsonl"


def build_parser(prog: str = PROG) -> argparse.ArgumentParser:
    """The command line (see --help)."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description=(
            "Convert the old Node.js session records (session:{id} = {userId, agent, context, "
            "metadata?, createdAt?, updatedAt?}) into the chat-api Redis record, keeping each "
            "key's TTL and timestamps. The source is left intact unless source and target are "
            "the same database (in-place conversion). Safe to run again, after an interruption "
            "too: target keys already in the new format are left alone."
        ),
        epilog=(
            "Exit codes: 0 every key migrated (and verified); 1 a key could not be converted or "
            "written, a verification difference, a Redis error or an interruption (run again); "
            "2 bad command line. Passwords in URLs are never echoed."
        ),
    )
    parser.add_argument(
        "--source",
        default=DEFAULT_SOURCE,
        metavar="URL",
        help=f"Redis holding the old records (default {DEFAULT_SOURCE})",
    )
    parser.add_argument(
        "--target",
        default=DEFAULT_TARGET,
        metavar="URL",
        help=f"Redis receiving the new records (default {DEFAULT_TARGET}); "
        "the same database as --source converts in place",
    )
    parser.add_argument(
        "--pattern",
        default=DEFAULT_PATTERN,
        metavar="GLOB",
        help=f"SCAN MATCH pattern of the keys to migrate (default {DEFAULT_PATTERN!r})",
    )
    _add_run_options(parser)
    return parser


def _add_run_options(parser: argparse.ArgumentParser) -> None:
    """--batch, --dry-run, --verify, --force, --report, --quiet."""
    parser.add_argument(
        "--batch",
        type=positive_int,
        default=DEFAULT_BATCH,
        metavar="N",
        help=f"keys per SCAN call and per pipeline (default {DEFAULT_BATCH})",
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="read, convert and count, but write nothing to Redis (the report "
        "file is still written); with --verify, checks the target as it is",
    )
    parser.add_argument(
        "--verify",
        action="store_true",
        help="afterwards re-read every target key and compare it with the "
        "conversion of its source (value, and whether both have a TTL); "
        "any difference fails the run",
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="rewrite target keys even when they are already in the new format",
    )
    parser.add_argument(
        "--report",
        default=DEFAULT_REPORT,
        metavar="FILE",
        help="JSON-lines file listing every key skipped or not converted, one "
        '{"key", "reason", "code", "level"} per line; rewritten on every '
        f"run, dry runs included (default ./{DEFAULT_REPORT})",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress output")
    _add_real_data_options(parser)


def _add_real_data_options(parser: argparse.ArgumentParser) -> None:
    """--naive-tz, --max-failures."""
    parser.add_argument(
        "--naive-tz",
        type=time_zone,
        default=UTC,
        metavar="ZONE",
        help="time zone of timestamps written without an offset ('2025-04-30 18:00:00'): UTC "
        "(default) or an IANA name such as Asia/Shanghai; they are counted in the summary, and a "
        "record that would come out updated before it was created is refused",
    )
    parser.add_argument(
        "--max-failures",
        type=non_negative_int,
        default=0,
        metavar="N",
        help="accept up to N records that cannot be converted (junk keys, say): still listed in "
        "the report and the summary, but the run exits 0 (default 0: any such record fails it)",
    )


def time_zone(text: str) -> tzinfo:
    """``--naive-tz``: UTC or an IANA zone name."""
    if text.upper() in ("UTC", "Z"):
        return UTC
    try:
        return ZoneInfo(text)
    except (ZoneInfoNotFoundError, ValueError):
        raise argparse.ArgumentTypeError(
            f"not a time zone: {text!r} (UTC or an IANA name like Asia/Shanghai)"
        ) from None


def non_negative_int(text: str) -> int:
    """A count that may be 0."""
    if not (text.isascii() and text.isdigit()):
        raise argparse.ArgumentTypeError(f"not a count: {text!r}")
    return int(text)


def _client(url: str, option: str) -> redis.Redis:
    try:
        # RESP2: same replies for every command used here, and redis-py's pure-Python parser
        # reads it a fifth faster than RESP3 (it matters without hiredis).
        return redis.Redis.from_url(url, protocol=2)
    except ValueError as exc:
        raise UsageError(f"{option}: not a Redis URL ({exc})") from None


def _ping(client: redis.Redis, url: str, role: str) -> bool:
    try:
        client.ping()
        return True
    except redis.RedisError as exc:
        print(f"error: {role} {mask_url(url)} unreachable: {exc}", file=sys.stderr)
        return False


def same_database(source: redis.Redis, target: redis.Redis) -> bool:
    """Same server (by run_id, however the host is spelt) and same logical database."""
    source_db = source.connection_pool.connection_kwargs.get("db", 0)
    target_db = target.connection_pool.connection_kwargs.get("db", 0)
    if int(source_db) != int(target_db):
        return False
    return bool(source.info("server")["run_id"] == target.info("server")["run_id"])


def print_summary(run: Run, *, verify: bool, elapsed_s: float, interrupted: str | None) -> None:
    """The closing table, on stdout."""
    stats = run.stats
    would = "would be " if run.dry_run else ""
    rows = [
        ("scanned", stats.scanned, "keys matching the pattern"),
        ("converted", stats.converted, f"{would}written in the new format"),
        ("copied", stats.copied, f"new format in the source already, {would}copied as is"),
        ("unchanged", stats.unchanged, "new format in the target already (--force rewrites)"),
        ("failed", stats.failed, "could not be converted: see the report"),
        ("not a string", stats.not_string, "skipped: see the report"),
        ("target conflict", stats.target_conflict, "target key of another type: see the report"),
        ("vanished", stats.vanished, "expired or deleted during the run"),
        ("time defaulted", stats.defaulted_time, "no createdAt/updatedAt: migration time used"),
        ("naive time", stats.naive_time, f"a time without an offset, read in {run.naive_tz}"),
        ("fields dropped", stats.dropped_fields, "records with unknown old fields: see the report"),
        ("with TTL", stats.with_ttl, f"{would}written with their remaining TTL"),
    ]
    if verify:
        rows += [
            ("verified", stats.verified, "target keys compared with their source"),
            ("mismatches", stats.verify_mismatch, "differences: see the report"),
            ("known", stats.verify_known, "unconvertible sources, counted above only"),
        ]
    rate = stats.scanned / elapsed_s if elapsed_s > 0 else 0.0
    print("summary:")
    for label, count, note in rows:
        print(f"  {label:<16}{count:>10,}  {note}")
    print(f"  {'elapsed':<16}{format_duration(elapsed_s):>10}  {rate:,.0f} keys/s")
    print(f"  {'report':<16}{run.report.lines:>10,}  lines in {run.report.path}")
    if interrupted:
        print(f"result: INCOMPLETE ({interrupted}); run the same command again to finish")
    elif stats.problems(run.max_failures):
        print(f"result: FAILED ({stats.problems(run.max_failures):,} problem(s), see {run.report.path})")
    else:
        accepted = (
            f" ({stats.unconvertible:,} unconvertible record(s) accepted by --max-failures {run.max_failures}, "
            f"listed in {run.report.path})"
            if stats.unconvertible
            else ""
        )
        print("result: OK" + accepted + (" (dry run: nothing written)" if run.dry_run else ""))


def main(argv: list[str] | None = None, *, prog: str = PROG) -> int:
    """Run the migration; see ``--help``."""
    args = build_parser(prog).parse_args(argv)
    try:
        source = _client(args.source, "--source")
        target = _client(args.target, "--target")
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    started = time.monotonic()
    run: Run | None = None
    interrupted: str | None = None
    wires: list[Wire] = []
    try:
        if not (_ping(source, args.source, "source") and _ping(target, args.target, "target")):
            return EXIT_FAILURE
        run = _start(args, source, target, wires)
        if run is None:
            return EXIT_FAILURE
        _passes(run, args)
    except KeyboardInterrupt:
        interrupted = "interrupted"
    except redis.RedisError as exc:
        interrupted = f"Redis error: {exc}"
        print(f"error: {interrupted}", file=sys.stderr)
    finally:
        for wire in wires:
            wire.close()
        if run is not None:
            run.report.close()
        source.close()
        target.close()
    if run is None:
        return EXIT_FAILURE
    print_summary(run, verify=args.verify, elapsed_s=time.monotonic() - started, interrupted=interrupted)
    return EXIT_FAILURE if interrupted or run.stats.problems(run.max_failures) else EXIT_OK


def _start(args: argparse.Namespace, source: redis.Redis, target: redis.Redis, wires: list[Wire]) -> Run | None:
    """Open the report and the wires (appended to ``wires`` for closing); None: no report."""
    in_place = same_database(source, target)
    try:
        report = Report(args.report)
    except OSError as exc:
        print(f"error: cannot write the report {args.report}: {exc}", file=sys.stderr)
        return None
    for client in (source, source, source if in_place else target):
        wires.append(Wire(client))
    where = "in place" if in_place else f"-> {mask_url(args.target)}"
    flags = "".join(f", {f}" for f in ("dry run", "force") if getattr(args, f.replace(" ", "_")))
    flags += f", naive times in {args.naive_tz}" + (f", max failures {args.max_failures}" if args.max_failures else "")
    print(
        f"migrate_redis: {mask_url(args.source)} {where}, pattern {args.pattern!r}, batch {args.batch}{flags}",
        file=sys.stderr,
    )
    return Run(
        source=source,
        scan_wire=wires[0],
        read_wire=wires[1],
        write_wire=wires[2],
        in_place=in_place,
        pattern=args.pattern,
        batch=args.batch,
        dry_run=args.dry_run,
        force=args.force,
        now=iso_from_ms(now_ms()),
        report=report,
        naive_tz=args.naive_tz,
        max_failures=args.max_failures,
    )


def _passes(run: Run, args: argparse.Namespace) -> None:
    """The migration, then (with --verify) the verification, each with its progress display."""
    progress = Progress("migrate", enabled=not args.quiet)
    try:
        migrate_pass(run, progress)
    finally:
        progress.close()
    if args.verify:
        progress = Progress("verify", enabled=not args.quiet)
        try:
            verify_pass(run, progress)
        finally:
            progress.close()
