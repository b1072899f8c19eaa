"""Peak memory of the bulk export (`chat-api export`, the same lines as GET /api/v1/export/conversations)
as the number of conversations grows: the figure must stay flat.

Fills an SQLite database with `--conversations` conversations (each with `--messages` messages, one
private note among them, and two transition-log entries; one conversation a second), then runs the
real command line in a fresh process for windows holding each of `--sizes` conversations and reports
that process's peak resident set size (getrusage of the child), the lines and bytes written and the
time. Size 0 is the process's fixed cost (the interpreter and the service's imports).

    .venv/bin/python bench/export_memory.py --conversations 100000 --sizes 0,1000,10000,100000
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from chat.settings import parse_database_url
from chat.store import Store, connect
from chat.store.models import CONVERSATION_COLUMNS, EVENT_COLUMNS, MESSAGE_COLUMNS
from states.clock import iso_from_ms

BASE_MS = 1_700_000_000_000  # the first conversation's creation time; then one a second
TEXT = "您好，我的订单 #{n} 还没有发货, could you check? 谢谢"


async def create_schema(url: str) -> None:
    db = await connect(parse_database_url(url))
    try:
        await Store(db).migrations.upgrade()
    finally:
        await db.close()


def fill(path: Path, conversations: int, messages: int) -> None:
    """Insert the rows with sqlite3 directly (executemany in large transactions: the fill is not measured)."""
    con = sqlite3.connect(path)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=OFF")
    marks = lambda columns: ", ".join("?" * len(columns.split(",")))  # noqa: E731
    batch = 5000
    for start in range(0, conversations, batch):
        conv_rows, message_rows, event_rows = [], [], []
        for i in range(start, min(start + batch, conversations)):
            cid, created = str(uuid.UUID(int=i + 1)), BASE_MS + i * 1000
            conv_rows.append((cid, f"customer-{i % 5000}", "closed", "human", "agent-1", None, 2, messages, "{}",
                              None, created, created + 60_000))
            for seq in range(1, messages + 1):
                private = seq == messages
                message_rows.append((str(uuid.uuid4()), cid, seq, "agent" if private or seq % 2 == 0 else "customer",
                                     "agent-1" if private or seq % 2 == 0 else f"customer-{i % 5000}",
                                     TEXT.format(n=i * 100 + seq), 1 if private else 0, f"c{seq}",
                                     created + seq * 1000))
            for version, (trigger, a, b) in enumerate((("request_handoff", "ai", "handoff"),
                                                       ("close", "handoff", "closed")), start=1):
                event_rows.append((str(uuid.uuid4()), cid, version, trigger, a, b, "customer", None, "keyword",
                                   None, None, created + version * 1000))
        con.executemany(f"INSERT INTO conversations ({CONVERSATION_COLUMNS}) VALUES "
                        f"({marks(CONVERSATION_COLUMNS)})", conv_rows)
        con.executemany(f"INSERT INTO messages ({MESSAGE_COLUMNS}) VALUES ({marks(MESSAGE_COLUMNS)})", message_rows)
        con.executemany(f"INSERT INTO conversation_events ({EVENT_COLUMNS}) VALUES ({marks(EVENT_COLUMNS)})",
                        event_rows)
        con.commit()
        print(f"  filled {min(start + batch, conversations)} conversations", file=sys.stderr, flush=True)
    con.close()


def measure(url: str, size: int, out: Path) -> tuple[float, float, int, int]:
    """(peak RSS in MiB, seconds, lines, bytes) of `chat-api export` over the first `size` conversations."""
    env = {**os.environ, "DATABASE_URL": url, "JWT_SECRET_KEY": "bench-" + "x" * 40, "LOG_LEVEL": "WARNING"}
    argv = [sys.executable, "-m", "chat", "export", "--since", iso_from_ms(BASE_MS),
            "--until", iso_from_ms(BASE_MS + size * 1000), "--out", str(out)]
    started = time.monotonic()
    child = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(child.pid, 0)
    seconds = time.monotonic() - started
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        raise SystemExit(f"chat-api export exited {child.returncode} for size {size}")
    with out.open("rb") as f:
        lines = sum(1 for _ in f)
    return usage.ru_maxrss / 1024, seconds, lines, out.stat().st_size  # ru_maxrss is in KiB on Linux


def main(argv: list[str] | None = None) -> int:
    """Fill (once per database file), then measure each size."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--conversations", type=int, default=100_000)
    parser.add_argument("--messages", type=int, default=6, help="messages per conversation (default 6)")
    parser.add_argument("--sizes", default="0,1000,10000,100000", help="conversations per export run")
    parser.add_argument("--db", type=Path, help="the SQLite file (kept, and reused when it is already full)")
    args = parser.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="export-bench-"))
    path = args.db or workdir / "export.db"
    url = f"sqlite:///{path.resolve()}"
    if not path.exists():
        asyncio.run(create_schema(url))
        fill(path, args.conversations, args.messages)
    sizes = [int(s) for s in args.sizes.split(",")]
    print(f"{'conversations':>13} {'messages':>9} {'peak RSS MiB':>12} {'seconds':>8} {'output MiB':>10}")
    for size in sizes:
        rss, seconds, lines, size_bytes = measure(url, size, workdir / f"out-{size}.ndjson")
        assert lines == min(size, args.conversations), (lines, size)
        print(f"{lines:>13} {lines * args.messages:>9} {rss:>12.1f} {seconds:>8.1f} {size_bytes / 2**20:>10.1f}",
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
