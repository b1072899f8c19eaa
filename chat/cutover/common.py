"""Helpers shared by the cut-over programs: exit codes, URL masking, argparse types, progress."""

from __future__ import annotations

import argparse
import math
import re
import sys
import time
from collections.abc import Callable
from typing import TextIO, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2

MASK = "***"

T = TypeVar("T")


class UsageError(Exception):
    """A bad argument found after parsing: the program says so and exits with EXIT_USAGE."""


def parse_checked(
    parser: argparse.ArgumentParser, argv: list[str] | None, check: Callable[[argparse.Namespace], T]
) -> T | None:
    """Parse ``argv`` and check what argparse cannot; None, after one line on stderr, on a UsageError."""
    args = parser.parse_args(argv)
    try:
        return check(args)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return None

# Query parameters that carry a secret in the URL forms redis-py and the MySQL drivers accept.
# A query parameter whose name holds one of these is a secret (password, auth_token, api_key...)
_SECRET_QUERY_WORDS = ("pass", "pwd", "secret", "token", "key", "auth", "credential")


def _secret_key(name: str) -> bool:
    return any(word in name.lower() for word in _SECRET_QUERY_WORDS)


_URL = re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s'\"]+")


def mask_urls_in(text: str) -> str:
    """`text` (a command line, say) with every URL in it masked as `mask_url` masks one."""
    return _URL.sub(lambda m: mask_url(m[0]), text)


def mask_url(url: str) -> str:
    """Return ``url`` with any password (userinfo or query parameter) replaced by ``***``."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        # Unparseable (a bad port, say): show only the scheme so nothing secret leaks.
        scheme = url.split(":", 1)[0] if ":" in url else ""
        return f"{scheme}://{MASK}" if scheme else MASK
    netloc = parts.netloc
    if password is not None:
        userinfo, _, hostinfo = netloc.rpartition("@")
        user = userinfo.split(":", 1)[0]
        netloc = f"{user}:{MASK}@{hostinfo}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(_secret_key(key) for key, _ in pairs):
            query = urlencode([(k, MASK if _secret_key(k) else v) for k, v in pairs], safe="*")
    if not netloc and parts.scheme and url.startswith(f"{parts.scheme}:///"):
        # sqlite:///path, unix:///tmp/redis.sock: no host; keep the path exactly (urlunsplit drops a
        # slash), but never a secret in the query (unix:///sock?password=...)
        if query == parts.query:
            return url
        rest = url[: url.index("?")] if "?" in url else url
        return f"{rest.split('#', 1)[0]}?{query}" + (f"#{parts.fragment}" if parts.fragment else "")
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def non_negative_float(text: str) -> float:
    """argparse type: a finite float >= 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text}")
    return value


def positive_float(text: str) -> float:
    """argparse type: a finite float > 0."""
    value = non_negative_float(text)
    if value == 0:
        raise argparse.ArgumentTypeError("must be > 0")
    return value


def percent(text: str) -> float:
    """argparse type: a percentage between 0 and 100."""
    value = non_negative_float(text)
    if value > 100:
        raise argparse.ArgumentTypeError(f"must be between 0 and 100, got {text}")
    return value


def format_duration(seconds: float) -> str:
    """``75.2`` -> ``"1m15s"``; short durations keep a decimal."""
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"


class Progress:
    """Progress on a stream: a redrawn bar on a terminal, a plain line every few seconds otherwise.

    ``fraction`` is an estimate in [0, 1] when the total is unknown up front (a SCAN), or
    None when there is no estimate at all; the bar then shows the count and rate only.
    """

    BAR_WIDTH = 30

    def __init__(
        self,
        label: str,
        stream: TextIO | None = None,
        *,
        interval_s: float | None = None,
        enabled: bool = True,
    ) -> None:
        self.label = label
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = enabled
        self.is_tty = bool(getattr(self.stream, "isatty", lambda: False)())
        # A terminal can take frequent redraws; a log file wants a line now and then.
        self.interval_s = interval_s if interval_s is not None else (0.1 if self.is_tty else 5.0)
        self.started = time.monotonic()
        self._last_emit = self.started
        self._drawn = False

    def update(self, count: int, fraction: float | None = None, *, force: bool = False) -> None:
        """Report ``count`` items done so far; draws only when the interval has passed."""
        if not self.enabled:
            return
        now = time.monotonic()
        if not force and now - self._last_emit < self.interval_s:
            return
        self._last_emit = now
        elapsed = now - self.started
        rate = count / elapsed if elapsed > 0 else 0.0
        if fraction is not None:
            fraction = min(max(fraction, 0.0), 1.0)
        if self.is_tty:
            self.stream.write("\r\033[K" + self._bar_text(count, fraction, rate, elapsed))
            self._drawn = True
        else:
            share = f" ~{fraction * 100:.0f}%" if fraction is not None else ""
            self.stream.write(
                f"{self.label}:{share} {count:,} done, {rate:,.0f}/s, {format_duration(elapsed)}\n"
            )
        self.stream.flush()

    def _bar_text(self, count: int, fraction: float | None, rate: float, elapsed: float) -> str:
        if fraction is None:
            return f"{self.label}: {count:,} {rate:,.0f}/s {format_duration(elapsed)}"
        filled = round(fraction * self.BAR_WIDTH)
        bar = "#" * filled + "-" * (self.BAR_WIDTH - filled)
        eta = ""
        if 0 < fraction < 1 and elapsed > 0.5:
            eta = f" eta {format_duration(elapsed * (1 - fraction) / fraction)}"
        return f"{self.label} [{bar}] ~{fraction * 100:3.0f}% {count:,} {rate:,.0f}/s{eta}"

    def close(self) -> None:
        """End the bar's line so later output starts on a fresh one."""
        if self.enabled and self.is_tty and self._drawn:
            self.stream.write("\n")
            self.stream.flush()
            self._drawn = False
