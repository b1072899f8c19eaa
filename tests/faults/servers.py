"""Private servers the fault cases may break: redis-server, mariadbd, the service, a TCP proxy.

Each process is started with its output piped through a reader thread that writes the log file
and sets an event on the line announcing readiness, so a start waits on that line (with a
timeout), never on a sleep. The control methods are blocking; async tests call them through
`asyncio.to_thread` so the clients keep running meanwhile.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pymysql  # type: ignore[import-untyped]  # no stubs in the venv
import redis

START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 30.0


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def require_binary(name: str, package: str) -> str:
    """The binary's path; installed with apt (as ./dev does) when missing, else a loud failure."""
    found = shutil.which(name) or next((p for p in (f"/usr/sbin/{name}", f"/usr/bin/{name}") if Path(p).exists()), None)
    if found:
        return found
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    subprocess.run([*sudo, "apt-get", "update", "-qq"], check=False, env=env)
    subprocess.run([*sudo, "apt-get", "install", "-y", "-qq", package], check=False, env=env)
    found = shutil.which(name) or next((p for p in (f"/usr/sbin/{name}",) if Path(p).exists()), None)
    if not found:
        raise RuntimeError(f"{name} is missing and `apt-get install {package}` did not provide it")
    return found


class Process:
    """One child process whose log is kept and whose readiness is a line in its output."""

    def __init__(self, name: str, argv: list[str], log_path: Path, ready_text: str, env: dict[str, str] | None = None):
        self.name, self.argv, self.log_path, self.ready_text, self.env = name, argv, log_path, ready_text, env
        self.proc: subprocess.Popen[bytes] | None = None
        self._ready = threading.Event()
        self._expected: dict[bytes, threading.Event] = {}  # later lines a caller waits for (expect)

    def expect(self, text: str) -> threading.Event:
        """An event set when a line holding `text` is logged from now on (call it before what causes it)."""
        return self._expected.setdefault(text.encode(), threading.Event())

    def start(self, timeout_s: float = START_TIMEOUT_S) -> None:
        """Start and wait for the ready line; raise with the log's tail if it never comes."""
        self._ready = threading.Event()
        self.proc = subprocess.Popen(
            self.argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=self.env, start_new_session=True
        )
        threading.Thread(target=self._pump, args=(self.proc, self._ready), daemon=True).start()
        atexit.register(self.kill)  # its own session outlives a test run that dies before the teardown
        if not self._ready.wait(timeout_s) or self.proc.poll() is not None:
            self.kill()
            how = f"exited with code {self.proc.returncode}" if self.proc.returncode is not None else "never got ready"
            raise RuntimeError(f"{self.name} {how} (waited up to {timeout_s}s):\n{self.tail()}")

    def _pump(self, proc: subprocess.Popen[bytes], ready: threading.Event) -> None:
        assert proc.stdout is not None
        with self.log_path.open("ab") as log:
            for line in proc.stdout:
                log.write(line)
                log.flush()
                if self.ready_text.encode() in line:
                    ready.set()
                for text, event in list(self._expected.items()):
                    if text in line:
                        event.set()
        proc.wait()  # EOF: the process ended (reaped first, so start() sees its exit code)
        ready.set()

    def signal(self, signum: int, timeout_s: float = STOP_TIMEOUT_S) -> int | None:
        """Send a signal and wait for the exit; SIGKILL after the timeout. The exit code."""
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.send_signal(signum)
        try:
            return self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise RuntimeError(f"{self.name} ignored signal {signum} for {timeout_s}s:\n{self.tail()}") from None

    def terminate(self) -> int | None:
        """SIGTERM and wait."""
        return self.signal(signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL and wait."""
        with contextlib.suppress(RuntimeError):
            self.signal(signal.SIGKILL)

    @property
    def running(self) -> bool:
        """Whether the process is alive."""
        return self.proc is not None and self.proc.poll() is None

    def tail(self, lines: int = 40) -> str:
        """The end of the log."""
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


class RedisServer:
    """A private redis-server; `--save ""` unless a case takes snapshots with SAVE."""

    def __init__(self, workdir: Path):
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        binary = require_binary("redis-server", "redis-server")
        argv = [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.dir),
                "--dbfilename", "dump.rdb", "--save", "", "--appendonly", "no", "--daemonize", "no"]
        self.process = Process("redis-server", argv, self.dir / "redis.log", "Ready to accept connections")

    @property
    def url(self) -> str:
        """redis:// URL of database 0."""
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def dump(self) -> Path:
        """The RDB file the server loads at start and writes on SAVE."""
        return self.dir / "dump.rdb"

    def start(self) -> None:
        """Start (loading dump.rdb when present)."""
        self.process.start()

    def crash(self) -> None:
        """SIGKILL: nothing is saved."""
        self.process.kill()

    def restart_empty(self) -> None:
        """Crash, lose every key, start again."""
        self.crash()
        self.dump.unlink(missing_ok=True)
        self.start()

    def save_snapshot(self) -> Path:
        """SAVE and keep a copy of the RDB file aside; its path."""
        client = redis.Redis.from_url(self.url)
        try:
            client.save()
        finally:
            client.close()
        copy = self.dir / "snapshot.rdb"
        shutil.copyfile(self.dump, copy)
        return copy

    def restart_from(self, snapshot: Path) -> None:
        """Crash and start again from an older snapshot."""
        self.crash()
        shutil.copyfile(snapshot, self.dump)
        self.start()


class MariaDB:
    """A private mariadbd in a temporary datadir (no grant tables: root from 127.0.0.1, no password)."""

    def __init__(self, workdir: Path):
        self.dir = workdir
        self.datadir = workdir / "data"
        self.port = free_port()
        install = require_binary("mariadb-install-db", "mariadb-server")
        server = require_binary("mariadbd", "mariadb-server")
        user = ["--user=root"] if os.geteuid() == 0 else []
        subprocess.run(
            [install, "--no-defaults", f"--datadir={self.datadir}", "--auth-root-authentication-method=normal",
             "--skip-test-db", *user],
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        argv = [server, "--no-defaults", f"--datadir={self.datadir}", f"--port={self.port}",
                f"--socket={workdir / 'mysqld.sock'}", "--bind-address=127.0.0.1", "--skip-grant-tables",
                "--skip-log-bin", "--innodb-buffer-pool-size=64M", "--max-connections=500", *user]
        self.process = Process("mariadbd", argv, workdir / "mariadbd.log", "ready for connections")

    def start(self) -> None:
        """Start and wait for `ready for connections`."""
        self.process.start()

    def stop(self) -> None:
        """A clean shutdown (SIGTERM)."""
        self.process.terminate()

    def restart(self) -> None:
        """Stop and start the same datadir on the same port."""
        self.stop()
        self.start()

    def connect(self, database: str | None = None) -> Any:  # a pymysql Connection (pymysql has no stubs here)
        """A pymysql connection (autocommit)."""
        return pymysql.connect(host="127.0.0.1", port=self.port, user="root", database=database, autocommit=True)

    def create_database(self, name: str) -> str:
        """A fresh database; its mysql:// URL (through `port` when a proxy stands in front)."""
        conn = self.connect()
        try:
            with conn.cursor() as cur:
                cur.execute(f"CREATE DATABASE {name} CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")
        finally:
            conn.close()
        return name


_PROBLEM = re.compile(r"Traceback|ERROR|CRITICAL|Exception")

SERVICE_ENV = {
    "AI_PROVIDER": "echo",
    "WS_RATE_LIMIT_COUNT": "1000000",
    "ROUTING": "auto",
    "AGENT_MAX_CHATS": "2",
    "PRESENCE_TTL_S": "3",
    "PRESENCE_GRACE_S": "4",
    "DB_POOL_SIZE": "20",
    "LOG_LEVEL": "INFO",
    # a crashed instance's AI turn lock runs out, and the unanswered-message sweep runs, within the settle wait
    "AI_TURN_LOCK_S": "3",
    "AI_SWEEP_INTERVAL_S": "1",
}


class Service:
    """`python -m chat serve` as a child process on its own port."""

    def __init__(self, name: str, workdir: Path, env: dict[str, str]):
        self.port = free_port()
        base = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR")}
        argv = [sys.executable, "-m", "chat", "serve", "--host", "127.0.0.1", "--port", str(self.port)]
        self.process = Process(name, argv, workdir / f"{name}.log", "Running on", {**base, **SERVICE_ENV, **env})

    @property
    def url(self) -> str:
        """http:// root."""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        """Start and wait for aiohttp's `Running on` line."""
        self.process.start()


class Services:
    """Start service instances for a case; their logs' problems are printed at the end."""

    def __init__(self, workdir: Path, base_env: dict[str, str]):
        self.workdir, self.base_env = workdir, base_env
        self.started: list[Service] = []

    async def start(self, name: str, **env: str) -> Service:
        """A new instance (own port), started and ready (in a thread: the test's loop may serve a proxy)."""
        service = Service(name, self.workdir, {**self.base_env, **env})
        await asyncio.to_thread(service.start)
        self.started.append(service)
        return service

    def stop(self) -> None:
        """Kill every instance; print the problem lines of their logs."""
        stop_all([s.process.kill for s in self.started])
        for s in self.started:
            lines = s.process.log_path.read_text(errors="replace").splitlines() if s.process.log_path.exists() else []
            problems = [line for line in lines if _PROBLEM.search(line)]
            print(f"[log] {s.process.name}: {len(lines)} lines, {len(problems)} problem lines ({s.process.log_path})")
            for line in problems[:8]:
                print(f"    {line[:220]}")


class TcpProxy:
    """A TCP relay in the test's loop that can add latency, stall, or drop every connection."""

    def __init__(self, target_port: int):
        self.target_port = target_port
        self.port = 0
        self.latency_s = 0.0
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        """Listen on a free port."""
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        """Stop listening and drop everything."""
        if self._server is not None:
            self._server.close()
        self.drop_all()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def stall(self, seconds: float) -> None:
        """Hold every byte in both directions for `seconds` (connections stay open)."""
        self._flowing.clear()
        asyncio.get_running_loop().call_later(seconds, self._flowing.set)

    async def resumed(self) -> None:
        """Wait until the current stall ends."""
        await self._flowing.wait()

    def drop_all(self) -> int:
        """Reset every relayed connection at once; how many were open."""
        writers = list(self._writers)
        for writer in writers:
            transport = writer.transport
            transport.abort()
        self._writers.clear()
        return len(writers) // 2

    async def _accept(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        try:
            server_r, server_w = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            client_w.transport.abort()
            return
        self._writers |= {client_w, server_w}
        for reader, writer in ((client_r, server_w), (server_r, client_w)):
            task = asyncio.create_task(self._pipe(reader, writer, (client_w, server_w)))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    pair: tuple[asyncio.StreamWriter, asyncio.StreamWriter]) -> None:
        try:
            while data := await reader.read(65536):
                await self._flowing.wait()
                if self.latency_s:
                    await asyncio.sleep(self.latency_s)  # the injected fault itself, not a wait in the test
                writer.write(data)
                await writer.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            for w in pair:
                self._writers.discard(w)
                w.transport.abort()


def stop_all(stoppers: list[Callable[[], object]]) -> None:
    """Run every stopper, ignoring the failures of ones already stopped."""
    for stop in stoppers:
        with contextlib.suppress(Exception):
            stop()
