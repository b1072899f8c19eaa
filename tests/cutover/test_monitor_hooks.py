"""The monitor's --on-breach commands: Ctrl-C leaves them alone, their exit is reported at once.

Real short child processes; the tests wait on pipes and processes, never on a clock.
"""

from __future__ import annotations

import asyncio
import os
import shlex
import signal
import sys
from pathlib import Path

from aiohttp import web

from chat.cutover import monitor
from tests.cutover.support import REPO
from tests.cutover.test_monitor import health_app, read_jsonl, serve


async def read_until(stream: asyncio.StreamReader, text: str, seen: list[str]) -> None:
    """Read lines into ``seen`` until one contains ``text``."""
    while True:
        line = (await stream.readline()).decode()
        assert line, f"{text!r} never printed; saw {seen}"
        seen.append(line)
        if text in line:
            return


class GatedHook:
    """An --on-breach command that says it started (its pid, through a FIFO), blocks until the test writes
    to another FIFO, then says it finished: the test waits on the FIFO and on the process, not on a clock."""

    def __init__(self, tmp_path: Path) -> None:
        started, self.gate, self.finished = tmp_path / "started", tmp_path / "gate", tmp_path / "finished"
        os.mkfifo(started)
        os.mkfifo(self.gate)
        # opened before the hook writes: its `echo` does not wait for a reader, and nothing is read before it
        self._started = os.open(started, os.O_RDONLY | os.O_NONBLOCK)
        q = shlex.quote
        # Its output elsewhere: the monitor's pipes close when the monitor ends, whatever the hook does.
        self.command = (f"exec >/dev/null 2>&1; echo $$ > {q(str(started))}; read line < {q(str(self.gate))}; "
                        f"touch {q(str(self.finished))}")
        self.pid = 0

    async def started(self) -> int:
        """Wait until the hook runs; its pid."""
        reader = asyncio.StreamReader()
        loop = asyncio.get_running_loop()
        transport, _ = await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader),
                                                    os.fdopen(self._started, "rb", buffering=0))
        try:
            self.pid = int(await reader.readline())
        finally:
            transport.close()
        return self.pid

    async def release(self) -> bool:
        """Let the hook go on and wait for it to end; False when it had been killed before it could finish."""
        try:
            pidfd = os.pidfd_open(self.pid)
        except ProcessLookupError:
            return self.finished.exists()
        gate = os.open(self.gate, os.O_RDWR | os.O_NONBLOCK)  # a FIFO open for both ends never waits
        loop = asyncio.get_running_loop()
        ended = loop.create_future()
        loop.add_reader(pidfd, lambda: ended.done() or ended.set_result(None))
        try:
            os.write(gate, b"go\n")
            await ended  # pidfd readable: the process is gone
        finally:
            loop.remove_reader(pidfd)
            os.close(pidfd)
            os.close(gate)
        return self.finished.exists()


async def start_monitor(url: str, hook: str, tmp_path: Path, *polls: str) -> asyncio.subprocess.Process:
    """`scripts/monitor.py` until Ctrl-C (or `polls`, e.g. --count 1), in a process group of its own (a
    terminal's, for the test)."""
    return await asyncio.create_subprocess_exec(
        sys.executable, "scripts/monitor.py", "--url", url, *(polls or ("--interval-s", "0.05")), "--fail-after",
        "1", "--no-ws", "--on-breach", hook, cwd=REPO, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, start_new_session=True,
    )


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def test_ctrl_c_waits_for_the_running_hook_and_does_not_kill_it(aiohttp_server, tmp_path):
    server = await serve(aiohttp_server, health_app(503, {"status": "down"}))
    hook = GatedHook(tmp_path)
    process = await start_monitor(str(server.make_url("/")), hook.command, tmp_path)
    assert process.stderr is not None and process.stdout is not None
    pid = await hook.started()
    os.killpg(process.pid, signal.SIGINT)  # Ctrl-C: the whole foreground process group

    seen: list[str] = []
    await read_until(process.stderr, "waiting for the --on-breach command", seen)
    assert await hook.release(), "the hook was killed by the Ctrl-C"
    out, err = await process.communicate()

    assert hook.finished.exists()
    assert f"--on-breach command (pid {pid}) exited with 0" in "".join(seen) + err.decode()
    assert "result: BREACH (1 breach(es))" in out.decode()
    assert process.returncode == 1


async def test_a_second_ctrl_c_leaves_the_hook_running_and_names_it(aiohttp_server, tmp_path):
    server = await serve(aiohttp_server, health_app(503, {"status": "down"}))
    hook = GatedHook(tmp_path)
    process = await start_monitor(str(server.make_url("/")), hook.command, tmp_path)
    assert process.stderr is not None
    pid = await hook.started()
    os.killpg(process.pid, signal.SIGINT)
    seen: list[str] = []
    await read_until(process.stderr, "Ctrl-C again to leave it running", seen)
    os.killpg(process.pid, signal.SIGINT)
    try:
        await read_until(process.stderr, f"--on-breach command (pid {pid}) left running", seen)
        assert await process.wait() == 1  # the monitor is gone ...
        assert alive(pid) and not hook.finished.exists()  # ... its hook is not
    finally:
        released = await hook.release()
    assert released  # it went on to its end when let
    out, _ = await process.communicate()
    assert "result: BREACH (1 breach(es))" in out.decode()


async def test_a_hook_exit_is_reported_at_the_next_poll(aiohttp_server, tmp_path, capsys, monkeypatch):
    hooks: list[asyncio.subprocess.Process] = []
    start_shell = asyncio.create_subprocess_shell

    async def recording_shell(*args, **kwargs):
        hooks.append(await start_shell(*args, **kwargs))
        return hooks[-1]

    monkeypatch.setattr(asyncio, "create_subprocess_shell", recording_shell)
    async def after_the_hook(request: web.Request) -> web.Response:
        if hooks:  # the polls after the breach are answered once the hook has ended
            await hooks[0].wait()
        return web.json_response({"status": "down"}, status=503)

    app = web.Application()
    app.router.add_get("/health", after_the_hook)
    server = await serve(aiohttp_server, app)
    jsonl = tmp_path / "m.jsonl"

    rc = await monitor.amain(["--url", str(server.make_url("/")), "--count", "4", "--interval-s", "0",
                              "--fail-after", "1", "--no-ws", "--on-breach", "true", "--jsonl", str(jsonl)])

    assert rc == 1
    records = [r for r in read_jsonl(jsonl) if r["type"] == "hook"]
    assert records == [{"type": "hook", "pid": hooks[0].pid, "exit_code": 0, "seq": 2}]
    assert f"--on-breach command (pid {hooks[0].pid}) exited with 0 (seen after poll 2)" in capsys.readouterr().err


async def test_after_the_last_poll_one_ctrl_c_leaves_the_hook_running(aiohttp_server, tmp_path):
    """--count: the polls end by themselves while the hook runs; the operator's first Ctrl-C is the one that
    stops waiting for it (no Ctrl-C ended the polls)."""
    server = await serve(aiohttp_server, health_app(503, {"status": "down"}))
    hook = GatedHook(tmp_path)
    process = await start_monitor(str(server.make_url("/")), hook.command, tmp_path, "--count", "1")
    assert process.stderr is not None
    pid = await hook.started()
    seen: list[str] = []
    await read_until(process.stderr, "Ctrl-C again to leave it running", seen)
    os.killpg(process.pid, signal.SIGINT)
    try:
        await read_until(process.stderr, f"--on-breach command (pid {pid}) left running", seen)
        assert await process.wait() == 1
    finally:
        assert await hook.release()
