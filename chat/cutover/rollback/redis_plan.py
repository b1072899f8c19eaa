"""The Redis part of a rollback, planned: what is restored, removed, or written back in the old format.

With --reverse-migrate, the sessions created or changed since the backup are turned back into
the old Node.js record (states/legacy.py) so the old services can carry them on.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import redis

from chat.cutover.backup.redis_part import scan_keys, timed_read
from chat.cutover.backup_format import SESSION_PREFIX, redis_time_ms
from chat.cutover.backup_rdb import decode_string_dump
from chat.cutover.records import encode_old, loads
from chat.cutover.rollback.checks import Backup
from states.legacy import ConversionError, Record, ReverseError, is_new_format, is_old_format, newest_ms, to_old

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
) -> RedisPlan:
    """Look at the live keys (reads only) and decide what happens to each."""
    assert backup.redis is not None
    live: set[bytes] = set()
    for keys, _fraction in scan_keys(client, backup.redis["patterns"], batch):
        live.update(keys)
    plan = RedisPlan(now_ms=server_ms(client))
    if reverse_client is not None:
        _plan_reverse(backup, client, reverse_client, plan, live, in_place=in_place, batch=batch)
    plan.skip.update(key for key, _ in plan.failed)
    for key, expire_at_ms in backup.expiries.items():
        if key in plan.skip:
            continue
        if expire_at_ms is not None and expire_at_ms <= plan.now_ms:
            plan.expired += 1
        else:
            plan.restore += 1
    plan.remove = sorted(live - backup.expiries.keys() - plan.skip)
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
) -> None:
    """Find the sessions created or changed since the backup and convert them back."""
    candidates = _changed_sessions(backup, client, plan, live, in_place=in_place, batch=batch)
    originals = _originals(backup, candidates.keys())
    if not in_place and candidates:
        _target_originals(target, list(candidates), originals, plan, batch)
    conflicts = {key for key, _ in plan.failed}
    for key, (record, expire_at_ms) in candidates.items():
        if key in conflicts:
            continue
        original = originals.get(key)
        try:
            value = encode_old(to_old(record, original[0] if original else None), original)
        except ReverseError as exc:
            plan.failed.append((key, f"cannot convert back ({exc.code}): {exc.reason}"))
            continue
        exact = original is not None and value == original[1]
        plan.reverse.append(Reverse(key, value, expire_at_ms, exact))
    if in_place:
        plan.skip.update(r.key for r in plan.reverse)
        plan.skip.update(plan.kept)


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
) -> None:
    """Old records the reverse target still holds (the migration's source, left intact)."""
    for chunk in chunks(keys, batch):
        pipe = target.pipeline(transaction=False)
        for key in chunk:
            pipe.get(key)
        for key, value in zip(chunk, pipe.execute(raise_on_error=False), strict=True):
            if isinstance(value, redis.ResponseError):
                reason = "the reverse target holds another type there: not overwritten"
                plan.failed.append((key, reason))
            elif key not in originals:
                obj = _record(value)
                if obj is not None and is_old_format(obj):
                    originals[key] = (obj, value)
