"""Convert the old Node.js session records in Redis into the chat-api live record (PROTOCOL 5).

Old: ``session:{id}`` = ``{"userId", "agent", "context", "metadata"?, "createdAt"?, "updatedAt"?}``.
New: ``{"user_id", "agent_type", "context", "created_at", "updated_at", "state", "version",
"agent_id", "team_id", "metadata"}``. Each key keeps its remaining TTL. Records that cannot be
converted are written to a JSON-lines report and make the exit code non-zero.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple, TypeVar

_HERE = os.path.dirname(os.path.abspath(__file__))
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

import orjson  # noqa: E402
import redis  # noqa: E402
from _common import (  # noqa: E402
    EXIT_FAILURE,
    EXIT_OK,
    EXIT_USAGE,
    Progress,
    format_duration,
    mask_url,
    positive_int,
)

DEFAULT_SOURCE = "redis://localhost:6379/0"
DEFAULT_TARGET = "redis://localhost:6379/1"
DEFAULT_PATTERN = "session:*"
DEFAULT_BATCH = 1000
DEFAULT_REPORT = "migrate_redis_report.jsonl"

AGENT_TYPES = ("ai", "human")
# The service refuses longer user ids when it loads a record (states/record.py).
MAX_USER_ID_LENGTH = 64
OLD_FIELDS = frozenset({"userId", "agent", "context", "metadata", "createdAt", "updatedAt"})
TIMESTAMP_FIELDS = ("created_at", "updated_at")

# How many problems are echoed on stderr before the rest go to the report only.
MAX_ECHOED_PROBLEMS = 20

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_MS = timedelta(milliseconds=1)
_EPOCH_MS = re.compile(r"[+-]?\d+(?:\.\d*)?")
_MIN_EPOCH_MS = -62_135_596_800_000  # 0001-01-01T00:00:00.000Z
_MAX_EPOCH_MS = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z
_DAY_MS = 86_400_000
# 19 or more digits in a row: possibly an integer orjson would read as a float
_LONG_INTEGER = re.compile(rb"\d{19,}")
_day_prefixes: dict[int, str] = {}  # epoch day -> "YYYY-MM-DD", see format_epoch_ms


class ConversionError(Exception):
    """A record that cannot be turned into the new format; ``code`` names the kind."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


# --------------------------------------------------------------------------- conversion


def format_timestamp(moment: datetime) -> str:
    """An aware datetime as ISO 8601 UTC with milliseconds and a ``Z``."""
    return format_epoch_ms((moment - _EPOCH) // _ONE_MS)


def parse_timestamp(value: Any, name: str) -> str | None:
    """An old ``createdAt``/``updatedAt`` as ``YYYY-MM-DDTHH:MM:SS.mmmZ``; None when absent.

    Accepts ISO 8601 strings (an offset is converted to UTC, no offset means UTC) and epoch
    milliseconds as a number or a numeric string.
    """
    if type(value) is int and _MIN_EPOCH_MS <= value <= _MAX_EPOCH_MS:
        return format_epoch_ms(value)  # Date.now(), the other common case
    if value is None or value == "":
        return None
    if isinstance(value, str):
        if _is_canonical_layout(value):
            # JavaScript's toISOString() form, the common case: valid as it is if it parses.
            try:
                datetime.fromisoformat(value)
                return value
            except ValueError:
                raise ConversionError(
                    "bad_timestamp", f"{name} is not a valid date: {_preview(value)}"
                ) from None
        text = value.strip()
        if _EPOCH_MS.fullmatch(text):
            return _from_epoch_ms(float(text) if "." in text else int(text), name)
        try:
            moment = datetime.fromisoformat(text)
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=UTC)
            return format_timestamp(moment)
        except (ValueError, OverflowError):
            raise ConversionError(
                "bad_timestamp", f"{name} is neither ISO 8601 nor epoch ms: {_preview(value)}"
            ) from None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return _from_epoch_ms(value, name)
    raise ConversionError("bad_timestamp", f"{name} is a JSON {_json_type(value)}")


def _is_canonical_layout(text: str) -> bool:
    """The shape of ``YYYY-MM-DDTHH:MM:SS.mmmZ`` (fromisoformat still vouches for the digits)."""
    return (
        len(text) == 24
        and text[23] == "Z"
        and text[19] == "."
        and text[10] == "T"
        and text[4] == text[7] == "-"
        and text[13] == text[16] == ":"
        and text[11:13] != "24"  # newer Pythons read 24:00 as the next midnight
    )


def format_epoch_ms(ms: int) -> str:
    """Epoch milliseconds as ``YYYY-MM-DDTHH:MM:SS.mmmZ``.

    Plain arithmetic with the date part cached per day: half the cost of building a datetime,
    which matters when every record carries two timestamps.
    """
    day, rest = divmod(ms, _DAY_MS)
    prefix = _day_prefixes.get(day)
    if prefix is None:
        prefix = _day_prefixes[day] = (_EPOCH + timedelta(days=day)).date().isoformat()
    seconds, millis = divmod(rest, 1000)
    minutes, second = divmod(seconds, 60)
    hour, minute = divmod(minutes, 60)
    # %-formatting: a third faster than the equivalent f-string here, and this runs twice a record.
    return "%sT%02d:%02d:%02d.%03dZ" % (prefix, hour, minute, second, millis)  # noqa: UP031


def _from_epoch_ms(value: int | float, name: str) -> str:
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ConversionError("bad_timestamp", f"{name} is not a finite number")
        value = math.floor(value)  # whole milliseconds, rounded down like JavaScript's Date
    if not _MIN_EPOCH_MS <= value <= _MAX_EPOCH_MS:
        raise ConversionError("bad_timestamp", f"{name} epoch ms out of range: {_preview(value)}")
    return format_epoch_ms(value)


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _preview(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def loads(raw: bytes) -> Any:
    """Parse JSON with orjson, falling back to the stdlib for what orjson refuses but JSON allows.

    orjson rejects lone surrogate escapes (``"\\ud800"``), which JavaScript writes happily, and
    silently turns integers beyond 64 bits into floats: a record with such a literal is read
    by the stdlib, which keeps them exact.
    """
    if _LONG_INTEGER.search(raw):
        try:
            return json.loads(raw, parse_constant=_reject_constant)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ConversionError("bad_json", f"not valid JSON: {exc}") from None
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as first:
        try:
            return json.loads(raw, parse_constant=_reject_constant)
        except (ValueError, UnicodeDecodeError):
            raise ConversionError("bad_json", f"not valid JSON: {first}") from None


def dumps(record: dict[str, Any]) -> bytes:
    """Serialise compactly; the stdlib takes over for what orjson cannot write (huge ints)."""
    try:
        return orjson.dumps(record)
    except (orjson.JSONEncodeError, TypeError):
        try:
            return json.dumps(
                record, separators=(",", ":"), ensure_ascii=True, allow_nan=False
            ).encode()
        except ValueError as exc:
            raise ConversionError("bad_value", f"cannot be written as JSON: {exc}") from None


def is_new_format(obj: Any) -> bool:
    """The PROTOCOL 5 record is recognised by its two renamed fields."""
    return isinstance(obj, dict) and "user_id" in obj and "agent_type" in obj


class Converted(NamedTuple):
    """What the target key should hold for one source record."""

    value: bytes
    record: dict[str, Any]
    copied: bool  # the source was already in the new format: value is its exact bytes
    defaulted_time: bool  # no createdAt/updatedAt: the migration time stands in for both
    dropped: tuple[str, ...]  # old fields that have no place in the new record


def convert(raw: bytes, now: str) -> Converted:
    """Turn one old record into the new format; raises ConversionError when it cannot.

    Each field is checked by type first and only the unusual values go through the slower
    helpers: this runs once per key, and a 100k-key run spends most of its time here.
    """
    obj = loads(raw)
    if type(obj) is not dict:
        raise ConversionError("not_object", f"JSON {_json_type(obj)} instead of an object")
    if "user_id" in obj and "agent_type" in obj:  # is_new_format, inlined
        return Converted(raw, obj, copied=True, defaulted_time=False, dropped=())
    get = obj.get

    user_id = get("userId")
    if type(user_id) is not str or not 0 < len(user_id) <= MAX_USER_ID_LENGTH:
        user_id = _user_id(obj, user_id)

    agent = get("agent")
    if agent is None:
        agent = "ai"  # the old service wrote "ai" for every new session
    elif agent not in AGENT_TYPES:
        raise ConversionError("bad_agent", f"agent is not 'ai' or 'human': {_preview(agent)}")

    context = get("context")
    if type(context) is not dict:
        context = _object_field(obj, "context")
    metadata = get("metadata")
    if type(metadata) is not dict:
        metadata = _object_field(obj, "metadata")

    created = get("createdAt")
    if created is not None:
        created = parse_timestamp(created, "createdAt")
    updated = get("updatedAt")
    if updated is not None:
        updated = parse_timestamp(updated, "updatedAt")
    defaulted = created is None and updated is None
    if defaulted:
        created = updated = now
    else:
        created = created or updated
        updated = updated or created

    record = {
        "user_id": user_id,
        "agent_type": agent,
        "context": context,
        "created_at": created,
        "updated_at": updated,
        "state": "ai" if agent == "ai" else "handoff",
        "version": 0,
        "agent_id": None,
        "team_id": None,
        "metadata": metadata,
    }
    dropped = () if OLD_FIELDS.issuperset(obj) else tuple(sorted(obj.keys() - OLD_FIELDS))
    return Converted(dumps(record), record, False, defaulted, dropped)


def _user_id(obj: dict[str, Any], user_id: Any) -> str:
    """The slow path of ``userId``: absent, a number, or not acceptable."""
    if user_id is None:
        hint = " (has user_id but no agent_type)" if "user_id" in obj else ""
        raise ConversionError("missing_user_id", f"no userId{hint}")
    if isinstance(user_id, int) and not isinstance(user_id, bool):
        user_id = str(user_id)  # the contract's user ids are strings (JWT sub)
    if not isinstance(user_id, str) or not user_id:
        raise ConversionError(
            "bad_user_id", f"userId is not a non-empty string: {_preview(user_id)}"
        )
    if len(user_id) > MAX_USER_ID_LENGTH:
        raise ConversionError(
            "bad_user_id",
            f"userId is longer than {MAX_USER_ID_LENGTH} characters: {_preview(user_id)}",
        )
    return user_id


def _object_field(obj: dict[str, Any], name: str) -> dict[str, Any]:
    value = obj.get(name)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConversionError(f"bad_{name}", f"{name} is a JSON {_json_type(value)}, not an object")
    return value


def same_record(expected: Converted, actual: Any) -> list[str]:
    """Top-level fields where ``actual`` differs from the expected record (empty: equal).

    Values are compared as canonical JSON, so ``1`` differs from ``1.0`` and ``false`` from
    ``0`` (Python's ``==`` would call them equal) while key order inside objects does not count.
    """
    if not isinstance(actual, dict):
        return [f"<JSON {_json_type(actual)}>"]
    record = expected.record
    lenient = TIMESTAMP_FIELDS if expected.defaulted_time else ()
    differing = [
        name
        for name in record.keys() | actual.keys()
        if name not in lenient
        and (
            name not in actual
            or name not in record
            or _canonical(actual[name]) != _canonical(record[name])
        )
    ]
    # Without source timestamps the migration time was used: any well-formed, equal pair will do.
    if lenient:
        stamps = [actual.get(name) for name in lenient]
        if (
            not all(isinstance(s, str) and _is_canonical(s) for s in stamps)
            or stamps[0] != stamps[1]
        ):
            differing.extend(lenient)
    return sorted(differing)


def _canonical(value: Any) -> bytes:
    try:
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
    except (orjson.JSONEncodeError, TypeError):
        return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def _is_canonical(stamp: str) -> bool:
    try:
        return parse_timestamp(stamp, "timestamp") == stamp
    except ConversionError:
        return False


# --------------------------------------------------------------------------- redis wire


def pack(*parts: bytes) -> bytes:
    """One command in RESP."""
    out = [b"*%d\r\n" % len(parts)]
    for part in parts:
        out.append(b"$%d\r\n%b\r\n" % (len(part), part))
    return b"".join(out)


def _pack_pttl(key: bytes) -> bytes:
    return b"*2\r\n$4\r\nPTTL\r\n$%d\r\n%b\r\n" % (len(key), key)


def set_command(key: bytes, value: bytes, pttl: int, nx: bool = False) -> bytes:
    """``SET key value [PX pttl] [NX]``: a source key without TTL gets no expiry."""
    if pttl >= 0:
        # PX 0 is refused; a key about to expire gets the shortest TTL there is.
        ttl = b"%d" % max(pttl, 1)
        command = b"*%d\r\n$3\r\nSET\r\n$%d\r\n%b\r\n$%d\r\n%b\r\n$2\r\nPX\r\n$%d\r\n%b\r\n" % (
            6 if nx else 5,
            len(key),
            key,
            len(value),
            value,
            len(ttl),
            ttl,
        )
    else:
        command = b"*%d\r\n$3\r\nSET\r\n$%d\r\n%b\r\n$%d\r\n%b\r\n" % (
            4 if nx else 3,
            len(key),
            key,
            len(value),
            value,
        )
    return command + b"$2\r\nNX\r\n" if nx else command


class Wire:
    """A dedicated connection for pipelines: a whole batch of commands goes out in one write.

    This is a pipeline without redis-py's Pipeline object, which spends more Python time per
    command than the server does. Replies are collected in the order the batches were sent,
    so the caller can put the next batch on the wire before reading the previous one's
    replies and keep Redis busy while Python converts.
    """

    def __init__(self, client: redis.Redis) -> None:
        self._conn = client.connection_pool.make_connection()
        self._conn.connect()
        self._pending: deque[int] = deque()
        # Connection.read_response formats a host:port string and checks health on every
        # reply, a third of the time spent reading a batch. Its parser (private, but there in
        # every redis-py since 3.0) returns each reply as is, an error reply as an exception
        # object; socket trouble is still raised as redis.ConnectionError / TimeoutError.
        parser = getattr(self._conn, "_parser", None)
        self._read_parsed = getattr(parser, "read_response", None)

    def send(self, payload: bytes, count: int) -> None:
        """Write ``count`` packed commands without waiting for their replies."""
        self._conn.send_packed_command([payload])
        self._pending.append(count)

    def collect(self) -> list[Any]:
        """The replies of the oldest batch sent; an error reply comes back as its exception."""
        count = self._pending.popleft()
        if self._read_parsed is not None:
            read_parsed = self._read_parsed
            return [read_parsed(True) for _ in range(count)]
        read = self._conn.read_response
        replies: list[Any] = []
        for _ in range(count):
            try:
                replies.append(read(disable_decoding=True))
            except redis.ResponseError as exc:
                replies.append(exc)
        return replies

    def call(self, payload: bytes, count: int) -> list[Any]:
        """Send and collect at once; only when nothing else is in flight."""
        assert not self._pending, "replies of an earlier batch are still unread"
        self.send(payload, count)
        return self.collect()

    def close(self) -> None:
        self._conn.disconnect()


def send_read(wire: Wire, keys: list[bytes]) -> None:
    """Ask for every key's value and remaining TTL: MGET, then one PTTL per key."""
    wire.send(pack(b"MGET", *keys) + b"".join(map(_pack_pttl, keys)), 1 + len(keys))


def collect_read(wire: Wire) -> list[tuple[bytes | None, int]]:
    """``(value, pttl)`` per key of the oldest ``send_read``.

    MGET answers nil both for a missing key and for one that is not a string; a PTTL other
    than -2 tells the second case apart.
    """
    replies = wire.collect()
    if isinstance(replies[0], redis.ResponseError):
        raise replies[0]
    return list(zip(replies[0], replies[1:], strict=True))


def key_types(client: redis.Redis, keys: list[bytes]) -> list[str]:
    """TYPE of each key (a rare question: the plain client will do)."""
    pipe = client.pipeline(transaction=False)
    for key in keys:
        pipe.type(key)
    return [r.decode() if isinstance(r, bytes) else str(r) for r in pipe.execute()]


def scan_fraction(cursor: int) -> float:
    """Share of the keyspace a SCAN has covered, estimated from its cursor.

    Redis walks its hash table in reverse-binary bucket order, so the cursor with its 64 bits
    reversed grows steadily from 0 to 2**64 whatever the table size.
    """
    return int(f"{cursor:064b}"[::-1], 2) / 2**64


def scan_batches(wire: Wire, pattern: str, batch: int) -> Iterator[tuple[list[bytes], float]]:
    """Keys matching ``pattern`` in batches of about ``batch``, with the share scanned so far.

    The next SCAN is sent before a batch is handed out, so Redis scans while Python converts;
    hence a wire of its own. SCAN may return a key twice (when the table is resized meanwhile):
    handling a key twice is harmless, the second time it is found already converted.
    """
    match, count = pattern.encode(), b"%d" % batch

    def ask(cursor: bytes) -> None:
        wire.send(pack(b"SCAN", cursor, b"MATCH", match, b"COUNT", count), 1)

    ask(b"0")
    pending: list[bytes] = []
    while True:
        reply = wire.collect()[0]
        if isinstance(reply, redis.ResponseError):
            raise reply
        cursor, keys = reply
        done = cursor == b"0"
        if not done:
            ask(cursor)
        pending.extend(keys)
        if done:
            break
        if len(pending) >= batch:
            yield pending, scan_fraction(int(cursor))
            pending = []
    if pending:
        yield pending, 1.0


# --------------------------------------------------------------------------- run state


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
    dropped_fields: int = 0
    with_ttl: int = 0
    verified: int = 0
    verify_mismatch: int = 0
    verify_skipped: int = 0

    @property
    def problems(self) -> int:
        """Outcomes that make the run fail."""
        return self.failed + self.not_string + self.target_conflict + self.verify_mismatch


class Report:
    """JSON lines ``{"key", "reason", "code", "level"}``; the first few are echoed on stderr."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._fh = open(path, "wb")  # noqa: SIM115 - kept open for the whole run
        self.lines = 0
        self._echoed = 0

    def add(self, key: bytes, code: str, reason: str, level: str = "error") -> None:
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
        self._fh.close()


T = TypeVar("T")

# (key, what to write, the source's PTTL)
Item = tuple[bytes, Converted, int]


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
    stats: Stats = field(default_factory=Stats)


# --------------------------------------------------------------------------- migration


def migrate_pass(run: Run, progress: Progress) -> None:
    """SCAN the source and convert every batch, keeping Redis busy while Python converts.

    While batch N is converted, the reads of batch N+1 and the writes of batch N-1 are
    already with the server; their replies are collected only when they are needed.
    """
    in_flight: list[Item] | None = None
    batches = _with_next(scan_batches(run.scan_wire, run.pattern, run.batch))
    for index, ((keys, fraction), upcoming) in enumerate(batches):
        if index == 0:
            send_read(run.read_wire, keys)
        reads = collect_read(run.read_wire)
        if upcoming is not None:
            send_read(run.read_wire, upcoming[0])
        todo = convert_batch(run, keys, reads)
        if in_flight is not None:
            finish_write(run, in_flight)
            in_flight = None
        if todo and run.dry_run:
            count_dry_run(run, todo)
        elif todo:
            start_write(run, todo)
            in_flight = todo
        progress.update(run.stats.scanned, fraction)
    if in_flight is not None:
        finish_write(run, in_flight)
    progress.update(run.stats.scanned, 1.0, force=True)


def _with_next(items: Iterator[T]) -> Iterator[tuple[T, T | None]]:
    """Each item with the one after it (None for the last)."""
    current = next(items, None)
    while current is not None:
        upcoming = next(items, None)
        yield current, upcoming
        current = upcoming


def convert_batch(run: Run, keys: list[bytes], reads: list[tuple[bytes | None, int]]) -> list[Item]:
    """Convert one batch; report what cannot be; return what is to be written."""
    stats, report, now, in_place = run.stats, run.report, run.now, run.in_place
    stats.scanned += len(keys)
    refused: list[bytes] = []
    todo: list[Item] = []
    for key, (value, pttl) in zip(keys, reads, strict=True):
        if pttl == -2:
            stats.vanished += 1
            report.add(key, "vanished", "expired or deleted before it was read", "warning")
            continue
        if value is None:
            refused.append(key)  # not a string, most likely: TYPE will tell
            continue
        try:
            converted = convert(value, now)
        except ConversionError as exc:
            stats.failed += 1
            report.add(key, exc.code, exc.reason)
            continue
        if converted.dropped:
            stats.dropped_fields += 1
            report.add(
                key,
                "dropped_fields",
                "old fields with no place in the new record left out: "
                + ", ".join(converted.dropped),
                "warning",
            )
        if in_place and converted.copied:
            stats.unchanged += 1
        else:
            todo.append((key, converted, pttl))

    if refused:
        for key, kind in zip(refused, key_types(run.source, refused), strict=True):
            if kind == "none":
                stats.vanished += 1
                report.add(key, "vanished", "expired or deleted before it was read", "warning")
            elif kind == "string":
                stats.failed += 1
                report.add(key, "changed_during_read", "written while being read: run again")
            else:
                stats.not_string += 1
                report.add(key, "not_string", f"a {kind}, not a string: skipped")
    return todo


def start_write(run: Run, todo: list[Item]) -> None:
    """Put a batch's writes on the wire; ``finish_write`` reads the outcome."""
    if run.in_place:
        # XX: a key that expired meanwhile stays gone; KEEPTTL: the TTL is not even touched.
        payload = b"".join([pack(b"SET", key, c.value, b"XX", b"KEEPTTL") for key, c, _ in todo])
    else:
        # NX leaves whatever the target already holds; finish_write looks at those few keys.
        nx = not run.force
        payload = b"".join([set_command(key, c.value, pttl, nx) for key, c, pttl in todo])
    run.write_wire.send(payload, len(todo))


def finish_write(run: Run, todo: list[Item]) -> None:
    """Count a batch's writes; decide about target keys that NX found taken."""
    replies = run.write_wire.collect()
    if replies.count(b"OK") == len(todo):  # the usual case: every write went through
        _count_written(run.stats, todo)
        return
    written: list[Item] = []
    taken: list[Item] = []
    for item, reply in zip(todo, replies, strict=True):
        if isinstance(reply, redis.ResponseError):
            raise reply
        if reply is not None:
            written.append(item)
        elif run.in_place:
            run.stats.vanished += 1
            run.report.add(
                item[0], "vanished", "expired or deleted before it was written", "warning"
            )
        else:
            taken.append(item)
    _count_written(run.stats, written)
    if taken:
        _resolve_taken(run, taken)


def _resolve_taken(run: Run, taken: list[Item]) -> None:
    """Target keys that already existed: keep new-format records, replace anything else."""
    overwrite = _replaceable(run, taken)
    if overwrite:
        payload = b"".join(set_command(key, c.value, pttl) for key, c, pttl in overwrite)
        for reply in run.write_wire.call(payload, len(overwrite)):
            if isinstance(reply, redis.ResponseError):
                raise reply
        _count_written(run.stats, overwrite)


def count_dry_run(run: Run, todo: list[Item]) -> None:
    """Count what a real run would write, looking at the target as it is."""
    _count_written(run.stats, todo if run.in_place or run.force else _replaceable(run, todo))


def _replaceable(run: Run, items: list[Item]) -> list[Item]:
    """The items whose target key may be (over)written; counts and reports the others."""
    current = run.write_wire.call(b"".join(pack(b"GET", key) for key, _, _ in items), len(items))
    replaceable: list[Item] = []
    for item, value in zip(items, current, strict=True):
        if isinstance(value, redis.ResponseError):
            run.stats.target_conflict += 1
            run.report.add(
                item[0], "target_not_string", "the target key exists and is not a string"
            )
            continue
        if value is not None:
            try:
                if is_new_format(loads(value)):
                    run.stats.unchanged += 1
                    continue
            except ConversionError:
                pass  # not JSON, so not a record of ours: it is replaced
        replaceable.append(item)
    return replaceable


def _count_written(stats: Stats, items: list[Item]) -> None:
    copied = defaulted = with_ttl = 0
    for _key, converted, pttl in items:
        if converted.copied:
            copied += 1
        elif converted.defaulted_time:
            defaulted += 1
        if pttl >= 0:
            with_ttl += 1
    stats.copied += copied
    stats.converted += len(items) - copied
    stats.defaulted_time += defaulted
    stats.with_ttl += with_ttl


# --------------------------------------------------------------------------- verification


def verify_pass(run: Run, progress: Progress) -> None:
    """SCAN the source again and compare every target key with its source's conversion."""
    stats = run.stats
    for keys, fraction in scan_batches(run.scan_wire, run.pattern, run.batch):
        send_read(run.read_wire, keys)
        if not run.in_place:
            send_read(run.write_wire, keys)
        source_reads = collect_read(run.read_wire)
        target_reads = source_reads if run.in_place else collect_read(run.write_wire)
        for key, source_read, target_read in zip(keys, source_reads, target_reads, strict=True):
            verify_key(run, key, source_read, target_read)
        progress.update(stats.verified + stats.verify_skipped, fraction)
    progress.update(stats.verified + stats.verify_skipped, 1.0, force=True)


def verify_key(
    run: Run, key: bytes, source: tuple[bytes | None, int], target: tuple[bytes | None, int]
) -> None:
    """Check one key; a difference is counted and reported."""
    stats = run.stats
    value, pttl = source
    target_value, target_pttl = target
    if pttl == -2:
        stats.verify_skipped += 1  # gone from the source: nothing to compare with
        return
    stats.verified += 1
    problem = _difference(run, value, pttl, target_value, target_pttl)
    if problem is not None:
        stats.verify_mismatch += 1
        run.report.add(key, problem[0], "verify: " + problem[1])


def _difference(
    run: Run, value: bytes | None, pttl: int, target: bytes | None, target_pttl: int
) -> tuple[str, str] | None:
    if value is None:
        return "verify_source_not_string", "the source key is not a string"
    if run.in_place:
        try:
            converted = is_new_format(loads(value))
        except ConversionError:
            converted = False
        return None if converted else ("verify_not_converted", "still not in the new format")
    try:
        expected = convert(value, run.now)
    except ConversionError as exc:
        return "verify_unconvertible", f"the source cannot be converted ({exc.reason})"
    if target_pttl == -2:
        return "verify_missing", "missing in the target"
    if target is None:
        return "verify_target_not_string", "the target key is not a string"
    try:
        differing = same_record(expected, loads(target))
    except ConversionError:
        differing = ["<not JSON>"]
    if differing:
        return "verify_differs", "the target differs in " + ", ".join(differing)
    if (pttl >= 0) != (target_pttl >= 0):
        if pttl >= 0:
            return "verify_ttl", "the source has a TTL, the target none"
        return "verify_ttl", "the target has a TTL, the source none"
    return None


# --------------------------------------------------------------------------- cli


class UsageError(Exception):
    """A bad argument found after parsing."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="migrate_redis.py",
        description=(
            "Convert the old Node.js session records (session:{id} = {userId, agent, context, "
            "metadata?, createdAt?, updatedAt?}) into the chat-api Redis record, keeping each "
            "key's TTL and timestamps. The source is left intact unless source and target are "
            "the same database (in-place conversion). Safe to run again, after an interruption "
            "too: target keys already in the new format are left alone."
        ),
        epilog=(
            "Exit codes: 0 every key migrated (and verified); 1 a key could not be converted or "
            "written, a verification difference, a Redis error or an interruption (run again); "
            "2 bad command line. Passwords in URLs are never echoed."
        ),
    )
    parser.add_argument(
        "--source",
        default=DEFAULT_SOURCE,
        metavar="URL",
        help=f"Redis holding the old records (default {DEFAULT_SOURCE})",
    )
    parser.add_argument(
        "--target",
        default=DEFAULT_TARGET,
        metavar="URL",
        help=f"Redis receiving the new records (default {DEFAULT_TARGET}); "
        "the same database as --source converts in place",
    )
    parser.add_argument(
        "--pattern",
        default=DEFAULT_PATTERN,
        metavar="GLOB",
        help=f"SCAN MATCH pattern of the keys to migrate (default {DEFAULT_PATTERN!r})",
    )
    parser.add_argument(
        "--batch",
        type=positive_int,
        default=DEFAULT_BATCH,
        metavar="N",
        help=f"keys per SCAN call and per pipeline (default {DEFAULT_BATCH})",
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="read, convert and count, but write nothing to Redis (the report "
        "file is still written); with --verify, checks the target as it is",
    )
    parser.add_argument(
        "--verify",
        action="store_true",
        help="afterwards re-read every target key and compare it with the "
        "conversion of its source (value, and whether both have a TTL); "
        "any difference fails the run",
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="rewrite target keys even when they are already in the new format",
    )
    parser.add_argument(
        "--report",
        default=DEFAULT_REPORT,
        metavar="FILE",
        help="JSON-lines file listing every key skipped or not converted, one "
        '{"key", "reason", "code", "level"} per line; rewritten on every '
        f"run, dry runs included (default ./{DEFAULT_REPORT})",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress output")
    return parser


def _client(url: str, option: str) -> redis.Redis:
    try:
        # RESP2: same replies for every command used here, and redis-py's pure-Python parser
        # reads it a fifth faster than RESP3 (it matters without hiredis).
        return redis.Redis.from_url(url, protocol=2)
    except ValueError as exc:
        raise UsageError(f"{option}: not a Redis URL ({exc})") from None


def _ping(client: redis.Redis, url: str, role: str) -> bool:
    try:
        client.ping()
        return True
    except redis.RedisError as exc:
        print(f"error: {role} {mask_url(url)} unreachable: {exc}", file=sys.stderr)
        return False


def same_database(source: redis.Redis, target: redis.Redis) -> bool:
    """Same server (by run_id, however the host is spelt) and same logical database."""
    source_db = source.connection_pool.connection_kwargs.get("db", 0)
    target_db = target.connection_pool.connection_kwargs.get("db", 0)
    if int(source_db) != int(target_db):
        return False
    return source.info("server")["run_id"] == target.info("server")["run_id"]


def print_summary(run: Run, *, verify: bool, elapsed_s: float, interrupted: str | None) -> None:
    """The closing table, on stdout."""
    stats = run.stats
    would = "would be " if run.dry_run else ""
    rows = [
        ("scanned", stats.scanned, "keys matching the pattern"),
        ("converted", stats.converted, f"{would}written in the new format"),
        ("copied", stats.copied, f"new format in the source already, {would}copied as is"),
        ("unchanged", stats.unchanged, "new format in the target already (--force rewrites)"),
        ("failed", stats.failed, "could not be converted: see the report"),
        ("not a string", stats.not_string, "skipped: see the report"),
        ("target conflict", stats.target_conflict, "target key of another type: see the report"),
        ("vanished", stats.vanished, "expired or deleted during the run"),
        ("time defaulted", stats.defaulted_time, "no createdAt/updatedAt: migration time used"),
        ("fields dropped", stats.dropped_fields, "records with unknown old fields: see the report"),
        ("with TTL", stats.with_ttl, f"{would}written with their remaining TTL"),
    ]
    if verify:
        rows += [
            ("verified", stats.verified, "target keys compared with their source"),
            ("mismatches", stats.verify_mismatch, "differences: see the report"),
        ]
    rate = stats.scanned / elapsed_s if elapsed_s > 0 else 0.0
    print("summary:")
    for label, count, note in rows:
        print(f"  {label:<16}{count:>10,}  {note}")
    print(f"  {'elapsed':<16}{format_duration(elapsed_s):>10}  {rate:,.0f} keys/s")
    print(f"  {'report':<16}{run.report.lines:>10,}  lines in {run.report.path}")
    if interrupted:
        print(f"result: INCOMPLETE ({interrupted}); run the same command again to finish")
    elif stats.problems:
        print(f"result: FAILED ({stats.problems:,} problem(s), see {run.report.path})")
    else:
        print("result: OK" + (" (dry run: nothing written)" if run.dry_run else ""))


def main(argv: list[str] | None = None) -> int:
    """Run the migration; see ``--help``."""
    args = build_parser().parse_args(argv)
    try:
        source = _client(args.source, "--source")
        target = _client(args.target, "--target")
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE

    started = time.monotonic()
    run: Run | None = None
    interrupted: str | None = None
    wires: list[Wire] = []
    try:
        if not (_ping(source, args.source, "source") and _ping(target, args.target, "target")):
            return EXIT_FAILURE
        in_place = same_database(source, target)
        try:
            report = Report(args.report)
        except OSError as exc:
            print(f"error: cannot write the report {args.report}: {exc}", file=sys.stderr)
            return EXIT_FAILURE
        for client in (source, source, source if in_place else target):
            wires.append(Wire(client))
        run = Run(
            source=source,
            scan_wire=wires[0],
            read_wire=wires[1],
            write_wire=wires[2],
            in_place=in_place,
            pattern=args.pattern,
            batch=args.batch,
            dry_run=args.dry_run,
            force=args.force,
            now=format_timestamp(datetime.now(UTC)),
            report=report,
        )
        where = "in place" if in_place else f"-> {mask_url(args.target)}"
        flags = "".join(
            f", {f}" for f in ("dry run", "force") if getattr(args, f.replace(" ", "_"))
        )
        print(
            f"migrate_redis: {mask_url(args.source)} {where}, pattern {args.pattern!r}, "
            f"batch {args.batch}{flags}",
            file=sys.stderr,
        )
        progress = Progress("migrate", enabled=not args.quiet)
        try:
            migrate_pass(run, progress)
        finally:
            progress.close()
        if args.verify:
            progress = Progress("verify", enabled=not args.quiet)
            try:
                verify_pass(run, progress)
            finally:
                progress.close()
    except KeyboardInterrupt:
        interrupted = "interrupted"
    except redis.RedisError as exc:
        interrupted = f"Redis error: {exc}"
        print(f"error: {interrupted}", file=sys.stderr)
    finally:
        for wire in wires:
            wire.close()
        if run is not None:
            run.report.close()
        source.close()
        target.close()

    if run is None:
        return EXIT_FAILURE
    print_summary(
        run, verify=args.verify, elapsed_s=time.monotonic() - started, interrupted=interrupted
    )
    return EXIT_FAILURE if interrupted or run.stats.problems else EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
