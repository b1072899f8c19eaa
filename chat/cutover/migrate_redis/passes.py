"""The migration pass: SCAN the source, convert each batch, write it, count and report the rest."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TypeVar

import redis

from chat.cutover.common import Progress
from chat.cutover.migrate_redis.convert import migrate_value
from chat.cutover.migrate_redis.run import COPIED, DEFAULTED_TIME, NAIVE_TIME, Item, Run, Stats
from chat.cutover.migrate_redis.wire import collect_read, key_types, pack, scan_batches, send_read, set_commands
from chat.cutover.records import loads
from states.legacy import ConversionError, is_new_format

T = TypeVar("T")


def migrate_pass(run: Run, progress: Progress) -> None:
    """SCAN the source and convert every batch, keeping Redis busy while Python converts.

    While batch N is converted, the reads of batch N+1 and the writes of batch N-1 are
    already with the server; their replies are collected only when they are needed.
    """
    in_flight: list[Item] | None = None
    batches = _with_next(scan_batches(run.scan_wire, run.pattern, run.batch))
    for index, ((keys, fraction), upcoming) in enumerate(batches):
        if index == 0:
            send_read(run.read_wire, keys)
        reads = collect_read(run.read_wire)
        if upcoming is not None:
            send_read(run.read_wire, upcoming[0])
        todo = convert_batch(run, keys, reads)
        if in_flight is not None:
            finish_write(run, in_flight)
            in_flight = None
        if todo and run.dry_run:
            count_dry_run(run, todo)
        elif todo:
            start_write(run, todo)
            in_flight = todo
        progress.update(run.stats.scanned, fraction)
    if in_flight is not None:
        finish_write(run, in_flight)
    progress.update(run.stats.scanned, 1.0, force=True)


def _with_next(items: Iterator[T]) -> Iterator[tuple[T, T | None]]:
    """Each item with the one after it (None for the last)."""
    current = next(items, None)
    while current is not None:
        upcoming = next(items, None)
        yield current, upcoming
        current = upcoming


def convert_batch(run: Run, keys: list[bytes], reads: list[tuple[bytes | None, int]]) -> list[Item]:
    """Convert one batch; report what cannot be; return what is to be written."""
    stats, report, now, in_place, naive_tz = run.stats, run.report, run.now, run.in_place, run.naive_tz
    stats.scanned += len(keys)
    refused: list[bytes] = []
    todo: list[Item] = []
    for key, (value, pttl) in zip(keys, reads, strict=True):
        if pttl == -2:
            stats.vanished += 1
            report.add(key, "vanished", "expired or deleted before it was read", "warning")
            continue
        if value is None:
            refused.append(key)  # not a string, most likely: TYPE will tell
            continue
        try:
            new_value, flags, dropped = migrate_value(value, now, naive_tz)
        except ConversionError as exc:
            stats.failed += 1
            report.add(key, exc.code, exc.reason)
            continue
        if dropped:
            stats.dropped_fields += 1
            report.add(
                key,
                "dropped_fields",
                "old fields with no place in the new record left out: " + ", ".join(dropped),
                "warning",
            )
        if in_place and flags & COPIED:
            stats.unchanged += 1
        else:
            todo.append((key, new_value, pttl, flags))

    if refused:
        for key, kind in zip(refused, key_types(run.source, refused), strict=True):
            if kind == "none":
                stats.vanished += 1
                report.add(key, "vanished", "expired or deleted before it was read", "warning")
            elif kind == "string":
                stats.failed += 1
                report.add(key, "changed_during_read", "written while being read: run again")
            else:
                stats.not_string += 1
                report.add(key, "not_string", f"a {kind}, not a string: skipped")
    return todo


def start_write(run: Run, todo: list[Item]) -> None:
    """Put a batch's writes on the wire; ``finish_write`` reads the outcome."""
    if run.in_place:
        # XX: a key that expired meanwhile stays gone; KEEPTTL: the TTL is not even touched.
        payload = b"".join([pack(b"SET", key, value, b"XX", b"KEEPTTL") for key, value, _, _ in todo])
    else:
        # NX leaves whatever the target already holds; finish_write looks at those few keys.
        payload = set_commands(todo, nx=not run.force)
    run.write_wire.send(payload, len(todo))


def finish_write(run: Run, todo: list[Item]) -> None:
    """Count a batch's writes; decide about target keys that NX found taken."""
    replies = run.write_wire.collect()
    if replies.count(b"OK") == len(todo):  # the usual case: every write went through
        _count_written(run.stats, todo)
        return
    written: list[Item] = []
    taken: list[Item] = []
    for item, reply in zip(todo, replies, strict=True):
        if isinstance(reply, redis.ResponseError):
            raise reply
        if reply is not None:
            written.append(item)
        elif run.in_place:
            run.stats.vanished += 1
            run.report.add(
                item[0], "vanished", "expired or deleted before it was written", "warning"
            )
        else:
            taken.append(item)
    _count_written(run.stats, written)
    if taken:
        _resolve_taken(run, taken)


def _resolve_taken(run: Run, taken: list[Item]) -> None:
    """Target keys that already existed: keep new-format records, replace anything else."""
    overwrite = _replaceable(run, taken)
    if overwrite:
        payload = set_commands(overwrite)
        for reply in run.write_wire.call(payload, len(overwrite)):
            if isinstance(reply, redis.ResponseError):
                raise reply
        _count_written(run.stats, overwrite)


def count_dry_run(run: Run, todo: list[Item]) -> None:
    """Count what a real run would write, looking at the target as it is."""
    _count_written(run.stats, todo if run.in_place or run.force else _replaceable(run, todo))


def _replaceable(run: Run, items: list[Item]) -> list[Item]:
    """The items whose target key may be (over)written; counts and reports the others."""
    current = run.write_wire.call(b"".join(pack(b"GET", key) for key, _, _, _ in items), len(items))
    replaceable: list[Item] = []
    for item, value in zip(items, current, strict=True):
        if isinstance(value, redis.ResponseError):
            run.stats.target_conflict += 1
            run.report.add(
                item[0], "target_not_string", "the target key exists and is not a string"
            )
            continue
        if value is not None:
            try:
                if is_new_format(loads(value)):
                    run.stats.unchanged += 1
                    continue
            except ConversionError:
                pass  # not JSON, so not a record of ours: it is replaced
        replaceable.append(item)
    return replaceable


def _count_written(stats: Stats, items: list[Item]) -> None:
    copied = defaulted = naive = with_ttl = 0
    for _key, _value, pttl, flags in items:
        if flags & COPIED:
            copied += 1
        elif flags & DEFAULTED_TIME:
            defaulted += 1
        if flags & NAIVE_TIME:
            naive += 1
        if pttl >= 0:
            with_ttl += 1
    stats.copied += copied
    stats.converted += len(items) - copied
    stats.defaulted_time += defaulted
    stats.naive_time += naive
    stats.with_ttl += with_ttl
