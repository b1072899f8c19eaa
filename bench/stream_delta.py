"""What a resumable `ai.delta` costs against the plain publish it replaced (docs/performance.md).

K concurrent turns each send N deltas one after the other, as AI turns do, through the service's own bus
(its pipelined publisher): (a) a plain `Bus.publish` of the delta frame (SPUBLISH, as before issue 15),
(b) `Turn.delta` (one EVAL that appends the piece to the stream, refreshes its TTL and SPUBLISHes).
Rounds alternate A B A B; it prints this process's CPU and Redis's CPU (INFO used_cpu_*) per delta, and
the wall time, then the medians. Nothing subscribes: the receivers' side is the same for both.

    .venv/bin/python bench/stream_delta.py --redis redis://127.0.0.1:6379/9 --turns 50 --deltas 20 --rounds 3
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable

import redis.asyncio as aioredis

from chat.ai_stream import AIStreams
from chat.bus import Bus, Interest, ToConversation
from states.clock import now_iso
from states.record import Conversation

PIECE = "今天天气很好，"  # a typical DashScope delta: a few tokens


async def redis_cpu_s(client: aioredis.Redis) -> float:
    """Redis's own CPU seconds so far."""
    info = await client.info("cpu")
    return float(info["used_cpu_sys"]) + float(info["used_cpu_user"])


def conversation() -> Conversation:
    now = now_iso()
    return Conversation(id=str(uuid.uuid4()), user_id="bench", agent_type="ai", created_at=now, updated_at=now)


async def plain(bus: Bus, _: AIStreams, deltas: int) -> None:
    """One turn's deltas as plain publishes."""
    c, turn_id = conversation(), uuid.uuid4().hex
    for index in range(deltas):
        data = {"conversation_id": c.id, "reply_to": "m", "turn_id": turn_id, "index": index, "delta": PIECE}
        await bus.publish(ToConversation(c.id, c.user_id, {"type": "ai.delta", "data": data}))


async def resumable(_: Bus, streams: AIStreams, deltas: int) -> None:
    """One turn's deltas kept resumable (the turn's begin and end are per turn, not per delta: left out)."""
    turn = await streams.begin(conversation(), "m")
    for _ in range(deltas):
        assert await turn.delta(PIECE)


async def one_round(client: aioredis.Redis, way: Callable[[Bus, AIStreams, int], Awaitable[None]], *,
                    turns: int, deltas: int, prefix: str) -> tuple[float, float, float]:
    """(process CPU µs, Redis CPU µs, wall µs) per delta."""
    interest = Interest(prefix)
    bus = Bus(client, lambda message: None, interest)
    streams = AIStreams(client, bus, interest)
    redis_before, cpu_before, wall_before = await redis_cpu_s(client), time.process_time(), time.perf_counter()
    await asyncio.gather(*(way(bus, streams, deltas) for _ in range(turns)))
    wall, cpu = time.perf_counter() - wall_before, time.process_time() - cpu_before
    redis = await redis_cpu_s(client) - redis_before
    await bus.stop()
    n = turns * deltas
    return 1e6 * cpu / n, 1e6 * redis / n, 1e6 * wall / n


async def main(argv: list[str] | None = None) -> int:
    """Run the rounds and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/9")
    parser.add_argument("--turns", type=int, default=50)
    parser.add_argument("--deltas", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    client = aioredis.Redis.from_url(args.redis)
    prefix = f"bench:{uuid.uuid4().hex[:8]}"
    results: dict[str, list[tuple[float, float, float]]] = {"plain": [], "resumable": []}
    try:
        for _ in range(args.rounds):
            for name, way in (("plain", plain), ("resumable", resumable)):
                figures = await one_round(client, way, turns=args.turns, deltas=args.deltas, prefix=prefix)
                results[name].append(figures)
                print(f"{name:10} process {figures[0]:6.1f} µs  redis {figures[1]:6.1f} µs  wall {figures[2]:6.1f} µs"
                      " per delta")
        for name, rows in results.items():
            medians = [statistics.median(r[i] for r in rows) for i in range(3)]
            print(f"median {name:10} process {medians[0]:6.1f} µs  redis {medians[1]:6.1f} µs  "
                  f"wall {medians[2]:6.1f} µs per delta")
    finally:
        await client.aclose()
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
