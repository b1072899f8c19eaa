"""One poll of the health endpoint (and a WebSocket ping), and the figures the monitor keeps.

PROTOCOL 8: a poll fails when the service does not answer healthy; a 503 whose only failing
check is ``ai`` (the AI provider degraded, say a bad key: chat/api/health.py) is reported but is
not an outage. Breaches need ``fail_after`` consecutive failures or a failure rate over a full
sliding window; availability and error rate are one count (each the other's complement).
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

import aiohttp

from chat.cutover.common import MASK, mask_url
from states.clock import now_iso

# With fewer samples, "p95" is the slowest single request: one slow blip is not a breach.
MIN_LATENCY_SAMPLES = 20


def ws_url(health: str) -> str:
    """The service's ``/ws`` beside its ``/health`` (ws:// or wss://)."""
    parts = urlsplit(health)
    path = parts.path[: -len("/health")] if parts.path.endswith("/health") else parts.path.rstrip("/")
    scheme = "wss" if parts.scheme == "https" else "ws"
    return urlunsplit((scheme, parts.netloc, path + "/ws", "", ""))


def health_url(url: str) -> str:
    """``{URL}/health`` for a service root; a URL already ending in /health is kept."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an http(s) URL: {mask_url(url)}")
    path = parts.path.rstrip("/")
    if not path.endswith("/health"):
        path += "/health"
    return urlunsplit((parts.scheme, parts.netloc, path, parts.query, ""))


@dataclass
class Poll:
    """One request to the health endpoint."""

    seq: int
    time: str
    status: int | None  # None: no HTTP response at all
    latency_ms: float | None  # None: failed before any response (refused, DNS, ...)
    ok: bool
    error: str | None = None
    failing_checks: dict[str, Any] = field(default_factory=dict)
    ai_degraded: bool = False  # only the AI check fails: reported, the service is up
    ws_ms: float | None = None  # WebSocket ping -> pong round trip

    def line(self) -> str:
        status = str(self.status) if self.status is not None else "---"
        latency = f"{self.latency_ms:8.1f} ms" if self.latency_ms is not None else "        -   "
        verdict = "ok  " if self.ok else "FAIL"
        detail = f"  ws {self.ws_ms:.1f} ms" if self.ws_ms is not None else ""
        if self.error:
            detail += f"  {self.error}"
        if self.failing_checks:
            detail += "  (" + ", ".join(f"{k}: {v}" for k, v in self.failing_checks.items()) + ")"
        return f"{self.time} #{self.seq:<5} {status} {verdict} {latency}{detail}"


async def poll_once(session: aiohttp.ClientSession, url: str, seq: int, timeout_s: float) -> Poll:
    """GET the health URL once and classify the answer."""
    stamp = now_iso()
    started = time.perf_counter()
    try:
        async with session.get(url, timeout=aiohttp.ClientTimeout(total=timeout_s)) as response:
            body = await response.read()
            status = response.status
    except TimeoutError:
        # A hung service is slow as well as down: its wait counts in the latency figures.
        waited = (time.perf_counter() - started) * 1000
        return Poll(seq, stamp, None, waited, False, f"timeout after {timeout_s:g} s")
    except aiohttp.ClientError as exc:
        return Poll(seq, stamp, None, None, False, _scrub(f"{type(exc).__name__}: {exc}", url))
    latency_ms = (time.perf_counter() - started) * 1000

    http = "" if status == 200 else f"HTTP {status}, "
    try:
        document = json.loads(body)
    except ValueError:
        document = None
    if not isinstance(document, dict):
        return Poll(seq, stamp, status, latency_ms, False, http + "body is not a JSON object")
    reported = document.get("status")
    checks = document.get("checks")
    failing = {k: v for k, v in checks.items() if v != "ok"} if isinstance(checks, dict) else {}
    if status == 200 and reported == "ok":
        return Poll(seq, stamp, status, latency_ms, True, None, failing)
    if failing and set(failing) == {"ai"}:
        # The AI provider is degraded (a bad key, say): customers still reach the service.
        return Poll(seq, stamp, status, latency_ms, True, "AI provider degraded (not an outage)", failing, True)
    said = f"status {reported!r}" if isinstance(reported, str) else "no status field"
    return Poll(seq, stamp, status, latency_ms, False, http + said, failing)


async def ping_ws(session: aiohttp.ClientSession, url: str, timeout_s: float) -> tuple[float | None, str | None]:
    """Open ``url``, send ``{"type": "ping"}`` (answered before authentication, PROTOCOL 3.1) and
    time the round trip to the pong: ``(ms, None)`` or ``(None, why it failed)``."""
    try:
        async with asyncio.timeout(timeout_s), session.ws_connect(url, autoping=False) as ws:
            started = time.perf_counter()
            await ws.send_str('{"type": "ping", "id": 1}')
            while True:
                message = await ws.receive()
                if message.type != aiohttp.WSMsgType.TEXT:
                    return None, f"ws: closed before the pong ({message.type.name})"
                if '"pong"' in message.data:
                    return (time.perf_counter() - started) * 1000, None
    except TimeoutError:
        return None, f"ws: no pong within {timeout_s:g} s"
    except aiohttp.ClientError as exc:
        return None, _scrub(f"ws: {type(exc).__name__}: {exc}", url)


def _scrub(text: str, url: str) -> str:
    """``text`` without the URL's password, should an error message quote the URL."""
    password = urlsplit(url).password
    if not password:
        return text
    return text.replace(password, MASK).replace(unquote(password), MASK)


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an already sorted, non-empty list."""
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


@dataclass
class Stats:
    """Running figures: over the whole run, and over the last ``window`` polls."""

    window: int = 100
    polls: int = 0
    ok: int = 0
    ai_degraded: int = 0
    consecutive_failures: int = 0
    longest_failure_run: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    ws_ms: list[float] = field(default_factory=list)
    recent: deque[Poll] = field(default_factory=deque)

    def add(self, poll: Poll) -> None:
        self.polls += 1
        self.recent.append(poll)
        if len(self.recent) > self.window:
            self.recent.popleft()
        self.ai_degraded += poll.ai_degraded
        if poll.ok:
            self.ok += 1
            self.consecutive_failures = 0
        else:
            self.consecutive_failures += 1
            self.longest_failure_run = max(self.longest_failure_run, self.consecutive_failures)
        if poll.latency_ms is not None:
            self.latencies_ms.append(poll.latency_ms)
        if poll.ws_ms is not None:
            self.ws_ms.append(poll.ws_ms)

    @property
    def availability(self) -> float:
        """Share of polls answered healthy, in percent (the error rate is 100 minus this)."""
        return 100.0 * self.ok / self.polls if self.polls else 0.0

    @property
    def error_rate(self) -> float:
        """Share of polls that failed, in percent: the same count as availability, not another."""
        return 100.0 - self.availability if self.polls else 0.0

    def window_error_rate(self) -> float | None:
        """Failed share of the last ``window`` polls, in percent; None until the window is full."""
        if len(self.recent) < self.window:
            return None
        return 100.0 * sum(not poll.ok for poll in self.recent) / self.window

    def latency(self, q: float) -> float | None:
        return percentile(sorted(self.latencies_ms), q) if self.latencies_ms else None

    def window_p95(self, ws: bool = False) -> float | None:
        """p95 over the window's polls (health or WebSocket); None with too few samples."""
        values = sorted(
            value for poll in self.recent if (value := poll.ws_ms if ws else poll.latency_ms) is not None
        )
        return percentile(values, 95) if len(values) >= MIN_LATENCY_SAMPLES else None

    def figures(self) -> dict[str, Any]:
        ws = sorted(self.ws_ms)
        return {
            "polls": self.polls,
            "ok": self.ok,
            "availability_pct": round(self.availability, 4),
            "error_rate_pct": round(self.error_rate, 4),
            "ai_degraded": self.ai_degraded,
            "p50_ms": _round(self.latency(50)),
            "p95_ms": _round(self.latency(95)),
            "max_ms": _round(max(self.latencies_ms, default=None)),
            "ws_p50_ms": _round(percentile(ws, 50) if ws else None),
            "ws_p95_ms": _round(percentile(ws, 95) if ws else None),
            "consecutive_failures": self.consecutive_failures,
            "longest_failure_run": self.longest_failure_run,
        }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


@dataclass(frozen=True)
class Thresholds:
    """When the service is in breach (PROTOCOL 8), and the guide's SLO for the whole run."""

    fail_after: int
    window_max_error_rate: float
    max_p95_ms: float
    min_availability: float
    max_error_rate: float

    def breaches(self, stats: Stats) -> list[str]:
        """What is out of bounds now, in words; empty when all is well. One blip never is."""
        found = []
        if stats.consecutive_failures >= self.fail_after:
            found.append(f"{stats.consecutive_failures} consecutive failed polls (>= {self.fail_after})")
        rate = stats.window_error_rate()
        if rate is not None and rate > self.window_max_error_rate:
            found.append(
                f"{rate:.1f} % of the last {stats.window} polls failed (> {self.window_max_error_rate:g} %)"
            )
        for label, ws in (("p95 latency", False), ("WebSocket ping p95", True)):
            p95 = stats.window_p95(ws)
            if p95 is not None and p95 > self.max_p95_ms:
                found.append(f"{label} {p95:.1f} ms > {self.max_p95_ms:g} ms")
        return found

    def slo_missed(self, stats: Stats) -> bool:
        """The guide's availability / error-rate SLO over the whole run (one count, two names)."""
        return stats.availability < self.min_availability or stats.error_rate > self.max_error_rate
