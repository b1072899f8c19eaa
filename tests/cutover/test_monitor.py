"""scripts/monitor.py against small local aiohttp servers (127.0.0.1 only)."""

from __future__ import annotations

import asyncio
import json
import shlex
import sys

import pytest
from aiohttp import web

from chat.cutover import health, monitor
from tests.cutover.support import REPO

HITS = web.AppKey("hits", list)


def health_app(
    status: int = 200, body: dict | None = None, delay_s: float = 0.0
) -> web.Application:
    body = (
        body if body is not None else {"status": "ok", "checks": {"redis": "ok", "database": "ok"}}
    )
    hits: list[str] = []

    async def health(request: web.Request) -> web.Response:
        hits.append(request.path)
        if delay_s:
            await asyncio.sleep(
                delay_s
            )  # the server is slow; the test itself never waits on a clock
        return web.json_response(body, status=status)

    app = web.Application()
    app.router.add_get("/health", health)
    app.router.add_get("/api/health", health)
    app.router.add_get("/ws", ws_pong)
    app.router.add_get("/api/ws", ws_pong)
    app[HITS] = hits
    return app


async def ws_pong(request: web.Request, delay_s: float = 0.0) -> web.WebSocketResponse:
    """The service's /ws as far as the monitor uses it: ``ping`` answered ``pong`` with its id."""
    ws = web.WebSocketResponse()
    await ws.prepare(request)
    async for message in ws:
        frame = json.loads(message.data)
        if frame.get("type") == "ping":
            if delay_s:
                await asyncio.sleep(delay_s)  # the server is slow; the test never waits on a clock
            await ws.send_json({"type": "pong", "id": frame.get("id")})
    return ws


async def serve(aiohttp_server, app: web.Application):
    return await aiohttp_server(app, host="127.0.0.1")


def read_jsonl(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


async def test_healthy_server(aiohttp_server, tmp_path, capsys):
    server = await serve(aiohttp_server, health_app())
    out_file = tmp_path / "monitor.jsonl"

    rc = await monitor.amain(
        [
            "--url",
            str(server.make_url("/")),
            "--count",
            "5",
            "--interval-s",
            "0",
            "--jsonl",
            str(out_file),
        ]
    )

    assert rc == 0
    assert server.app[HITS] == ["/health"] * 5
    out = capsys.readouterr().out
    assert out.count(" 200 ok ") == 5
    assert "availability 100.000 %" in out and "result: OK" in out
    entries = read_jsonl(out_file)
    assert [e["type"] for e in entries] == ["poll"] * 5 + ["summary"]
    assert all(e["ok"] and e["status"] == 200 and e["latency_ms"] > 0 for e in entries[:5])
    summary = entries[-1]
    assert summary["polls"] == 5 and summary["availability_pct"] == 100.0
    assert summary["error_rate_pct"] == 0.0 and summary["breaches"] == []
    assert 0 < summary["p50_ms"] <= summary["p95_ms"] <= summary["max_ms"]


async def test_url_already_ending_in_health_and_once(aiohttp_server, capsys):
    server = await serve(aiohttp_server, health_app())

    rc = await monitor.amain(["--url", str(server.make_url("/api/health")), "--once"])

    assert rc == 0
    assert server.app[HITS] == ["/api/health"]


async def test_failing_server_breaches_and_runs_the_hook(aiohttp_server, tmp_path, capsys):
    server = await serve(
        aiohttp_server,
        health_app(503, {"status": "degraded", "checks": {"redis": "down", "database": "ok"}}),
    )
    flag = tmp_path / "breached"
    script = (
        f"import os, pathlib; pathlib.Path({str(flag)!r}).write_text(os.environ['MONITOR_BREACH'])"
    )
    hook = f"{shlex.quote(sys.executable)} -c {shlex.quote(script)}"

    rc = await monitor.amain(
        [
            "--url",
            str(server.make_url("")),
            "--count",
            "3",
            "--interval-s",
            "0",
            "--on-breach",
            hook,
        ]
    )

    assert rc == 1
    out = capsys.readouterr().out
    assert out.count(" 503 FAIL ") == 3
    assert "HTTP 503, status 'degraded'  (redis: down)" in out
    assert "availability 0.000 %" in out and "consecutive failures 3" in out
    assert "result: BREACH (1 breach(es))" in out
    assert flag.read_text() == "3 consecutive failed polls (>= 3)"


async def test_slow_server_breaches_p95(aiohttp_server, tmp_path, capsys):
    server = await serve(aiohttp_server, health_app(delay_s=0.05))
    flag = tmp_path / "slow"

    rc = await monitor.amain(
        [
            "--url",
            str(server.make_url("/")),
            "--count",
            "20",
            "--interval-s",
            "0",
            "--max-p95-ms",
            "20",
            "--on-breach",
            f"touch {shlex.quote(str(flag))}",
        ]
    )

    assert rc == 1
    out = capsys.readouterr().out
    assert out.count(" 200 ok ") == 20  # healthy answers, just too slow
    assert "breach: p95 latency" in out and "> 20 ms" in out
    assert flag.exists()


async def test_the_hook_command_is_shown_without_its_passwords(aiohttp_server, capsys):
    server = await serve(aiohttp_server, health_app(500, {"status": "error"}))
    hook = ("true --redis-url 'redis://:S3cret@h:6379/1' --reverse-target redis://u:p%40ss@h2:6379/0 "
            "--database-url 'mysql://h/db?password=qu3ry'")

    rc = await monitor.amain(["--url", str(server.make_url("/")), "--count", "3", "--interval-s", "0",
                              "--on-breach", hook])

    assert rc == 1
    captured = capsys.readouterr()
    shown = captured.out + captured.err
    assert "running --on-breach command: true --redis-url 'redis://:***@h:6379/1'" in shown
    assert "S3cret" not in shown and "p%40ss" not in shown and "qu3ry" not in shown


async def test_hook_runs_once_however_many_polls_breach(aiohttp_server, tmp_path, capsys):
    server = await serve(aiohttp_server, health_app(500, {"status": "error"}))
    log = tmp_path / "hook.log"

    rc = await monitor.amain(
        [
            "--url",
            str(server.make_url("/")),
            "--count",
            "6",
            "--interval-s",
            "0",
            "--min-polls",
            "2",
            "--fail-after",
            "2",
            "--on-breach",
            f"echo fired >> {shlex.quote(str(log))}",
        ]
    )

    assert rc == 1
    assert log.read_text() == "fired\n"
    out = capsys.readouterr().out
    assert out.count("BREACH: ") == 1
    # Detected at the second poll, not only at the end.
    lines = out.splitlines()
    assert lines.index(next(line for line in lines if line.startswith("BREACH"))) == 2


async def test_min_polls_holds_judgement_until_the_end(aiohttp_server, tmp_path, capsys):
    responses = iter([503, 200, 200, 200])

    async def flaky(request):
        status = next(responses)
        return web.json_response({"status": "ok" if status == 200 else "degraded"}, status=status)

    app = web.Application()
    app.router.add_get("/health", flaky)
    server = await serve(aiohttp_server, app)

    rc = await monitor.amain(
        [
            "--url",
            str(server.make_url("/")),
            "--count",
            "4",
            "--interval-s",
            "0",
            "--no-ws",
            "--min-availability",
            "70",
            "--max-error-rate",
            "30",
        ]
    )

    assert rc == 0  # 75 % over the run: the early failure alone (0 % after one poll) is not judged
    assert "consecutive failures 0 (longest run 1)" in capsys.readouterr().out


async def test_timeout_and_refused_connections_fail(aiohttp_server, unused_tcp_port, capsys):
    server = await serve(aiohttp_server, health_app(delay_s=5))

    rc = await monitor.amain(["--url", str(server.make_url("/")), "--once", "--timeout-s", "0.2"])
    assert rc == 1
    assert "timeout after 0.2 s" in capsys.readouterr().out

    rc = await monitor.amain(["--url", f"http://127.0.0.1:{unused_tcp_port}", "--once"])
    assert rc == 1
    out = capsys.readouterr().out
    assert "--- FAIL" in out and "ClientConnectorError" in out


async def test_non_json_answer_is_a_failure(aiohttp_server, capsys):
    async def html(request):
        return web.Response(text="<html>ok</html>", content_type="text/html")

    app = web.Application()
    app.router.add_get("/health", html)
    server = await serve(aiohttp_server, app)

    assert await monitor.amain(["--url", str(server.make_url("/")), "--once"]) == 1
    assert "body is not a JSON object" in capsys.readouterr().out


async def test_password_in_url_is_masked(aiohttp_server, tmp_path, capsys):
    server = await serve(aiohttp_server, health_app())
    url = f"http://admin:s3cr3t-pw@127.0.0.1:{server.port}/"
    out_file = tmp_path / "m.jsonl"

    assert await monitor.amain(["--url", url, "--once", "--jsonl", str(out_file)]) == 0

    captured = capsys.readouterr()
    assert "s3cr3t" not in captured.out + captured.err + out_file.read_text()
    assert "admin:***@" in captured.out


async def test_usage_errors(capsys):
    assert await monitor.amain(["--url", "ftp://example.invalid/"]) == 2
    for bad in (
        ["--count", "0"],
        ["--interval-s", "-1"],
        ["--once", "--count", "2"],
        ["--max-error-rate", "101"],
    ):
        with pytest.raises(SystemExit) as exc:
            await monitor.amain(["--url", "http://127.0.0.1:1/", *bad])
        assert exc.value.code == 2


async def test_runs_as_a_script(aiohttp_server):
    server = await serve(aiohttp_server, health_app())
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "scripts/monitor.py",
        "--url",
        str(server.make_url("/")),
        "--count",
        "2",
        "--interval-s",
        "0",
        cwd=REPO,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await process.communicate()

    assert process.returncode == 0, stderr.decode()
    assert stdout.decode().count(" 200 ok ") == 2
    assert "result: OK" in stdout.decode()


def test_percentile_is_nearest_rank():
    values = sorted(float(v) for v in range(1, 101))
    assert health.percentile(values, 50) == 50.0
    assert health.percentile(values, 95) == 95.0
    assert health.percentile([7.0], 95) == 7.0


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://h:8000", "http://h:8000/health"),
        ("http://h:8000/", "http://h:8000/health"),
        ("https://h/chat/", "https://h/chat/health"),
        ("http://h/health", "http://h/health"),
        ("http://h/health/", "http://h/health"),
    ],
)
def test_health_url(url, expected):
    assert health.health_url(url) == expected


def test_error_messages_never_carry_the_password():
    url = "http://admin:s3cr%40t@127.0.0.1:1/health"
    assert health._scrub("failed GET http://admin:s3cr%40t@127.0.0.1:1", url) == (
        "failed GET http://admin:***@127.0.0.1:1"
    )
    assert health._scrub("password s3cr@t", url) == "password ***"
