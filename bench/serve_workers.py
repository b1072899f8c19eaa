"""Messages/s of `chat-api serve --workers N` against the real Redis and database, N after N.

The clients and their closed loop are bench/ws_messages.py's (one customer per socket, each
conversation in `handoff`, `message.send` in a loop); the server CPU is the supervisor's and every
worker's together. Needs REDIS_URL, DATABASE_URL and JWT_SECRET_KEY (the embedded mode is one process).

    REDIS_URL=redis://127.0.0.1:6379/6 DATABASE_URL=mysql://root@127.0.0.1/bench_drv JWT_SECRET_KEY=... \\
        AI_PROVIDER=echo .venv/bin/python bench/serve_workers.py --workers 1 2 --rounds 3
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import ws_messages  # bench/ is the script's own folder on sys.path

from chat.auth import issue_token


def tree_cpu_s(pid: int) -> float:
    """CPU seconds of a process and its children (the workers)."""
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return ws_messages.process_cpu_s(pid) + sum(ws_messages.process_cpu_s(int(c)) for c in children)


async def one_run(workers: int, args: argparse.Namespace) -> tuple[float, float]:
    """(messages/s, server CPU µs per message) of one run."""
    port = ws_messages.free_port()
    env = dict(os.environ, PORT=str(port), LOG_LEVEL="WARNING", WS_RATE_LIMIT_COUNT="1000000")
    server = subprocess.Popen([sys.executable, "-m", "chat", "serve", "--host", "127.0.0.1", "--workers",
                               str(workers)], env=env, stdout=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        await ws_messages.wait_ready(url)
        await asyncio.sleep(2.0 if workers > 1 else 0.0)  # /health answered by one: give the others their start
        tokens = [issue_token(os.environ["JWT_SECRET_KEY"], f"bench-{i}", "customer", ttl_s=3600)
                  for i in range(args.connections)]
        latencies: list[float] = []
        counter = {"errors": 0, "ready": asyncio.Event()}
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
            tasks = [asyncio.create_task(ws_messages.client(session, url, token, seconds=args.seconds,
                                                            latencies=latencies, counter=counter))
                     for token in tokens]
            await asyncio.sleep(2.0 + args.connections / 100)  # let every socket set up
            cpu_before, started = tree_cpu_s(server.pid), time.monotonic()
            counter["ready"].set()
            await asyncio.gather(*tasks)
            elapsed, cpu = time.monotonic() - started, tree_cpu_s(server.pid) - cpu_before
        rate, per_message = len(latencies) / elapsed, cpu / max(len(latencies), 1) * 1e6
        print(f"workers={workers} connections={args.connections} messages={len(latencies)} "
              f"errors={counter['errors']} rate={rate:.0f}/s server_cpu_per_message={per_message:.0f}us", flush=True)
        return rate, per_message
    finally:
        server.terminate()
        server.wait(30)


async def run(args: argparse.Namespace) -> None:
    results: dict[int, list[tuple[float, float]]] = {n: [] for n in args.workers}
    for _ in range(args.rounds):
        for n in args.workers:
            results[n].append(await one_run(n, args))
    for n, runs in results.items():
        print(f"median workers={n} rate={statistics.median(r for r, _ in runs):.0f}/s "
              f"server_cpu_per_message={statistics.median(c for _, c in runs):.0f}us")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    asyncio.run(run(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
