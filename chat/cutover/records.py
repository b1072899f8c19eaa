"""Session records as bytes: JSON the way the old services wrote it, around states/legacy.py.

states/legacy.py converts parsed records in both directions; this module reads and writes the
bytes stored in Redis, keeping what orjson alone would lose (lone surrogates, integers over
64 bits) and the original bytes of a record nothing changed.
"""

from __future__ import annotations

import json
from datetime import UTC, tzinfo
from typing import Any, NamedTuple

import orjson

from states.legacy import (
    TIMESTAMP_FIELDS,
    ConversionError,
    Record,
    ReverseError,
    canonical_json,
    is_canonical_timestamp,
    json_type,
    to_new,
)

# A run of 19 digits: possibly an integer orjson would read as a float. Found by mapping every
# digit to "0" and everything else to " " (bytes.translate, then a substring search): ten times
# quicker than a regular expression on the 800-byte records of a real data set.
_DIGITS_AS_ZERO = bytes(0x30 if 0x30 <= byte <= 0x39 else 0x20 for byte in range(256))
_LONG_DIGIT_RUN = b"0" * 19


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def loads(raw: bytes) -> Any:
    """Parse JSON with orjson, falling back to the stdlib for what orjson refuses but JSON allows.

    orjson rejects lone surrogate escapes (``"\\ud800"``), which JavaScript writes happily, and
    silently turns integers beyond 64 bits into floats: a record with such a literal is read
    by the stdlib, which keeps them exact. ConversionError ``bad_json`` when it is not JSON.
    """
    if _LONG_DIGIT_RUN in raw.translate(_DIGITS_AS_ZERO):
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


def compact_json(value: Any, *, ensure_ascii: bool = True) -> bytes:
    """Compact JSON; the stdlib takes over for what orjson cannot write (integers over 64 bits).

    ValueError for what JSON cannot hold at all (NaN, say).
    """
    try:
        return orjson.dumps(value)
    except (orjson.JSONEncodeError, TypeError):
        return json.dumps(value, separators=(",", ":"), ensure_ascii=ensure_ascii, allow_nan=False).encode()


def dumps(record: Record) -> bytes:
    """A record as compact JSON; ConversionError ``bad_value`` when it cannot be written as JSON."""
    try:
        return compact_json(record)
    except ValueError as exc:
        raise ConversionError("bad_value", f"cannot be written as JSON: {exc}") from None


class Migrated(NamedTuple):
    """What the target key should hold for one source record."""

    value: bytes
    record: Record
    copied: bool  # the source was already in the new format: value is its exact bytes
    defaulted_time: bool  # no createdAt/updatedAt: the migration time stands in for both
    dropped: tuple[str, ...]  # old fields that have no place in the new record
    naive_time: bool = False  # a timestamp without an offset, read in the naive zone


def convert(raw: bytes, now: str, naive_tz: tzinfo = UTC) -> Migrated:
    """The stored value for one source value; ConversionError when it cannot be converted.

    Timestamps without an offset are read in ``naive_tz`` (states.legacy.to_new).
    """
    obj = loads(raw)
    if type(obj) is not dict:
        raise ConversionError("not_object", f"JSON {json_type(obj)} instead of an object")
    if "user_id" in obj and "agent_type" in obj:  # states.legacy.is_new_format, inlined
        return Migrated(raw, obj, copied=True, defaulted_time=False, dropped=())
    record, defaulted, dropped, naive = to_new(obj, now, naive_tz)
    return Migrated(dumps(record), record, False, defaulted, dropped, naive)


def same_record(expected: Migrated, actual: Any) -> list[str]:
    """Top-level fields where ``actual`` differs from the expected record (empty: equal).

    Values are compared as canonical JSON, so ``1`` differs from ``1.0`` and ``false`` from
    ``0`` (Python's ``==`` would call them equal) while key order inside objects does not count.
    """
    if not isinstance(actual, dict):
        return [f"<JSON {json_type(actual)}>"]
    record = expected.record
    lenient = TIMESTAMP_FIELDS if expected.defaulted_time else ()
    differing = [
        name
        for name in record.keys() | actual.keys()
        if name not in lenient
        and (name not in actual or name not in record or canonical_json(actual[name]) != canonical_json(record[name]))
    ]
    # Without source timestamps the migration time was used: any well-formed, equal pair will do.
    if lenient:
        stamps = [actual.get(name) for name in lenient]
        if not all(isinstance(s, str) and is_canonical_timestamp(s) for s in stamps) or stamps[0] != stamps[1]:
            differing.extend(lenient)
    return sorted(differing)


def encode_old(old: Record, original: tuple[Record, bytes] | None = None) -> bytes:
    """The bytes to write: the original's own bytes when nothing differs, else compact JSON."""
    if original is not None and canonical_json(old) == canonical_json(original[0]):
        return original[1]
    try:
        return dumps(old)
    except ConversionError as exc:
        raise ReverseError("bad_value", exc.reason) from None
