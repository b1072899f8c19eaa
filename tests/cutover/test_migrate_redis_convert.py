"""chat/cutover/migrate_redis/convert.py: the migration's short way through ordinary records writes
exactly what chat.cutover.records.convert writes, byte for byte, and fails exactly where it fails.

No servers: both conversions side by side on the benchmark's records, on hand-picked odd values
and on hypothesis-generated records (every shape the migration accepts, and broken ones).
"""

from __future__ import annotations

import json
import random
from datetime import UTC, tzinfo
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench.migrate_redis_bench import old_record
from chat.cutover.migrate_redis import convert as fast
from chat.cutover.migrate_redis.convert import migrate_value
from chat.cutover.migrate_redis.run import outcome
from chat.cutover.records import convert
from states.legacy import ConversionError
from tests.states.legacy_records import NOW, json_values, old_records, timestamps

SHANGHAI = ZoneInfo("Asia/Shanghai")


def both(raw: bytes, naive_tz: tzinfo = UTC) -> tuple[object, object]:
    """(what migrate_value gives, what convert gives), an error as ("error", code, reason)."""
    try:
        expected: object = (lambda c: (c.value, outcome(c), c.dropped))(convert(raw, NOW, naive_tz))
    except ConversionError as exc:
        expected = ("error", exc.code, exc.reason)
    try:
        got: object = migrate_value(raw, NOW, naive_tz)
    except ConversionError as exc:
        got = ("error", exc.code, exc.reason)
    return got, expected


@pytest.fixture
def slow_calls(monkeypatch):
    """Counts the values that took convert's way instead of the short one."""
    calls: list[bytes] = []
    real = fast.convert

    def counted(raw, now, naive_tz):
        calls.append(raw)
        return real(raw, now, naive_tz)

    monkeypatch.setattr(fast, "convert", counted)
    return calls


@pytest.mark.parametrize("record_bytes", [0, 800])
def test_benchmark_records_take_the_short_way_and_come_out_the_same(record_bytes, slow_calls):
    rng = random.Random(7)
    for i in range(2000):
        raw = json.dumps(old_record(i, rng, record_bytes)).encode()
        got, expected = both(raw)
        assert got == expected, raw
    assert slow_calls == []  # every timestamp habit of the benchmark is an ordinary one


ODD = [
    b"{not json", b"[1, 2]", b"null", b'"text"', b"\xff\x00", b"",
    b'{"userId": "u", "agent": "robot"}', b'{"userId": "u", "agent": null}', b'{"userId": "u", "agent": ["ai"]}',
    b'{"userId": "u", "agent": {"a": 1}}', b'{"userId": 12345}', b'{"userId": ""}', b'{"userId": true}',
    b'{"userId": "' + b"u" * 300 + b'"}', b'{"agent": "ai"}', b'{"userId": "u", "user_id": "v"}',
    b'{"user_id": "u", "agent_type": "ai", "context": {}}', b'{"userId": "u", "context": null}',
    b'{"userId": "u", "context": [1]}', b'{"userId": "u", "context": {}, "metadata": null}',
    b'{"userId": "u", "context": {}, "metadata": "x"}', b'{"userId": "u", "context": {}, "extra": 1}',
    b'{"userId": "u", "context": {"n": 123456789012345678901234567890}}',
    b'{"userId": "u", "context": {"n": 18446744073709551615}}', b'{"userId": "u", "context": {"s": "\\ud800"}}',
    b'{"userId": "u", "context": {"f": 1e16, "g": 0.1, "h": -0.0, "i": 1E400}}',
    b'{"userId": "u", "context": {"a": 1, "a": 2}}', b'{"userId": "u", "context": {"x": "\\u00e9\\u2028\\n"}}',
    b'{"userId": "u", "context": ' + b'{"d": ' * 300 + b"1" + b"}" * 300 + b"}",
]
STAMPS = [
    "2024-01-01T10:00:00.000Z", "2024-01-01T24:00:00.000Z", "2024-02-30T10:00:00.000Z", "2024-W01-1T10:00:00.000Z",
    "2024-01-01T10:00:00Z", "2024-01-01T10:00:00+08:00", "2024-01-01 10:00:00", "2024-01-01", "20240101",
    "20240101T100000+0800", " 2024-01-01T10:00:00+00:00 ", "1704103200000", " 1704103200000 ", "1704103200000.5",
    "+1704103200000", "", "0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59.999-01:00", "not a date",
    1704103200000, -1, 0, 253_402_300_799_999, 253_402_300_800_000, -62_135_596_800_001, 1704103200000.7,
    float("inf"), True, False, None, [], {}, 10**25,
]


@pytest.mark.parametrize("raw", ODD)
def test_odd_values_end_as_convert_ends_them(raw):
    for naive_tz in (UTC, SHANGHAI):
        got, expected = both(raw, naive_tz)
        assert got == expected


@pytest.mark.parametrize("stamp", STAMPS, ids=repr)
def test_every_timestamp_form_ends_as_convert_ends_it(stamp):
    for created, updated in ((stamp, None), (None, stamp), (stamp, stamp), (stamp, "2024-01-01T12:00:00.000Z")):
        record: dict[str, object] = {"userId": "u", "agent": "human", "context": {"k": [1, 2.5, "x"]}}
        for name, value in (("createdAt", created), ("updatedAt", updated)):
            if value is not None:
                record[name] = value
        raw = json.dumps(record, allow_nan=True).encode()
        for naive_tz in (UTC, SHANGHAI):
            got, expected = both(raw, naive_tz)
            assert got == expected, raw


def test_ordinary_forms_take_the_short_way(slow_calls):
    for stamp in ("2024-01-01T10:00:00.000Z", "2024-01-01T10:00:00+08:00", 1704103200000, None):
        raw = json.dumps({"userId": "u", "agent": "ai", "context": {}, "metadata": None, "createdAt": stamp}).encode()
        assert both(raw)[0] == both(raw)[1]
    assert slow_calls == []


# Any field of an old record replaced by any JSON value (or a timestamp form), in any key order.
mangled = st.builds(
    lambda record, name, value: {**record, name: value},
    old_records(),
    st.sampled_from(["userId", "agent", "context", "metadata", "createdAt", "updatedAt", "extra"]),
    json_values | timestamps.filter(lambda v: isinstance(v, str | int | float | None)),
)


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(old_records() | mangled, st.sampled_from([None, 0, 2]), st.sampled_from([UTC, SHANGHAI]))
def test_generated_records_come_out_byte_for_byte_the_same(record, indent, naive_tz):
    raw = json.dumps(record, indent=indent, allow_nan=True).encode()
    got, expected = both(raw, naive_tz)
    assert got == expected


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=40) | st.text(max_size=40).map(str.encode))
def test_arbitrary_bytes_end_as_convert_ends_them(raw):
    got, expected = both(raw)
    assert got == expected
