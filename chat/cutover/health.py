"""One poll of the health endpoint, and the figures the monitor keeps over all of them."""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

import aiohttp

from chat.cutover.common import MASK, mask_url
from states.clock import now_iso


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

    def line(self) -> str:
        status = str(self.status) if self.status is not None else "---"
        latency = f"{self.latency_ms:8.1f} ms" if self.latency_ms is not None else "        -   "
        verdict = "ok  " if self.ok else "FAIL"
        detail = ""
        if self.error:
            detail = f"  {self.error}"
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
    said = f"status {reported!r}" if isinstance(reported, str) else "no status field"
    return Poll(seq, stamp, status, latency_ms, False, http + said, failing)


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
    """Running figures over all polls so far."""

    polls: int = 0
    ok: int = 0
    consecutive_failures: int = 0
    longest_failure_run: int = 0
    latencies_ms: list[float] = field(default_factory=list)

    def add(self, poll: Poll) -> None:
        self.polls += 1
        if poll.ok:
            self.ok += 1
            self.consecutive_failures = 0
        else:
            self.consecutive_failures += 1
            self.longest_failure_run = max(self.longest_failure_run, self.consecutive_failures)
        if poll.latency_ms is not None:
            self.latencies_ms.append(poll.latency_ms)

    @property
    def availability(self) -> float:
        """Share of polls answered healthy, in percent."""
        return 100.0 * self.ok / self.polls if self.polls else 0.0

    @property
    def error_rate(self) -> float:
        """Share of polls that failed, in percent (the complement of availability here)."""
        return 100.0 * (self.polls - self.ok) / self.polls if self.polls else 0.0

    def latency(self, q: float) -> float | None:
        return percentile(sorted(self.latencies_ms), q) if self.latencies_ms else None

    def figures(self) -> dict[str, Any]:
        return {
            "polls": self.polls,
            "ok": self.ok,
            "availability_pct": round(self.availability, 4),
            "error_rate_pct": round(self.error_rate, 4),
            "p50_ms": _round(self.latency(50)),
            "p95_ms": _round(self.latency(95)),
            "max_ms": _round(max(self.latencies_ms, default=None)),
            "consecutive_failures": self.consecutive_failures,
            "longest_failure_run": self.longest_failure_run,
        }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


@dataclass(frozen=True)
class Thresholds:
    min_availability: float
    max_p95_ms: float
    max_error_rate: float

    def breaches(self, stats: Stats) -> list[str]:
        """What is out of bounds, in words; empty when all is well."""
        found = []
        if stats.availability < self.min_availability:
            found.append(f"availability {stats.availability:.3f} % < {self.min_availability:g} %")
        p95 = stats.latency(95)
        if p95 is not None and p95 > self.max_p95_ms:
            found.append(f"p95 latency {p95:.1f} ms > {self.max_p95_ms:g} ms")
        if stats.error_rate > self.max_error_rate:
            found.append(f"error rate {stats.error_rate:.3f} % > {self.max_error_rate:g} %")
        return found
