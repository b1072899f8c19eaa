"""The monitor against a health endpoint scripted to fail in patterns (issue 12.6, PROTOCOL 8):
one blip is no breach, N in a row is, a degraded AI provider is reported but is no outage, a slow
service shows in the latency figures. Local aiohttp servers on 127.0.0.1 only."""

from __future__ import annotations

import functools
import shlex

from aiohttp import web

from chat.cutover import monitor
from tests.cutover.test_monitor import read_jsonl, serve, ws_pong

HEALTHY = {"status": "ok", "checks": {"redis": "ok", "database": "ok"}}
DOWN = {"status": "degraded", "checks": {"redis": "fail", "database": "ok"}}
AI_ONLY = {"status": "degraded", "checks": {"redis": "ok", "database": "ok", "ai": "InvalidApiKey"}}


def scripted_app(pattern: str, ws_delay_s: float = 0.0) -> web.Application:
    """/health answers by ``pattern``, one character per poll: ``.`` healthy, ``X`` down, ``a`` AI only."""
    answers = iter(pattern)

    async def health(request: web.Request) -> web.Response:
        kind = next(answers)
        body = {".": HEALTHY, "X": DOWN, "a": AI_ONLY}[kind]
        return web.json_response(body, status=200 if kind == "." else 503)

    app = web.Application()
    app.router.add_get("/health", health)
    app.router.add_get("/ws", functools.partial(ws_pong, delay_s=ws_delay_s))
    return app


async def watch(aiohttp_server, tmp_path, pattern: str, *extra: str, ws_delay_s: float = 0.0):
    server = await serve(aiohttp_server, scripted_app(pattern, ws_delay_s))
    hook_log = tmp_path / "hook.log"
    jsonl = tmp_path / "monitor.jsonl"
    script = f'echo "$MONITOR_BREACH" >> {shlex.quote(str(hook_log))}'
    rc = await monitor.amain(
        ["--url", str(server.make_url("/")), "--count", str(len(pattern)), "--interval-s", "0",
         "--on-breach", script, "--jsonl", str(jsonl), *extra]
    )
    hooks = hook_log.read_text().splitlines() if hook_log.exists() else []
    return rc, hooks, read_jsonl(jsonl)


async def test_one_blip_is_not_a_breach(aiohttp_server, tmp_path, capsys):
    rc, hooks, entries = await watch(aiohttp_server, tmp_path, "....." + "X" + "." * 14)

    assert rc == 0
    assert hooks == []
    out = capsys.readouterr().out
    assert "BREACH" not in out
    assert "failed 1: availability 95.000 % / error rate 5.000 % (one count" in out
    assert entries[-1]["breach_count"] == 0 and entries[-1]["longest_failure_run"] == 1


async def test_n_failures_in_a_row_breach_once_per_breach(aiohttp_server, tmp_path, capsys):
    rc, hooks, entries = await watch(aiohttp_server, tmp_path, "...XXX....XX..XXXX.")

    assert rc == 1
    # Two runs of three or more: two breaches, the hook once each; the run of two is none.
    assert hooks == ["3 consecutive failed polls (>= 3)"] * 2
    breaches = [entry for entry in entries if entry["type"] == "breach"]
    assert [entry["seq"] for entry in breaches] == [6, 17]
    out = capsys.readouterr().out
    assert out.count("BREACH: ") == 2 and out.count("RECOVERED") == 2
    assert "result: BREACH (2 breach(es))" in out


async def test_failure_rate_over_the_window(aiohttp_server, tmp_path, capsys):
    # Never two in a row, but a quarter of the window fails.
    rc, hooks, _ = await watch(
        aiohttp_server, tmp_path, "...X" * 5, "--window", "20", "--window-max-error-rate", "10"
    )

    assert rc == 1
    assert hooks == ["25.0 % of the last 20 polls failed (> 10 %)"]


async def test_ai_degraded_only_is_reported_not_an_outage(aiohttp_server, tmp_path, capsys):
    rc, hooks, entries = await watch(aiohttp_server, tmp_path, "..aaaaaa..")

    assert rc == 0
    assert hooks == []
    out = capsys.readouterr().out
    assert out.count(" 503 ok ") == 6
    assert "AI provider degraded (not an outage)  (ai: InvalidApiKey)" in out
    assert "AI provider degraded in 6 poll(s)" in out
    assert entries[-1]["ai_degraded"] == 6 and entries[-1]["availability_pct"] == 100.0


async def test_slow_websocket_round_trip_shows_in_the_figures_and_breaches(aiohttp_server, tmp_path, capsys):
    # the pong comes 150 ms late, /health at once: far apart, so a loaded test machine (a /health answer
    # taking tens of ms) cannot make /health's p95 breach the 75 ms limit first (p95s need 20 polls)
    rc, hooks, entries = await watch(aiohttp_server, tmp_path, "." * 20, "--max-p95-ms", "75", ws_delay_s=0.15)

    assert rc == 1
    assert len(hooks) == 1 and hooks[0].startswith("WebSocket ping p95 ")
    polls = [entry for entry in entries if entry["type"] == "poll"]
    assert all(poll["ok"] and poll["ws_ms"] >= 150 for poll in polls)
    summary = entries[-1]
    assert summary["ws_p95_ms"] >= 150 and "p95_ms" in summary  # the two figures apart
    assert "WebSocket ping p50 " in capsys.readouterr().out


async def test_a_service_whose_websocket_fails_is_failing(aiohttp_server, tmp_path, capsys):
    app = web.Application()

    async def health(request: web.Request) -> web.Response:
        return web.json_response(HEALTHY)

    app.router.add_get("/health", health)  # no /ws: customers cannot connect
    server = await serve(aiohttp_server, app)

    rc = await monitor.amain(["--url", str(server.make_url("/")), "--count", "3", "--interval-s", "0"])

    assert rc == 1
    out = capsys.readouterr().out
    assert out.count(" 200 FAIL ") == 3 and "ws: WSServerHandshakeError" in out
