"""Bus input per instance when the service scales out: each instance receives its own share.

Starts four `chat-api serve` instances (subprocesses) on one Redis and one database, spreads
customer sockets over them with an agent per instance watching the conversations of its own
instance's customers (or another instance's: --agent-offset), moves every conversation to
`handoff` (no AI turn), then every customer sends messages in a closed loop. Reads each
instance's bus counters from /metrics before and after, and prints per instance the bus payloads
(and bytes) it received against the total published by all: with one channel per conversation
an instance receives the events of its own sockets' conversations only, about 1/N of the whole
(2/N when each conversation's agent sits elsewhere), where one shared channel gave every
instance all of it.

    REDIS_URL=redis://127.0.0.1:6379/9 DATABASE_URL=mysql://root@127.0.0.1:3306/bench_bus \\
        JWT_SECRET_KEY=$(openssl rand -hex 32) .venv/bin/python bench/bus_scaleout.py --customers 80 --messages 50
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import subprocess
import sys
import tempfile
import time

import aiohttp
from ws_messages import free_port, wait_ready  # bench/ is the script's own folder on sys.path

from chat.auth import issue_token

COUNTERS = ("chat_bus_published_messages_total", "chat_bus_published_bytes_total",
            "chat_bus_received_messages_total", "chat_bus_received_bytes_total", "chat_bus_own_echoes_total")


async def counters(session: aiohttp.ClientSession, url: str) -> dict[str, float]:
    """The bus counters of one instance (Prometheus text)."""
    async with session.get(url + "/metrics") as resp:
        text = await resp.text()
    values = dict.fromkeys(COUNTERS, 0.0)
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name in values:
            values[name] = float(value)
    return values


class Socket:
    """One authenticated WebSocket: request/reply by id, pushed events counted."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.ids = itertools.count(1)
        self.events = 0

    async def call(self, type_: str, **fields: object) -> dict:
        frame_id = next(self.ids)
        await self.ws.send_json({"type": type_, "id": frame_id, **fields})
        while True:
            reply = await self.ws.receive_json()
            if reply.get("id") == frame_id:
                if reply["type"] != "result":
                    raise SystemExit(f"{type_} failed: {reply}")
                return dict(reply["data"])
            self.events += 1


async def connect(session: aiohttp.ClientSession, url: str, token: str) -> Socket:
    return Socket(await session.ws_connect(f"{url}/ws?token={token}"))


async def customer(sock: Socket, cid: str, messages: int) -> None:
    for n in range(messages):
        await sock.call("message.send", conversation_id=cid, client_msg_id=f"m{n}", content=f"message {n}")


def start_instances(count: int) -> tuple[list[subprocess.Popen[bytes]], list[str]]:
    servers, urls = [], []
    for _ in range(count):
        port = free_port()
        env = dict(os.environ, PORT=str(port), LOG_LEVEL="WARNING", WS_RATE_LIMIT_COUNT="1000000",
                   AI_PROVIDER="echo", CONVERSATIONS_PER_USER_PER_MIN="1000000",
                   CHAT_DATA_DIR=tempfile.mkdtemp(prefix="chat-bus-bench-"))
        env.setdefault("BUS_CHANNEL", "bench-bus-scaleout")
        servers.append(subprocess.Popen([sys.executable, "-m", "chat", "serve", "--host", "127.0.0.1"], env=env,
                                        stdout=subprocess.DEVNULL))
        urls.append(f"http://127.0.0.1:{port}")
    return servers, urls


async def run(args: argparse.Namespace) -> None:
    if not os.environ.get("REDIS_URL") or not os.environ.get("DATABASE_URL"):
        raise SystemExit("REDIS_URL and DATABASE_URL name the shared Redis and database of the instances")
    secret = os.environ["JWT_SECRET_KEY"]
    servers, urls = start_instances(args.instances)
    try:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
            for url in urls:
                await wait_ready(url, timeout_s=60)
            await scenario(session, urls, secret, args)
    finally:
        for server in servers:
            server.terminate()
        for server in servers:
            server.wait(15)


async def scenario(session: aiohttp.ClientSession, urls: list[str], secret: str, args: argparse.Namespace) -> None:
    n = len(urls)
    customers = [await connect(session, urls[i % n], issue_token(secret, f"bus-bench-{i}", "customer", ttl_s=3600))
                 for i in range(args.customers)]
    agents = [await connect(session, url, issue_token(secret, f"bus-bench-agent-{i}", "agent", ttl_s=3600))
              for i, url in enumerate(urls)]
    cids = []
    for i, sock in enumerate(customers):
        cid = (await sock.call("conversation.start"))["conversation"]["id"]
        await sock.call("handoff.request", conversation_id=cid)
        await agents[(i + args.agent_offset) % n].call("conversation.watch", conversation_id=cid)
        cids.append(cid)
    before = [await counters(session, url) for url in urls]
    started = time.monotonic()
    await asyncio.gather(*(customer(sock, cid, args.messages) for sock, cid in zip(customers, cids, strict=True)))
    elapsed = time.monotonic() - started
    after = [await counters(session, url) for url in urls]
    delta = [{k: a[k] - b[k] for k in COUNTERS} for a, b in zip(after, before, strict=True)]
    report(delta, args, elapsed)
    for sock in [*customers, *agents]:
        await sock.ws.close()


def report(delta: list[dict[str, float]], args: argparse.Namespace, elapsed: float) -> None:
    published = sum(d["chat_bus_published_messages_total"] for d in delta)
    published_bytes = sum(d["chat_bus_published_bytes_total"] for d in delta)
    n = len(delta)
    where = "the same instance" if args.agent_offset % n == 0 else f"instance i+{args.agent_offset}"
    print(f"{n} instances, {args.customers} customers ({args.customers // n} per instance i), each conversation "
          f"watched by an agent on {where}, {args.messages} messages each, "
          f"{args.customers * args.messages / elapsed:.0f} messages/s")
    print(f"bus payloads published by all instances: {published:.0f} ({published_bytes / 1e6:.2f} MB)")
    print("| instance | published | received | of which its own echo (not decoded) | received bytes "
          "| received / all published |")
    print("|---:|---:|---:|---:|---:|---:|")
    for i, d in enumerate(delta):
        received, echoes = d["chat_bus_received_messages_total"], d["chat_bus_own_echoes_total"]
        share = received / published if published else 0.0
        print(f"| {i} | {d['chat_bus_published_messages_total']:.0f} | {received:.0f} | {echoes:.0f} | "
              f"{d['chat_bus_received_bytes_total'] / 1e6:.2f} MB | {share:.1%} |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=4)
    parser.add_argument("--customers", type=int, default=80)
    parser.add_argument("--messages", type=int, default=50)
    parser.add_argument("--agent-offset", type=int, default=0,
                        help="the watching agent of a conversation sits on instance (i + offset) mod N; 0: the same")
    args = parser.parse_args(argv)
    asyncio.run(run(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
