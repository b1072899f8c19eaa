"""What the webhook outbox costs the message path: with no webhook, with one that wants other events,
and with one that wants `message.created` (an outbox row in each message's transaction).

Appends messages one by one (Messages.append: the path of a lone sender) for a fixed time in each
mode, round after round, and prints the process CPU and the wall time per message, then the medians,
and the cost of the cached check alone (`Webhooks.wants`), which is all the no-webhook mode adds.

    .venv/bin/python bench/webhook_outbox.py mysql://root@127.0.0.1/bench_outbox --rounds 3
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
import timeit
import uuid

from chat.settings import parse_database_url
from chat.store import Store, connect
from states import State
from states.clock import now_iso
from states.record import Conversation

MODES = {"none": None, "other events": ["csat.submitted"], "message.created": ["message.created"]}


async def one_round(store: Store, events: list[str] | None, *, seconds: float) -> tuple[float, float, int]:
    """(CPU seconds, wall seconds, messages) of `seconds` of appends with this subscription."""
    hook = await store.webhooks.create("https://example.com/bench", events, None) if events else None
    try:
        now = now_iso()
        ids = []
        for _ in range(20):
            record = Conversation(id=str(uuid.uuid4()), user_id="bench", agent_type="ai", state=State.AI.value,
                                  created_at=now, updated_at=now)
            await store.conversations.create(record)
            ids.append(record.id)
        done, cpu0, wall0 = 0, time.process_time(), time.perf_counter()
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            await store.messages.append(ids[done % len(ids)], sender_type="customer", sender_id="bench",
                                        content=f"message {done}")
            done += 1
        return time.process_time() - cpu0, time.perf_counter() - wall0, done
    finally:
        if hook is not None:
            await store.webhooks.delete(hook["id"])


async def run(args: argparse.Namespace) -> None:
    db = await connect(parse_database_url(args.url), pool_size=4)
    try:
        store = Store(db)
        await store.migrations.upgrade()
        await store.webhooks.refresh()
        cpu: dict[str, list[float]] = {mode: [] for mode in MODES}
        wall: dict[str, list[float]] = {mode: [] for mode in MODES}
        for r in range(args.rounds):
            for mode, events in MODES.items():
                c, w, n = await one_round(store, events, seconds=args.seconds)
                cpu[mode].append(c / n * 1e6)
                wall[mode].append(w / n * 1e6)
                print(f"round {r + 1} webhooks={mode!r}: messages={n} cpu_per_message={c / n * 1e6:.1f}us "
                      f"wall_per_message={w / n * 1e6:.1f}us", flush=True)
        for mode in MODES:
            print(f"median webhooks={mode!r}: cpu_per_message={statistics.median(cpu[mode]):.1f}us "
                  f"wall_per_message={statistics.median(wall[mode]):.1f}us")
        check = timeit.timeit(lambda: store.webhooks.wants("message.created"), number=1_000_000)
        print(f"the cached check alone (Webhooks.wants): {check * 1e3:.0f}ns per call")
    finally:
        await db.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url", help="a DATABASE_URL (its tables are created; webhooks made here are deleted)")
    parser.add_argument("--seconds", type=float, default=3.0, help="per round and mode (default 3)")
    parser.add_argument("--rounds", type=int, default=3)
    asyncio.run(run(parser.parse_args(argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
