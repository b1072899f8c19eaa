"""`chat-api serve --workers N` (chat/workers.py): two workers on one port against the real Redis
and MariaDB, both accepting connections, a message sent through one reaching a socket on the
other (the bus), SIGTERM to the supervisor stopping them all; the refusals; a worker that exits by
itself stopping the others."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import suppress
from pathlib import Path

import aiohttp
import pytest

from chat.auth import issue_token
from tests.conftest import redis_url
from tests.faults.servers import free_port
from tests.wsclient import WS

SECRET = "workers-secret-0123456789abcdef0123"
START_TIMEOUT_S = 60.0


class Supervisor:
    """`python -m chat serve --workers N` with its output collected line by line."""

    def __init__(self, argv: list[str], env: dict[str, str]):
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
                                     start_new_session=True)
        self.lines: list[str] = []
        self._changed = threading.Condition()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            with self._changed:
                self.lines.append(raw.decode(errors="replace").rstrip())
                self._changed.notify_all()
        self.proc.wait()
        with self._changed:
            self._changed.notify_all()

    def wait_for(self, done: Callable[[list[str]], bool], timeout_s: float = START_TIMEOUT_S) -> None:
        """Until the output so far satisfies `done` (or the process ended, or the time is up: an error)."""
        with self._changed:
            if not self._changed.wait_for(lambda: done(self.lines) or self.proc.poll() is not None, timeout_s):
                raise AssertionError("timed out; output:\n" + "\n".join(self.lines[-40:]))
            if not done(self.lines):
                raise AssertionError(f"exited with {self.proc.returncode}; output:\n" + "\n".join(self.lines[-40:]))

    def kill(self) -> None:
        """SIGKILL to a supervisor still running and its workers (their pids are theirs until it reaps them)."""
        if self.proc.poll() is None:
            for pid in [*self.worker_pids(), self.proc.pid]:
                with suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        self.proc.wait()

    def worker_pids(self) -> list[int]:
        found = [re.search(r"workers \[([\d, ]+)\]", line) for line in self.lines]
        return [int(p) for match in found if match for p in match.group(1).split(",")]


def owner(client: WS, server_port: int, pids: list[int]) -> int:
    """Which worker process holds the server end of the client's connection (/proc/net/tcp, /proc/PID/fd)."""
    client_port = client.ws.get_extra_info("sockname")[1]
    inode = next(fields[9] for fields in (line.split() for line in Path("/proc/net/tcp").read_text().splitlines()[1:])
                 if int(fields[1].split(":")[1], 16) == server_port and int(fields[2].split(":")[1], 16) == client_port)
    for pid in pids:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            with suppress(OSError):
                if os.readlink(fd) == f"socket:[{inode}]":
                    return pid
    raise AssertionError(f"no worker holds the connection from port {client_port}")


@pytest.fixture
def supervisor(mysql_database_url: str, tmp_path: Path) -> Iterator[tuple[Supervisor, int]]:
    port = free_port()
    env = {**{k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "DATABASE_URL")},
           "REDIS_URL": redis_url(), "DATABASE_URL": mysql_database_url, "JWT_SECRET_KEY": SECRET,
           "AI_PROVIDER": "echo", "BUS_CHANNEL": f"chat:events:workers:{uuid.uuid4().hex[:8]}",
           "CHAT_DATA_DIR": str(tmp_path), "LOG_LEVEL": "INFO"}
    sup = Supervisor([sys.executable, "-m", "chat", "serve", "--workers", "2", "--host", "127.0.0.1",
                      "--port", str(port)], env)
    try:
        yield sup, port
    finally:
        sup.kill()


async def test_two_workers_share_the_port_the_bus_joins_them_and_sigterm_stops_both(supervisor):
    sup, port = supervisor
    sup.wait_for(lambda lines: sum("Running on" in line for line in lines) == 2)
    pids = sup.worker_pids()
    assert len(pids) == 2 and sup.proc.pid not in pids
    started = [line for line in sup.lines if "chat-api starting: " in line]
    assert sorted(int(re.search(r"; pid (\d+)", line).group(1)) for line in started) == sorted(pids)  # one each

    async with aiohttp.ClientSession() as http:
        async def socket_on(sub: str, role: str, wanted: Callable[[int], bool]) -> tuple[WS, int]:
            """A socket of `sub` on a worker `wanted` accepts (the kernel spreads them: SO_REUSEPORT)."""
            token = issue_token(SECRET, sub, role, ttl_s=600)
            for _ in range(64):
                ws = WS(await http.ws_connect(f"http://127.0.0.1:{port}/ws?token={token}"))
                pid = owner(ws, port, pids)
                if wanted(pid):
                    return ws, pid
                await ws.close()
            raise AssertionError(f"no connection of {sub} landed on the worker wanted")

        customer, first = await socket_on("cust-1", "customer", lambda pid: True)
        watcher, second = await socket_on("admin-1", "admin", lambda pid: pid != first)
        assert sorted([first, second]) == sorted(pids)  # both workers accept on the same port
        cid = (await customer.ok("conversation.start"))["conversation"]["id"]
        await watcher.ok("conversation.watch", conversation_id=cid)
        await customer.ok("message.send", conversation_id=cid, client_msg_id="w1", content="across workers")
        seen = await watcher.event("message.created", lambda f: f["data"]["message"]["content"] == "across workers",
                                   timeout=10)
        assert seen["data"]["message"]["conversation_id"] == cid  # through the bus, from the other process
        await customer.close()
        await watcher.close()

    sup.proc.send_signal(signal.SIGTERM)
    assert await asyncio.to_thread(sup.proc.wait, 60) == 0  # every worker drained and exited 0
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def run_serve(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "DATABASE_URL")}
    return subprocess.run([sys.executable, "-m", "chat", "serve", *args], env={**base, **env}, capture_output=True,
                          text=True, timeout=60, check=False)


@pytest.mark.parametrize("given", ["nothing", "only DATABASE_URL", "REDIS_URL and SQLite"])
def test_more_than_one_worker_needs_a_redis_server_and_mysql(tmp_path, mysql_database_url, given):
    """With only DATABASE_URL each worker kept an in-process Redis of its own: no bus between them."""
    env = {"CHAT_DATA_DIR": str(tmp_path), "JWT_SECRET_KEY": SECRET, "AI_PROVIDER": "echo",
           **{"nothing": {}, "only DATABASE_URL": {"DATABASE_URL": mysql_database_url},
              "REDIS_URL and SQLite": {"REDIS_URL": redis_url(), "DATABASE_URL": f"sqlite:///{tmp_path}/c.db"}}[given]}
    proc = run_serve("--workers", "2", env=env)
    assert proc.returncode == 2
    assert "--workers needs REDIS_URL and a MySQL DATABASE_URL" in proc.stderr and "Running on" not in proc.stdout


def test_bad_worker_counts_and_port_zero_are_refused(mysql_database_url, tmp_path):
    env = {"REDIS_URL": redis_url(), "DATABASE_URL": mysql_database_url, "JWT_SECRET_KEY": SECRET,
           "AI_PROVIDER": "echo", "CHAT_DATA_DIR": str(tmp_path)}
    zero = run_serve("--workers", "0", env=env)
    assert zero.returncode == 2 and "--workers must be 1 or more" in zero.stderr
    port0 = run_serve("--workers", "2", "--port", "0", env=env)
    assert port0.returncode == 2 and "needs a fixed port" in port0.stderr


WORKER_EXITS = """
import os, signal, sys
from chat.workers import supervise

def serve():
    try:
        os.close(os.open(sys.argv[1], os.O_CREAT | os.O_EXCL | os.O_WRONLY))  # the first worker only
    except FileExistsError:
        signal.pause()  # the other serves until stopped
    return 3

sys.exit(supervise(2, serve))
"""


def test_a_worker_that_exits_by_itself_stops_the_others(tmp_path):
    proc = subprocess.run([sys.executable, "-c", WORKER_EXITS, str(tmp_path / "first")], capture_output=True,
                          text=True, timeout=60, check=False)
    assert proc.returncode == 3, proc.stderr  # the first non-zero code; the other was stopped by SIGTERM
    assert "exited with code 3: stopping the others" in proc.stderr
