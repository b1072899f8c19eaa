"""The Redis part of a rollback, applied: reverse-migrated sessions (and the old copies of ended,
erased or purged ones deleted) first, then RESTORE, then UNLINK."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import redis

from chat.cutover.common import Progress
from chat.cutover.rollback.checks import Backup
from chat.cutover.rollback.redis_plan import RedisPlan, Reverse, chunks, server_ms


@dataclass
class RedisDone:
    """What the Redis part did."""

    restored: int = 0
    expired: int = 0
    removed: int = 0
    reversed: int = 0
    exact: int = 0
    ended: int = 0  # old copies deleted from the reverse target (plan.end)
    failed: list[tuple[bytes, str]] = field(default_factory=list)


def apply_redis(
    backup: Backup,
    plan: RedisPlan,
    client: redis.Redis,
    reverse_client: redis.Redis | None,
    *,
    batch: int,
    progress: Progress,
) -> RedisDone:
    """Write the reverse-migrated sessions, restore the backed-up keys, remove the newer ones.

    The reverse-migrated sessions go first: if the run breaks off later, a second run finds
    them as old records newer than the backup and keeps them.
    """
    done = RedisDone(failed=list(plan.failed))
    total = len(plan.reverse) + plan.restore + plan.expired + len(plan.remove)
    if plan.reverse:
        assert reverse_client is not None
        _write_reversed(reverse_client, plan.reverse, done, batch, lambda: progress.update(done.reversed,
                                                                                            done.reversed / total))
    if plan.end:
        assert reverse_client is not None
        for items in chunks(plan.end, batch):
            done.ended += reverse_client.delete(*(key for key, _ in items))
    pending: list[tuple[bytes, bytes, int | None]] = []
    for entry in backup.entries():
        if entry[0] in plan.skip:
            continue
        pending.append(entry)
        if len(pending) >= batch:
            _restore_batch(client, pending, done)
            pending = []
            handled = done.reversed + done.restored + done.expired
            progress.update(handled, handled / total)
    if pending:
        _restore_batch(client, pending, done)
    for keys in chunks(plan.remove, batch):
        done.removed += client.unlink(*keys)
        progress.update(total - len(plan.remove) + done.removed, None)
    progress.update(total, 1.0, force=True)
    return done


def _write_reversed(
    client: redis.Redis, reverse: list[Reverse], done: RedisDone, batch: int, report: Callable[[], None]
) -> None:
    """SET (and PEXPIREAT) each reverse-migrated session, a transaction per batch."""
    for items in chunks(reverse, batch):
        pipe = client.pipeline(transaction=True)
        for item in items:
            pipe.set(item.key, item.value)
            if item.expire_at_ms is not None:
                pipe.pexpireat(item.key, item.expire_at_ms)
        pipe.execute()
        done.reversed += len(items)
        done.exact += sum(item.exact for item in items)
        report()


def _restore_batch(
    client: redis.Redis, entries: list[tuple[bytes, bytes, int | None]], done: RedisDone
) -> None:
    """RESTORE ... REPLACE ABSTTL each key, or delete it when its expiry has passed meanwhile."""
    now_ms = server_ms(client)
    pipe = client.pipeline(transaction=False)
    expired = []
    for key, payload, expire_at_ms in entries:
        if expire_at_ms is not None and expire_at_ms <= now_ms:
            pipe.delete(key)
            expired.append(True)
        else:
            absolute = expire_at_ms is not None
            pipe.restore(key, expire_at_ms or 0, payload, replace=True, absttl=absolute)
            expired.append(False)
    replies = pipe.execute(raise_on_error=False)
    for (key, _, _), was_expired, reply in zip(entries, expired, replies, strict=True):
        if isinstance(reply, redis.ResponseError):
            done.failed.append((key, f"RESTORE refused: {reply}"))
        elif was_expired:
            done.expired += 1
        else:
            done.restored += 1
