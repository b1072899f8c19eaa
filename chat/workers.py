"""`chat-api serve --workers N`: N processes serving one port, under one supervising process.

Each worker is a whole instance (its own event loop, Redis and database connections, bus
listener), as an instance on another host would be: they share nothing but Redis and the
database, so an event published by one reaches the sockets of every other through the bus.
They all listen on the same address with SO_REUSEPORT, and the kernel spreads the incoming
connections over them.

Stopping: SIGTERM or SIGINT to the supervisor sends SIGTERM to every worker, once; each then
drains as a single instance does (stops accepting, finishes what it acknowledged, closes its
sockets), and the supervisor exits when all have. The workers have their own process group, so
a terminal's Ctrl-C reaches the supervisor alone and no worker gets a second signal mid-drain
(under systemd, KillMode=mixed does the same). A worker that exits by itself (a database that
stays unreachable at start, a crash) makes the supervisor stop the others: a half-sized service
is left to the process manager, which restarts the whole.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
from collections.abc import Callable
from contextlib import suppress
from multiprocessing.connection import wait
from multiprocessing.process import BaseProcess
from types import FrameType


def refusal(workers: int, *, shared: bool, port: int) -> str | None:
    """Why `--workers` cannot be used with these settings, or None (`shared`: a Redis server and a MySQL
    database, what the workers share)."""
    if workers < 1:
        return f"--workers must be 1 or more, got {workers}"
    if workers > 1 and not shared:
        return ("--workers needs REDIS_URL and a MySQL DATABASE_URL: without REDIS_URL each process would keep its "
                "own in-process Redis (no bus between them), and SQLite has a single writer")
    if workers > 1 and port == 0:
        return "--workers needs a fixed port (PORT or --port), not 0"
    return None


_STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT}


def _worker(serve: Callable[[], int]) -> None:
    os.setpgid(0, 0)  # a terminal's Ctrl-C reaches the supervisor only (see the module's docstring)
    # forked with the stop signals blocked and the supervisor's handler: the default until the
    # worker's loop handles them (a SIGTERM before that ends a worker that has accepted nothing)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)
    sys.exit(serve())


def supervise(count: int, serve: Callable[[], int]) -> int:
    """Run `serve` in `count` forked workers until they have all exited; the first non-zero exit
    code of a worker (1 for one killed by a signal), else 0."""
    context = multiprocessing.get_context("fork")  # before any loop or thread exists in this process
    workers: list[BaseProcess] = []
    stopping = False

    def stop(signum: int | None = None, frame: FrameType | None = None) -> None:
        nonlocal stopping
        if stopping:
            return
        stopping = True
        for worker in workers:  # not yet joined: a zombie at worst, so the pid is still its own
            if worker.pid is not None:
                with suppress(ProcessLookupError):
                    os.kill(worker.pid, signal.SIGTERM)

    previous = {signum: signal.signal(signum, stop) for signum in (signal.SIGTERM, signal.SIGINT)}
    try:
        for number in range(1, count + 1):
            if stopping:
                break
            worker = context.Process(target=_worker, args=(serve,), name=f"chat-api worker {number}")
            signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)  # none may reach the child's copy of stop()
            try:
                worker.start()
                workers.append(worker)
            finally:
                signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)  # one that came meanwhile: stop() now
        print(f"chat-api: supervisor pid {os.getpid()}, workers {[w.pid for w in workers]}; "
              "SIGTERM stops them all", flush=True)
        return _wait(workers, stop, lambda: stopping)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _wait(workers: list[BaseProcess], stop: Callable[[], None], stopping: Callable[[], bool]) -> int:
    code = 0
    pending = list(workers)
    while pending:
        ready = set(wait([worker.sentinel for worker in pending]))
        for worker in [w for w in pending if w.sentinel in ready]:
            worker.join()
            pending.remove(worker)
            exitcode = worker.exitcode or 0
            if exitcode and not code:
                code = exitcode if exitcode > 0 else 1
            if not stopping():
                print(f"chat-api: worker pid {worker.pid} exited with code {exitcode}: stopping the others",
                      file=sys.stderr, flush=True)
                stop()
    return code
