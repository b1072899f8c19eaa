"""Benchmark the Redis migration (chat.cutover.migrate_redis, scripts/migrate_redis.py) against the
migration guide's naive script.

Seeds N old-format sessions (mixed TTLs and timestamp forms) into Redis db 12, times the
guide's algorithm (KEYS, then GET + json.loads + SET per key) from db 12 into db 13, then
times the migration on the same data into db 13, and prints both and the ratio, with the
migration's own CPU time (steadier than the wall clock on a busy machine). Both dbs are
emptied before and after. Run from the repo root:

    .venv/bin/python bench/migrate_redis_bench.py [--n 100000] [--repeat 3] [--skip-baseline]
        [--record-bytes 800]

``--record-bytes N`` grows each session's ``context`` (a conversation history of a few turns)
until the stored records average about N bytes; the default keeps the small records (~190 bytes).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from urllib.parse import urlsplit, urlunsplit

import redis

from chat.cutover import migrate_redis

SOURCE_DB, TARGET_DB = 12, 13


def db_url(base: str, db: int) -> str:
    parts = urlsplit(base)
    return urlunsplit((parts.scheme, parts.netloc, f"/{db}", parts.query, ""))


WORDS = ("order", "refund", "where", "is", "my", "parcel", "please", "thanks", "payment", "account",
         "address", "delivery", "today", "invoice", "help", "the", "a", "not", "arrived", "yet")


def history(rng: random.Random, size: int) -> list[dict[str, object]]:
    """Conversation turns of about ``size`` bytes of JSON in all."""
    turns: list[dict[str, object]] = []
    used = 0
    while used < size:
        text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 16)))
        turns.append({"role": "user" if len(turns) % 2 == 0 else "assistant", "text": text, "at": 1_704_103_200_000})
        used += len(text) + 50
    return turns


def old_record(i: int, rng: random.Random, record_bytes: int = 0) -> dict[str, object]:
    """One session as the Node.js services wrote it, in one of their timestamp habits.

    ``record_bytes``: the stored record's rough size (0: the small records, no history).
    """
    context: dict[str, object] = {"lang": "zh-CN", "turns": i % 7, "last": f"message {i}"}
    if record_bytes:
        # The rest of the record and the JSON around the turns is ~250 bytes; sizes spread +-50 % around the average.
        context["history"] = history(rng, rng.randint(record_bytes // 2, record_bytes * 3 // 2) - 250)
    record: dict[str, object] = {
        "userId": f"user-{i}",
        "agent": "human" if i % 5 == 0 else "ai",
        "context": context,
    }
    if i % 2:
        record["metadata"] = {"channel": rng.choice(["web", "app", "wechat"]), "vip": i % 3 == 0}
    created = 1_704_103_200_000 + i * 1000
    habit = i % 4
    if habit == 0:
        record["createdAt"] = datetime.fromtimestamp(created / 1000).astimezone().isoformat()
    elif habit == 1:
        record["createdAt"] = created
        record["updatedAt"] = created + 60_000
    elif habit == 2:
        moment = datetime.fromtimestamp(created / 1000, UTC)
        record["createdAt"] = moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    # habit 3: no timestamps at all
    return record


def seed(client: redis.Redis, n: int, record_bytes: int = 0) -> float:
    """Seed ``n`` sessions; the average stored size in bytes."""
    rng = random.Random(12)
    pipe = client.pipeline(transaction=False)
    total = 0
    for i in range(n):
        ttl_ms = (None, 3_600_000, 86_400_000)[i % 3]  # a third each: none, an hour, a day
        raw = json.dumps(old_record(i, rng, record_bytes))
        total += len(raw)
        pipe.set(f"session:{i:08d}", raw, px=ttl_ms)
        if len(pipe) >= 10_000:
            pipe.execute()
    pipe.execute()
    return total / max(n, 1)


def guide_baseline(source_url: str, target_url: str) -> int:
    """The guide's scripts/migrate_redis.py, step for step (its print goes to /dev/null).

    Its flaws are kept on purpose (a key gone between KEYS and GET crashes it, bytes keys
    are printed as b'...'): this is the yardstick, not a tool.
    """
    old_redis = redis.Redis.from_url(source_url)
    new_redis = redis.Redis.from_url(target_url)
    with open(os.devnull, "w") as sink:
        session_keys = old_redis.keys("session:*")
        for key in session_keys:
            old_data = json.loads(old_redis.get(key))  # type: ignore[arg-type]
            new_data = {
                "user_id": old_data.get("userId"),
                "agent_type": old_data.get("agent", "ai"),
                "context": old_data.get("context", {}),
                "created_at": datetime.now().isoformat(),
                "updated_at": datetime.now().isoformat(),
            }
            new_redis.set(key, json.dumps(new_data))
            print(f"Migrated {key}", file=sink)  # type: ignore[str-bytes-safe]
        print(f"Migrated {len(session_keys)} sessions", file=sink)
    old_redis.close()
    new_redis.close()
    return len(session_keys)


def run_script(source_url: str, target_url: str, report: str) -> int:
    with open(os.devnull, "w") as sink:
        streams = sys.stdout, sys.stderr
        sys.stdout = sys.stderr = sink
        try:
            return migrate_redis.main(["--source", source_url, "--target", target_url, "--report", report, "--quiet"])
        finally:
            sys.stdout, sys.stderr = streams


def time_script(
    source_url: str, target_url: str, target: redis.Redis, n: int, repeat: int
) -> tuple[list[float], list[float]]:
    """Run the migration ``repeat`` times into an emptied target: wall-clock and CPU seconds of each run."""
    times, cpu = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for attempt in range(repeat):
            target.flushdb()
            started, cpu_started = time.perf_counter(), time.process_time()
            rc = run_script(source_url, target_url, os.path.join(tmp, "report.jsonl"))
            times.append(time.perf_counter() - started)
            cpu.append(time.process_time() - cpu_started)
            assert rc == 0, f"migrate_redis exited {rc}"
            assert target.dbsize() == n
            print(f"scripts/migrate_redis.py run {attempt + 1}:        {times[-1]:8.2f} s  (CPU {cpu[-1]:.2f} s)")
    return times, cpu


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=100_000, help="sessions to seed (default 100000)")
    parser.add_argument(
        "--repeat", type=int, default=3, help="runs of the script; the median counts (default 3)"
    )
    parser.add_argument(
        "--skip-baseline", action="store_true", help="time the migration only (the guide's script takes ~1 min)"
    )
    parser.add_argument(
        "--record-bytes",
        type=int,
        default=0,
        metavar="N",
        help="grow each session's context so records average about N bytes (default: small records)",
    )
    parser.add_argument("--source-db", type=int, default=SOURCE_DB, help=f"(default {SOURCE_DB})")
    parser.add_argument("--target-db", type=int, default=TARGET_DB, help=f"(default {TARGET_DB})")
    parser.add_argument(
        "--redis",
        default=os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379"),
        help="server base URL; dbs 12 and 13 are used (default $TEST_REDIS_URL or local)",
    )
    args = parser.parse_args(argv)
    source_url, target_url = db_url(args.redis, args.source_db), db_url(args.redis, args.target_db)
    source, target = redis.Redis.from_url(source_url), redis.Redis.from_url(target_url)
    try:
        import hiredis  # noqa: F401

        parser_name = "hiredis"
    except ImportError:
        parser_name = "redis-py's pure-Python reply parser; hiredis is faster"

    try:
        source.flushdb()
        target.flushdb()
        print(f"seeding {args.n:,} old sessions into db {args.source_db} ...", flush=True)
        average = seed(source, args.n, args.record_bytes)
        print(f"records average {average:,.0f} bytes", flush=True)

        baseline_s = None
        if not args.skip_baseline:
            started = time.perf_counter()
            migrated = guide_baseline(source_url, target_url)
            baseline_s = time.perf_counter() - started
            assert migrated == args.n, migrated
            print(f"guide's script (KEYS, GET/SET per key): {baseline_s:8.2f} s", flush=True)

        times, cpu = time_script(source_url, target_url, target, args.n, args.repeat)
        median_s = statistics.median(times)
        print(f"scripts/migrate_redis.py median:       {median_s:8.2f} s  (min {min(times):.2f} s)")
        print(f"migration CPU median:                  {statistics.median(cpu):8.2f} s  (min {min(cpu):.2f} s)")
        print(f"migration CPU per key:                 {statistics.median(cpu) / args.n * 1e6:8.1f} us")
        if baseline_s is not None:
            print(f"speed-up: {baseline_s / median_s:.1f}x  ({parser_name}, {os.cpu_count()} CPUs)")
        return 0
    finally:
        source.flushdb()
        target.flushdb()
        source.close()
        target.close()


if __name__ == "__main__":
    sys.exit(main())
