"""What one migration run works with: its connections, its counters and its report."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from datetime import UTC, tzinfo

import orjson
import redis

from chat.cutover.migrate_redis.wire import Wire
from chat.cutover.records import Migrated

# How many problems are echoed on stderr before the rest go to the report only.
MAX_ECHOED_PROBLEMS = 20


@dataclass
class Stats:
    """Counters for the summary: every scanned key ends as one of converted to vanished."""

    scanned: int = 0
    converted: int = 0
    copied: int = 0
    unchanged: int = 0
    failed: int = 0
    not_string: int = 0
    target_conflict: int = 0
    vanished: int = 0
    defaulted_time: int = 0
    naive_time: int = 0
    dropped_fields: int = 0
    with_ttl: int = 0
    verified: int = 0
    verify_mismatch: int = 0
    verify_skipped: int = 0
    verify_known: int = 0  # sources the migration pass already reported (unconvertible, not a string)

    @property
    def unconvertible(self) -> int:
        """Source records that cannot be converted (what ``--max-failures`` may accept)."""
        return self.failed + self.not_string

    def problems(self, max_failures: int = 0) -> int:
        """Outcomes that make the run fail: unconvertible records beyond ``max_failures``, the rest always."""
        over = self.unconvertible if self.unconvertible > max_failures else 0
        return over + self.target_conflict + self.verify_mismatch


class Report:
    """JSON lines ``{"key", "reason", "code", "level"}``; the first few are echoed on stderr."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._fh = open(path, "wb")  # noqa: SIM115 - kept open for the whole run
        self.lines = 0
        self._echoed = 0

    def add(self, key: bytes, code: str, reason: str, level: str = "error") -> None:
        """Write one line (and echo it while fewer than MAX_ECHOED_PROBLEMS were)."""
        name = key.decode("utf-8", "backslashreplace")
        self._fh.write(
            orjson.dumps({"key": name, "reason": reason, "code": code, "level": level}) + b"\n"
        )
        self.lines += 1
        if self._echoed < MAX_ECHOED_PROBLEMS:
            print(f"{level}: {name}: {reason}", file=sys.stderr)
        elif self._echoed == MAX_ECHOED_PROBLEMS:
            print(f"... the rest only in {self.path}", file=sys.stderr)
        self._echoed += 1

    def close(self) -> None:
        """Close the file."""
        self._fh.close()


# What the summary counts of a written record (bits of an Item's last field).
COPIED = 1  # the source was in the new format already: its bytes are written as they are
DEFAULTED_TIME = 2  # no createdAt/updatedAt: the migration time stands in for both
NAIVE_TIME = 4  # a timestamp without an offset, read in the naive zone

# (key, the bytes to write, the source's PTTL, COPIED | DEFAULTED_TIME | NAIVE_TIME). Not the
# parsed record: keeping a batch of parsed records alive until its writes are acknowledged cost
# a third of the migration's time on 800-byte records (the garbage collector walked them, and
# every batch was parsed into fresh, cache-cold memory instead of the memory just freed).
Item = tuple[bytes, bytes, int, int]


def outcome(converted: Migrated) -> int:
    """The summary bits of one conversion."""
    return (
        (COPIED if converted.copied else 0)
        | (DEFAULTED_TIME if converted.defaulted_time else 0)
        | (NAIVE_TIME if converted.naive_time else 0)
    )


@dataclass
class Run:
    """Everything one invocation works with."""

    source: redis.Redis
    scan_wire: Wire  # SCAN on the source
    read_wire: Wire  # reads of source keys
    write_wire: Wire  # writes to the target (the source itself in place), and target reads
    in_place: bool
    pattern: str
    batch: int
    dry_run: bool
    force: bool
    now: str
    report: Report
    naive_tz: tzinfo = UTC  # timestamps without an offset are read in this zone
    max_failures: int = 0  # unconvertible records accepted (still reported)
    stats: Stats = field(default_factory=Stats)
