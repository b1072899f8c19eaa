"""Throughput and latency of the message path over WebSocket.

Starts `chat-api serve` in a subprocess (on REDIS_URL / DATABASE_URL when given, else the
embedded mode), opens N customer sockets, puts each conversation in `handoff` (so no AI
turn runs), then every socket sends messages in a closed loop for a fixed time. Prints
messages/s and latency percentiles.

    .venv/bin/python bench/ws_messages.py --connections 50 --seconds 10
    REDIS_URL=redis://127.0.0.1:6379/9 DATABASE_URL=mysql://root@127.0.0.1/bench JWT_SECRET_KEY=x \\
        .venv/bin/python bench/ws_messages.py --connections 500
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time

import aiohttp

from chat.auth import issue_token


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process (Linux /proc): the server's own cost, whatever the
    load generator sharing the machine takes."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def wait_ready(url: str, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            try:
                async with session.get(url + "/health") as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    raise SystemExit("server did not become ready")


async def client(session, url, token, *, seconds, latencies, counter):
    ids = itertools.count(1)
    async with session.ws_connect(f"{url}/ws?token={token}") as ws:
        async def call(frame):
            frame["id"] = next(ids)
            await ws.send_json(frame)
            while True:
                reply = await ws.receive_json()
                if reply.get("id") == frame["id"]:
                    return reply

        cid = (await call({"type": "conversation.start"}))["data"]["conversation"]["id"]
        await call({"type": "handoff.request", "conversation_id": cid})
        await counter["ready"].wait()
        end = time.monotonic() + seconds
        n = 0
        while time.monotonic() < end:
            n += 1
            t0 = time.perf_counter()
            reply = await call({"type": "message.send", "conversation_id": cid, "client_msg_id": f"m{n}",
                                "content": f"message {n}"})
            latencies.append(time.perf_counter() - t0)
            if reply["type"] != "result":
                counter["errors"] += 1


async def run(args) -> None:
    port = free_port()
    env = dict(os.environ, PORT=str(port), LOG_LEVEL="WARNING", WS_RATE_LIMIT_COUNT="1000000",
               CHAT_DATA_DIR=tempfile.mkdtemp(prefix="chat-bench-"))
    server = subprocess.Popen([sys.executable, "-m", "chat", "serve", "--host", "127.0.0.1"], env=env,
                              stdout=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        await wait_ready(url)
        secret = subprocess.run(  # the server's secret: the embedded mode keeps it in its data directory
            [sys.executable, "-c", "from chat.settings import Settings; print(Settings.from_env().jwt_secret_key)"],
            env=env, capture_output=True, text=True, check=True).stdout.strip()
        # one customer per socket, as in production (a customer's tabs all get its events)
        tokens = [issue_token(secret, f"bench-{i}", "customer", ttl_s=3600) for i in range(args.connections)]
        latencies: list[float] = []
        counter = {"errors": 0, "ready": asyncio.Event()}
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=connector) as session:
            tasks = [
                asyncio.create_task(
                    client(session, url, token, seconds=args.seconds, latencies=latencies, counter=counter))
                for token in tokens
            ]
            await asyncio.sleep(2.0 + args.connections / 100)  # let every socket set up
            cpu_before = process_cpu_s(server.pid)
            counter["ready"].set()
            started = time.monotonic()
            await asyncio.gather(*tasks)
            elapsed = time.monotonic() - started
            cpu_used = process_cpu_s(server.pid) - cpu_before
        latencies.sort()
        q = statistics.quantiles(latencies, n=100)
        print(f"connections={args.connections} messages={len(latencies)} errors={counter['errors']} "
              f"rate={len(latencies) / elapsed:.0f}/s p50={q[49] * 1000:.1f}ms p99={q[98] * 1000:.1f}ms "
              f"server_cpu_per_message={cpu_used / max(len(latencies), 1) * 1e6:.0f}us")
    finally:
        server.terminate()
        server.wait(10)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=10.0)
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
