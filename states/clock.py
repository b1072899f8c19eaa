"""Time helpers: the record keeps ISO 8601 UTC strings, SQL keeps epoch milliseconds."""

from __future__ import annotations

import time
from datetime import UTC, datetime


def now_ms() -> int:
    """Wall-clock time in epoch milliseconds."""
    return time.time_ns() // 1_000_000


def iso_from_ms(ms: int) -> str:
    """Epoch milliseconds -> ISO 8601 UTC with millisecond precision and a Z."""
    dt = datetime.fromtimestamp(ms / 1000, tz=UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def ms_from_iso(text: str) -> int:
    """ISO 8601 (Z, offset, or naive meaning UTC) -> epoch milliseconds."""
    value = text.strip()
    if value.endswith(("Z", "z")):
        value = value[:-1] + "+00:00"
    dt = datetime.fromisoformat(value)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return int(dt.timestamp() * 1000 + (0.5 if dt.timestamp() >= 0 else -0.5))


def now_iso() -> str:
    """Now as ISO 8601 UTC."""
    return iso_from_ms(now_ms())
