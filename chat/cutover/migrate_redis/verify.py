"""The verification pass: SCAN the source again and compare every target key with its conversion."""

from __future__ import annotations

from chat.cutover.common import Progress
from chat.cutover.migrate_redis.run import Run
from chat.cutover.migrate_redis.wire import collect_read, scan_batches, send_read
from chat.cutover.records import convert, loads, same_record
from states.legacy import ConversionError

# Source problems the migration pass (which always runs first) has counted and reported already.
ALREADY_REPORTED = frozenset({"verify_source_not_string", "verify_unconvertible"})


def verify_pass(run: Run, progress: Progress) -> None:
    """SCAN the source again and compare every target key with its source's conversion."""
    stats = run.stats
    for keys, fraction in scan_batches(run.scan_wire, run.pattern, run.batch):
        send_read(run.read_wire, keys)
        if not run.in_place:
            send_read(run.write_wire, keys)
        source_reads = collect_read(run.read_wire)
        target_reads = source_reads if run.in_place else collect_read(run.write_wire)
        for key, source_read, target_read in zip(keys, source_reads, target_reads, strict=True):
            verify_key(run, key, source_read, target_read)
        progress.update(stats.verified + stats.verify_skipped, fraction)
    progress.update(stats.verified + stats.verify_skipped, 1.0, force=True)


def verify_key(
    run: Run, key: bytes, source: tuple[bytes | None, int], target: tuple[bytes | None, int]
) -> None:
    """Check one key; a difference is counted and reported."""
    stats = run.stats
    value, pttl = source
    target_value, target_pttl = target
    if pttl == -2:
        stats.verify_skipped += 1  # gone from the source: nothing to compare with
        return
    stats.verified += 1
    problem = _difference(run, value, pttl, target_value, target_pttl)
    if problem is not None and problem[0] in ALREADY_REPORTED:
        stats.verify_known += 1  # the migration pass counted and reported it: not a second problem
    elif problem is not None:
        stats.verify_mismatch += 1
        run.report.add(key, problem[0], "verify: " + problem[1])


def _difference(
    run: Run, value: bytes | None, pttl: int, target: bytes | None, target_pttl: int
) -> tuple[str, str] | None:
    """``(code, reason)`` of what is wrong with the target key, or None."""
    if value is None:
        return "verify_source_not_string", "the source key is not a string"
    try:
        expected = convert(value, run.now, run.naive_tz)
    except ConversionError as exc:
        return "verify_unconvertible", f"the source cannot be converted ({exc.reason})"
    if run.in_place:
        return None if expected.copied else ("verify_not_converted", "still not in the new format")
    if target_pttl == -2:
        return "verify_missing", "missing in the target"
    if target is None:
        return "verify_target_not_string", "the target key is not a string"
    try:
        differing = same_record(expected, loads(target))
    except ConversionError:
        differing = ["<not JSON>"]
    if differing:
        return "verify_differs", "the target differs in " + ", ".join(differing)
    if (pttl >= 0) != (target_pttl >= 0):
        which = "the source has a TTL, the target none" if pttl >= 0 else "the target has a TTL, the source none"
        return "verify_ttl", which
    return None

