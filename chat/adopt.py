"""`chat-api db adopt`: give every migrated Redis record its SQL row now, not at first touch.

After `scripts/migrate_redis.py`, conversations exist only as Redis records until something
touches them; until then they are not in `queue.list`, routing, the wait timeout or the admin
lists. Adopting them right after the migration makes the waiting ones (`handoff`) visible
to agents at once. Safe to run again: rows that exist are left alone.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from redis.asyncio import Redis

from chat.redis_client import create_redis
from chat.settings import Settings
from chat.store import Store, connect
from states import Conversation, RecordError, load_record, redis_keys

log = logging.getLogger(__name__)


@dataclass
class AdoptStats:
    """What one run did."""

    scanned: int = 0
    adopted: int = 0
    present: int = 0
    invalid: int = 0


async def adopt(settings: Settings, *, batch: int = 500,
                progress: Callable[[AdoptStats], None] | None = None) -> AdoptStats:
    """Scan session:* and insert the missing conversation rows."""
    redis = create_redis(settings)
    db = await connect(settings.database)
    stats = AdoptStats()
    try:
        store = Store(db)
        await store.migrations.upgrade()
        keys: list[bytes] = []
        # scan_iter walks every master of a Redis Cluster (a single SCAN cursor would see one)
        async for key in redis.scan_iter(match=f"{redis_keys.SESSION_PREFIX}*", count=batch):
            keys.append(key)
            if len(keys) == batch:
                await _adopt_keys(redis, store, keys, stats, progress)
                keys = []
        if keys:
            await _adopt_keys(redis, store, keys, stats, progress)
        return stats
    finally:
        await db.close()
        await redis.aclose()


async def _adopt_keys(redis: Redis, store: Store, keys: list[bytes], stats: AdoptStats,
                      progress: Callable[[AdoptStats], None] | None) -> None:
    """Read one batch of records (a GET per key, pipelined: on a cluster the keys lie in many
    slots, which one MGET may not span) and insert the missing rows."""
    pipe = redis.pipeline(transaction=False)
    for key in keys:
        pipe.get(key)
    await _adopt_batch(store, _records(keys, await pipe.execute(), stats), stats)
    if progress is not None:
        progress(stats)


def _records(keys: Sequence[bytes | str], values: Sequence[bytes | str | None],
             stats: AdoptStats) -> list[Conversation]:
    """The valid records of one SCAN batch (invalid ones are counted and reported on stderr)."""
    records = []
    stats.scanned += len(keys)
    for key, raw in zip(keys, values, strict=True):
        if raw is None:
            continue  # expired since the scan
        name = key.decode() if isinstance(key, bytes) else key  # bytes: the client does not decode
        try:
            records.append(load_record(name[len(redis_keys.SESSION_PREFIX):], raw))
        except RecordError as exc:
            stats.invalid += 1
            print(f"skipped {name}: {exc}", file=sys.stderr)
    return records


async def _adopt_batch(store: Store, records: list[Conversation], stats: AdoptStats) -> None:
    """Insert the rows of the records that have none."""
    present = await store.conversations.existing([r.id for r in records])
    stats.present += len(present)
    for record in records:
        if record.id not in present:
            await store.conversations.ensure(record)
            stats.adopted += 1
