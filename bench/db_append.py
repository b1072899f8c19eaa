"""CPU of the store's group-commit path (Messages.append_batch) per message, per SQL backend/driver.

Writes batches of messages into fresh conversations for a fixed time on each URL given, round
after round (A B A B ...), and prints the process CPU per message and per batch of each round,
then the median per URL. The process CPU is what the service pays; the server's is not counted.

    .venv/bin/python bench/db_append.py --batch 20 --rounds 3 \\
        mysql+aiomysql://root@127.0.0.1/bench_drv mysql+asyncmy://root@127.0.0.1/bench_drv sqlite:///tmp/b.db
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
import uuid

from chat.settings import parse_database_url
from chat.store import NewMessage, Store, connect
from states import State
from states.clock import now_iso
from states.record import Conversation


async def one_round(url: str, *, batch: int, seconds: float, conversations: int) -> tuple[float, int]:
    """(CPU seconds, messages) of `seconds` of append_batch on `url`."""
    db = await connect(parse_database_url(url), pool_size=4)
    try:
        store = Store(db)
        await store.migrations.upgrade()
        ids = []
        for _ in range(conversations):
            now = now_iso()
            record = Conversation(id=str(uuid.uuid4()), user_id="bench", agent_type="ai", state=State.AI.value,
                                  version=0, created_at=now, updated_at=now)
            await store.conversations.create(record)
            ids.append(record.id)
        drafts = [[NewMessage(conversation_id=ids[(b * batch + i) % len(ids)], sender_type="customer",
                              sender_id="bench", content=f"message {i}") for i in range(batch)] for b in range(16)]
        done, cpu0, end = 0, time.process_time(), time.monotonic() + seconds
        while time.monotonic() < end:
            await store.messages.append_batch(drafts[done // batch % len(drafts)])
            done += batch
            await asyncio.sleep(0)  # a turn of the loop between batches, as in the service (SQLite never yields)
        return time.process_time() - cpu0, done
    finally:
        await db.close()


async def run(args: argparse.Namespace) -> None:
    per_message: dict[str, list[float]] = {url: [] for url in args.urls}
    for r in range(args.rounds):
        for url in args.urls:
            cpu, n = await one_round(url, batch=args.batch, seconds=args.seconds, conversations=args.conversations)
            per_message[url].append(cpu / n * 1e6)
            print(f"round {r + 1} {parse_database_url(url).kind}:{parse_database_url(url).driver or '-'} "
                  f"batch={args.batch} messages={n} cpu_per_message={cpu / n * 1e6:.1f}us "
                  f"cpu_per_batch={cpu / n * args.batch * 1e6:.0f}us", flush=True)
    for url, values in per_message.items():
        print(f"median {url.split('://')[0]} batch={args.batch} cpu_per_message={statistics.median(values):.1f}us")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("urls", nargs="+", help="DATABASE_URLs to compare (each gets fresh conversations)")
    parser.add_argument("--batch", type=int, default=20, help="messages per append_batch (default 20)")
    parser.add_argument("--seconds", type=float, default=3.0, help="per round and URL (default 3)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--conversations", type=int, default=50)
    args = parser.parse_args(argv)
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(run(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
