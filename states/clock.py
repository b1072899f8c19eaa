"""Time helpers: the record keeps ISO 8601 UTC strings, SQL keeps epoch milliseconds.

`now_ms` reads the wall clock through one replaceable source, so tests run the service in simulated
time (`SimulatedClock`): every transition, message and timer then agrees on what "now" is, and a
test moves it forward instead of sleeping.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_DAY_MS = 86_400_000


_wall_ns: Callable[[], int] = time.time_ns


def now_ms() -> int:
    """Wall-clock time in epoch milliseconds."""
    return _wall_ns() // 1_000_000


def set_wall_clock(source_ns: Callable[[], int] | None) -> None:
    """Read "now" from `source_ns` (epoch nanoseconds) from here on; None: the real clock again."""
    global _wall_ns  # noqa: PLW0603 (the one replaceable source of every now_ms)
    _wall_ns = source_ns or time.time_ns


class SimulatedClock:
    """Simulated time for tests: starts at the real now and moves only when told."""

    def __init__(self, start_ms: int | None = None) -> None:
        self.ms = time.time_ns() // 1_000_000 if start_ms is None else start_ms

    def __call__(self) -> int:
        """Now, in epoch ms."""
        return self.ms

    def ns(self) -> int:
        """Now, in epoch ns (what set_wall_clock reads)."""
        return self.ms * 1_000_000

    def advance(self, seconds: float) -> int:
        """Move forward; return the new now in epoch ms."""
        self.ms += int(seconds * 1000)
        return self.ms


@functools.lru_cache(maxsize=4096)
def _day_prefix(day: int) -> str:
    return (_EPOCH + timedelta(days=day)).date().isoformat()


def iso_from_ms(ms: int) -> str:
    """Epoch milliseconds -> ``YYYY-MM-DDTHH:MM:SS.mmmZ`` (ISO 8601 UTC), years 1 to 9999. The date
    part is cached per day: every message and record on the hot path is formatted here."""
    day, rest = divmod(ms, _DAY_MS)
    seconds, millis = divmod(rest, 1000)
    minutes, second = divmod(seconds, 60)
    hour, minute = divmod(minutes, 60)
    # %-formatting: a third faster than the equivalent f-string here.
    return "%sT%02d:%02d:%02d.%03dZ" % (_day_prefix(day), hour, minute, second, millis)  # noqa: UP031


def datetime_from_iso(text: str) -> datetime:
    """ISO 8601 (Z, offset, or naive meaning UTC) -> an aware datetime (ValueError if it is not one)."""
    value = text.strip()
    if value.endswith(("Z", "z")):
        value = value[:-1] + "+00:00"
    dt = datetime.fromisoformat(value)
    return dt if dt.tzinfo is not None else dt.replace(tzinfo=UTC)


def ms_from_iso(text: str) -> int:
    """ISO 8601 (Z, offset, or naive meaning UTC) -> epoch milliseconds (the nearest)."""
    dt = datetime_from_iso(text)
    return int(dt.timestamp() * 1000 + (0.5 if dt.timestamp() >= 0 else -0.5))


def now_iso() -> str:
    """Now as ISO 8601 UTC."""
    return iso_from_ms(now_ms())
