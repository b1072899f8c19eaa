"""The Redis part of a backup: every key under the patterns, its DUMP payload and absolute expiry."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, cast

import redis

from chat.cutover.backup_format import REDIS_FILE, dump_type, encode_entry, redis_time_ms
from chat.cutover.common import Progress
from chat.cutover.migrate_redis.wire import scan_fraction


def scan_keys(
    client: redis.Redis, patterns: list[str], batch: int, seen: set[bytes] | None = None
) -> Iterator[tuple[list[bytes], float]]:
    """Every key matching any pattern once, in batches, with the share of the work done; `seen` (given:
    the caller's) ends up holding them all.

    One SCAN per pattern (never KEYS); a key matching two patterns is handed out once.
    """
    seen = set() if seen is None else seen
    for index, pattern in enumerate(patterns):
        cursor = 0
        while True:
            cursor, found = client.scan(cursor, match=pattern, count=batch)
            keys = cast(list[bytes], found)  # bytes: the clients here never decode replies
            fresh = [key for key in keys if key not in seen]
            seen.update(fresh)
            done_share = (index + (1.0 if cursor == 0 else scan_fraction(cursor))) / len(patterns)
            if fresh:
                yield fresh, done_share
            if cursor == 0:
                break


LEFT_OUT_EXAMPLES = 5


def keys_left_out(client: redis.Redis, taken: set[bytes], batch: int) -> tuple[int, list[str]]:
    """How many keys of the database are outside the patterns (not in ``taken``), and a few of them.

    One SCAN of the whole database (never KEYS); a key SCAN hands out twice is counted once.
    """
    left: set[bytes] = set()
    cursor = 0
    while True:
        cursor, found = client.scan(cursor, count=batch)
        left.update(key for key in cast(list[bytes], found) if key not in taken)
        if cursor == 0:
            break
    examples = sorted(key.decode("utf-8", "backslashreplace") for key in left)[:LEFT_OUT_EXAMPLES]
    return len(left), examples


def timed_read(
    client: redis.Redis, keys: Sequence[bytes], command: str
) -> tuple[int, list[tuple[Any, int]]]:
    """The server's time (epoch ms) and ``(command reply, PTTL)`` per key, in one MULTI/EXEC.

    The transaction makes each key's value and TTL one consistent reading, and the server's
    own clock turns the TTL into an absolute expiry without any client clock skew. An error
    reply (GET on a hash: WRONGTYPE) comes back as its exception object.
    """
    pipe = client.pipeline(transaction=True)
    pipe.time()
    for key in keys:
        pipe.execute_command(command, key)  # type: ignore[no-untyped-call]  # unannotated in redis-py
        pipe.pttl(key)
    replies = pipe.execute(raise_on_error=False)
    pairs = [(replies[i], replies[i + 1]) for i in range(1, len(replies), 2)]
    return redis_time_ms(replies[0]), pairs


def backup_redis(
    client: redis.Redis, out: Path, patterns: list[str], batch: int, progress: Progress
) -> dict[str, Any]:
    """Write redis/keys.jsonl; return the manifest's ``redis`` part."""
    path = out / REDIS_FILE
    path.parent.mkdir(mode=0o700, exist_ok=True)
    keys = with_ttl = vanished = 0
    types: Counter[str] = Counter()
    taken: set[bytes] = set()
    with open(path, "wb") as fh:
        for batch_keys, fraction in scan_keys(client, patterns, batch, taken):
            now_ms, pairs = timed_read(client, batch_keys, "DUMP")
            lines = []
            for key, (payload, pttl) in zip(batch_keys, pairs, strict=True):
                if isinstance(payload, redis.ResponseError):
                    raise payload
                if payload is None or pttl == -2:
                    vanished += 1  # expired or deleted between SCAN and DUMP
                    continue
                expire_at_ms = now_ms + pttl if pttl >= 0 else None
                lines.append(encode_entry(key, payload, pttl, expire_at_ms))
                types[dump_type(payload)] += 1
                with_ttl += pttl >= 0
            fh.write(b"".join(lines))
            keys += len(lines)
            progress.update(keys, fraction)
    progress.update(keys, 1.0, force=True)
    os.chmod(path, 0o600)
    info = client.info("server")
    left_out, examples = keys_left_out(client, taken, batch)
    return {
        "file": REDIS_FILE,
        "keys": keys,
        "with_ttl": with_ttl,
        "vanished": vanished,
        "types": dict(sorted(types.items())),
        "patterns": patterns,
        "left_out": left_out,
        "left_out_examples": examples,
        "db": int(client.connection_pool.connection_kwargs.get("db", 0)),
        "redis_version": info.get("redis_version"),
    }
