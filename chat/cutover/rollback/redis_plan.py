"""The Redis part of a rollback, planned: what is restored, removed, or written back in the old format.

With --reverse-migrate, the sessions started or changed since the backup are turned back into
the old Node.js record (states/legacy.py) so the old services can carry them on. Not written back:
a record the service only rebuilt from its SQL row on a read (no old original, times not after the
backup), and a closed conversation (the old services have no closed session: one that ended is
gone from their database, so its old copy there is deleted). The old copies of conversations
erased or purged since the backup are deleted too (chat/cutover/rollback/forgotten.py).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, tzinfo
from typing import Any, TypeVar

import redis

from chat.cutover.backup.redis_part import scan_keys, timed_read
from chat.cutover.backup_format import SESSION_PREFIX, redis_time_ms
from chat.cutover.backup_rdb import decode_string_dump
from chat.cutover.records import encode_old, loads
from chat.cutover.rollback.checks import Backup
from states.legacy import ConversionError, Record, ReverseError, is_new_format, is_old_format, newest_ms, to_old
from states.machine import State

T = TypeVar("T")


def chunks(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    """``items`` in slices of ``size``."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


@dataclass
class Reverse:
    """One session to write back in the old format."""

    key: bytes
    value: bytes
    expire_at_ms: int | None
    exact: bool  # byte for byte the original old record


CLOSED = "closed"  # the reason of an ended session: closed on chat-api since the backup


@dataclass
class ReverseSources:
    """What the reverse migration needs besides Redis: the zone the migration read naive times in,
    and the conversations scrubbed since the backup (None: the database was not read)."""

    naive_tz: tzinfo = UTC
    scrubbed: dict[str, str] | None = None  # conversation id -> "erased" / "purged"


@dataclass
class RedisPlan:
    """What the Redis part of the rollback will do."""

    now_ms: int
    restore: int = 0
    expired: int = 0
    remove: list[bytes] = field(default_factory=list)
    reverse: list[Reverse] = field(default_factory=list)
    kept: list[bytes] = field(default_factory=list)
    failed: list[tuple[bytes, str]] = field(default_factory=list)
    skip: set[bytes] = field(default_factory=set)  # neither restored nor removed
    end: list[tuple[bytes, str]] = field(default_factory=list)  # old copies to delete, and why
    left_out: int = 0  # live records not written back: closed without an old copy, or only rebuilt from SQL


def server_ms(client: redis.Redis) -> int:
    """The Redis server's clock in epoch ms (the clock ABSTTL and PEXPIREAT use)."""
    return redis_time_ms(client.time())


def plan_redis(
    backup: Backup,
    client: redis.Redis,
    reverse_client: redis.Redis | None,
    *,
    in_place: bool,
    batch: int,
    sources: ReverseSources | None = None,
) -> RedisPlan:
    """Look at the live keys (reads only) and decide what happens to each."""
    assert backup.redis is not None
    live: set[bytes] = set()
    for keys, _fraction in scan_keys(client, backup.redis["patterns"], batch):
        live.update(keys)
    plan = RedisPlan(now_ms=server_ms(client))
    if reverse_client is not None:
        sources = sources or ReverseSources()
        _plan_reverse(backup, client, reverse_client, plan, live, in_place=in_place, batch=batch, sources=sources)
    plan.skip.update(key for key, _ in plan.failed)
    for key, expire_at_ms in backup.expiries.items():
        if key in plan.skip:
            continue
        if expire_at_ms is not None and expire_at_ms <= plan.now_ms:
            plan.expired += 1
        else:
            plan.restore += 1
    plan.remove = sorted(live - backup.expiries.keys() - plan.skip)
    if not in_place:  # the restored database does not keep them either
        ended = {key for key, reason in plan.end if reason != CLOSED}
        plan.remove = sorted(set(plan.remove) | (ended & live))
    return plan


def _plan_reverse(
    backup: Backup,
    client: redis.Redis,
    target: redis.Redis,
    plan: RedisPlan,
    live: set[bytes],
    *,
    in_place: bool,
    batch: int,
    sources: ReverseSources,
) -> None:
    """Find the sessions started or changed since the backup and convert them back; find the old
    copies of conversations that ended, were erased or purged since."""
    candidates = _changed_sessions(backup, client, plan, live, in_place=in_place, batch=batch)
    scrubbed = {SESSION_PREFIX + cid.encode(): why for cid, why in (sources.scrubbed or {}).items()}
    originals = _originals(backup, [*candidates, *scrubbed])
    held: set[bytes] = set()  # keys to delete that the reverse target holds, whatever their type
    if not in_place and (candidates or scrubbed):
        held = _target_originals(target, [*candidates, *(k for k in scrubbed if k not in candidates)], originals,
                                 plan, batch, deleting=set(scrubbed))
    conflicts = {key for key, _ in plan.failed}
    for key, why in scrubbed.items():
        if key in originals or key in live or key in backup.expiries or key in held:
            plan.end.append((key, why))
    for key, (record, expire_at_ms) in candidates.items():
        if key in conflicts or key in scrubbed:
            continue
        original = originals.get(key)
        if record.get("state") == State.CLOSED.value:
            if original is not None:
                plan.end.append((key, CLOSED))
            else:
                plan.left_out += 1
            continue  # never a live session of the old services; without an old copy: nothing to end
        if original is None and key not in backup.expiries and not _newer(record, backup.backup_ms):
            plan.left_out += 1  # rebuilt from its SQL row on a read: neither started nor changed since
            continue
        try:
            value = encode_old(to_old(record, original[0] if original else None, sources.naive_tz), original)
        except ReverseError as exc:
            plan.failed.append((key, f"cannot convert back ({exc.code}): {exc.reason}"))
            continue
        exact = original is not None and value == original[1]
        plan.reverse.append(Reverse(key, value, expire_at_ms, exact))
    plan.skip.update(key for key, why in plan.end if why != CLOSED or in_place)
    if in_place:
        plan.skip.update(r.key for r in plan.reverse)
        plan.skip.update(plan.kept)


def _newer(record: Record, backup_ms: int) -> bool:
    """The record's own later time is after the backup (or unreadable: the conversion says why)."""
    newest = newest_ms(record)
    return newest is None or newest > backup_ms


def _changed_sessions(
    backup: Backup, client: redis.Redis, plan: RedisPlan, live: set[bytes], *, in_place: bool, batch: int
) -> dict[bytes, tuple[Record, int | None]]:
    """New-format sessions newer than the backup, with their absolute expiry; old ones kept in place."""
    candidates: dict[bytes, tuple[Record, int | None]] = {}
    sessions = sorted(key for key in live if key.startswith(SESSION_PREFIX))
    for chunk in chunks(sessions, batch):
        now_ms, reads = timed_read(client, chunk, "GET")
        for key, (value, pttl) in zip(chunk, reads, strict=True):
            obj = _record(value) if pttl != -2 else None  # gone: restored or removed like any other key
            if obj is None:
                continue
            newest = newest_ms(obj)
            if key in backup.expiries and (newest is None or newest <= backup.backup_ms):
                continue  # unchanged since the backup: the backup has it
            if is_new_format(obj):
                candidates[key] = (obj, now_ms + pttl if pttl >= 0 else None)
            elif in_place and is_old_format(obj):
                plan.kept.append(key)  # an old record newer than the backup (a rerun, say)
    return candidates


def _record(value: Any) -> Record | None:
    """A stored value as a JSON object; None for another type, not JSON, or not an object."""
    if not isinstance(value, bytes):
        return None
    try:
        obj = loads(value)
    except ConversionError:
        return None
    return obj if isinstance(obj, dict) else None


def _originals(backup: Backup, keys: Iterable[bytes]) -> dict[bytes, tuple[Record, bytes]]:
    """The backed-up old-format records of these keys (a backup taken before the migration)."""
    wanted = {key for key in keys if key in backup.expiries}
    found: dict[bytes, tuple[Record, bytes]] = {}
    if not wanted:
        return found
    for key, payload, _expiry in backup.entries():
        if key not in wanted:
            continue
        raw = decode_string_dump(payload)
        obj = _record(raw)
        if raw is not None and obj is not None and is_old_format(obj):
            found[key] = (obj, raw)
    return found


def _target_originals(
    target: redis.Redis,
    keys: list[bytes],
    originals: dict[bytes, tuple[Record, bytes]],
    plan: RedisPlan,
    batch: int,
    *,
    deleting: set[bytes],
) -> set[bytes]:
    """Old records the reverse target still holds (the migration's source, left intact); a key holding
    another type is a conflict (not overwritten), except for the keys to delete (an erased customer's key
    goes whatever it holds). The keys to delete that the target holds."""
    held: set[bytes] = set()
    for chunk in chunks(keys, batch):
        pipe = target.pipeline(transaction=False)
        for key in chunk:
            pipe.get(key)
        for key, value in zip(chunk, pipe.execute(raise_on_error=False), strict=True):
            if key in deleting and value is not None:
                held.add(key)
            if isinstance(value, redis.ResponseError):
                if key not in deleting:
                    plan.failed.append((key, "the reverse target holds another type there: not overwritten"))
            elif key not in originals:
                obj = _record(value)
                if obj is not None and is_old_format(obj):
                    originals[key] = (obj, value)
    return held
