"""states/legacy.py: the old Node.js record <-> the live record, on parsed JSON, both directions.

The round trips are hypothesis properties: old -> new -> old keeps every old record as it was
(given the original: its raw forms and key order), new -> old -> new keeps every migrated record,
and a record of the new service keeps everything the old format has a field for.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from states import record as record_module
from states.clock import iso_from_ms
from states.legacy import (
    MAX_USER_ID_LENGTH,
    ConversionError,
    ReverseError,
    canonical_json,
    parse_timestamp,
    to_new,
    to_old,
)
from tests.states.legacy_records import MS, NOW, json_objects_63, old_records, service_records

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def migrated(old: dict) -> dict:
    """The new record for ``old``; the examples the migration refuses are skipped."""
    try:
        return to_new(old, NOW).record
    except ConversionError:
        assume(False)
        raise


# --------------------------------------------------------------------------- round trips


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(old_records())
def test_old_new_old_with_the_original_keeps_the_old_record(old):
    back = to_old(migrated(old), old)

    assert canonical_json(back) == canonical_json(old)
    assert list(back) == list(old)  # the original's key order too


@settings(max_examples=200, deadline=None)
@given(
    st.fixed_dictionaries(
        {
            "userId": st.text(min_size=1, max_size=MAX_USER_ID_LENGTH),
            "agent": st.sampled_from(["ai", "human"]),
            "context": json_objects_63,
            "metadata": json_objects_63,
            "createdAt": MS.map(iso_from_ms),
            "updatedAt": MS.map(iso_from_ms),
        }
    )
)
def test_old_new_old_without_the_original_keeps_what_the_old_service_wrote(old):
    assert canonical_json(to_old(migrated(old))) == canonical_json(old)


@settings(max_examples=300, deadline=None)
@given(old_records())
def test_new_old_new_keeps_any_migrated_record(old):
    new = migrated(old)

    again = to_new(to_old(new), "2099-01-01T00:00:00.000Z").record

    assert canonical_json(again) == canonical_json(new)


@settings(max_examples=200, deadline=None)
@given(service_records)
def test_new_old_new_keeps_what_the_old_format_can_hold(record):
    old = to_old(record)

    assert set(old) == {"userId", "agent", "context", "metadata", "createdAt", "updatedAt"}
    expected_agent = {"ai": "ai", "handoff": "human", "human": "human"}.get(record["state"], record["agent_type"])
    assert old["agent"] == expected_agent
    again = to_new(old, NOW).record
    for name in ("user_id", "context", "metadata", "created_at", "updated_at"):
        assert canonical_json(again[name]) == canonical_json(record[name]), name
    assert again["agent_type"] == expected_agent


@settings(max_examples=200, deadline=None)
@given(old_records())
def test_migrated_records_load_in_the_service(old):
    """The contract check: the service's own record loader accepts every converted record."""
    new = migrated(old)
    loaded = record_module.load_record("c1", canonical_json(new))
    assert loaded.state == ("ai" if new["agent_type"] == "ai" else "handoff")
    assert loaded.version == 0 and loaded.extra == {}


# --------------------------------------------------------------------------- old -> new


@given(st.integers(min_value=-62_135_596_800_000, max_value=253_402_300_799_999))
def test_epoch_ms_matches_datetime(ms):
    expected = (
        (EPOCH + timedelta(milliseconds=ms))
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )
    assert parse_timestamp(ms, "t") == expected
    assert parse_timestamp(str(ms), "t") == expected


@given(
    st.datetimes(
        min_value=datetime(1900, 1, 1),
        max_value=datetime(2200, 1, 1),
        timezones=st.sampled_from([UTC, None]) | st.timezones(),
    )
)
def test_iso_strings_become_utc_milliseconds(moment):
    text = moment.isoformat()
    result = parse_timestamp(text, "t")
    aware = moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
    back = datetime.fromisoformat(result)
    assert result.endswith("Z") and len(result) == 24
    assert back == aware.astimezone(UTC).replace(microsecond=aware.microsecond // 1000 * 1000)
    # A canonical timestamp passes through unchanged.
    assert parse_timestamp(result, "t") == result


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2024-01-01T10:00:00Z", "2024-01-01T10:00:00.000Z"),
        ("2024-01-01", "2024-01-01T00:00:00.000Z"),
        (" 2024-01-01T10:00:00.5-02:00 ", "2024-01-01T12:00:00.500Z"),
        (1704103200000.9, "2024-01-01T10:00:00.000Z"),
        ("1704103200000.9", "2024-01-01T10:00:00.000Z"),
        (-1, "1969-12-31T23:59:59.999Z"),
        (None, None),
        ("", None),
    ],
)
def test_timestamp_forms(value, expected):
    assert parse_timestamp(value, "t") == expected


@pytest.mark.parametrize(
    "value", [True, "yesterday", "2024-13-01T00:00:00.000Z", float("nan"), 10**20, [1], {"a": 1}]
)
def test_bad_timestamps(value):
    with pytest.raises(ConversionError) as exc:
        parse_timestamp(value, "createdAt")
    assert exc.value.code == "bad_timestamp"
    assert "createdAt" in exc.value.reason


def test_user_id_forms():
    assert to_new({"userId": 7}, NOW).record["user_id"] == "7"
    assert to_new({"userId": "u" * 64}, NOW).record["user_id"] == "u" * 64
    for user_id in ("", True, [1], "u" * 65):
        with pytest.raises(ConversionError) as exc:
            to_new({"userId": user_id}, NOW)
        assert exc.value.code == "bad_user_id"


def test_no_timestamps_means_the_migration_time_for_both():
    converted = to_new({"userId": "u"}, NOW)
    assert converted.defaulted_time
    assert converted.record["created_at"] == converted.record["updated_at"] == NOW


# --------------------------------------------------------------------------- new -> old


def test_a_changed_record_keeps_the_change_and_the_original_forms():
    original = {"userId": 7, "createdAt": 1704103200000, "updatedAt": "1704103200000", "note": "kept"}
    new = to_new(original, NOW).record
    new.update(state="human", agent_type="human", updated_at="2024-06-01T00:00:00.000Z",
               metadata={"vip": True}, context={"k": 1})

    back = to_old(new, original)

    assert back == {
        "userId": 7,
        "createdAt": 1704103200000,
        "updatedAt": "1717200000000",  # changed, in the original's style (epoch ms as a string)
        "note": "kept",  # the field the migration dropped
        "agent": "human",
        "context": {"k": 1},
        "metadata": {"vip": True},
    }


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"user_id": ""}, "bad_user_id"),
        ({"user_id": 5}, "bad_user_id"),
        ({"state": "limbo"}, "bad_state"),
        ({"state": None, "agent_type": "bot"}, "bad_agent_type"),
        ({"context": [1]}, "bad_context"),
        ({"metadata": "x"}, "bad_metadata"),
        ({"created_at": "yesterday"}, "bad_timestamp"),
    ],
)
def test_records_that_cannot_go_back(change, code):
    record = {"user_id": "u", "agent_type": "ai", "context": {}, "created_at": NOW, "updated_at": NOW,
              "state": "ai", "metadata": {}, **change}
    with pytest.raises(ReverseError) as exc:
        to_old(record)
    assert exc.value.code == code


def test_a_five_field_record_has_no_metadata_to_give_back():
    record = {"user_id": "u", "agent_type": "human", "context": {}, "created_at": NOW, "updated_at": NOW}
    assert to_old(record) == {"userId": "u", "agent": "human", "context": {}, "createdAt": NOW,
                                       "updatedAt": NOW}


# Issue 12.7: a time without an offset is read in the zone given, and flagged.
def test_naive_times_are_read_in_the_given_zone():
    shanghai = ZoneInfo("Asia/Shanghai")
    assert parse_timestamp("2025-04-30 18:00:00", "t", shanghai) == "2025-04-30T10:00:00.000Z"
    assert parse_timestamp("2025-04-30 18:00:00", "t") == "2025-04-30T18:00:00.000Z"
    assert parse_timestamp("2025-04-30T18:00:00+00:00", "t", shanghai) == "2025-04-30T18:00:00.000Z"
    converted = to_new({"userId": "u", "createdAt": "2025-04-30 18:00:00"}, NOW, shanghai)
    assert converted.naive_time and converted.record["updated_at"] == "2025-04-30T10:00:00.000Z"
    assert not to_new({"userId": "u", "createdAt": "2025-04-30T18:00:00.000Z"}, NOW).naive_time


def test_a_date_alone_is_utc_midnight_whatever_the_naive_zone():
    """The old services' `new Date("2025-04-30")` is UTC midnight: --naive-tz is for date-times only."""
    shanghai = ZoneInfo("Asia/Shanghai")
    assert parse_timestamp("2025-04-30", "t", shanghai) == "2025-04-30T00:00:00.000Z"
    assert parse_timestamp("2025-04-30T00:00", "t", shanghai) == "2025-04-29T16:00:00.000Z"
    original = {"userId": "u", "agent": "ai", "context": {}, "createdAt": "2025-04-30"}
    converted = to_new(original, NOW, shanghai)
    assert converted.record["created_at"] == "2025-04-30T00:00:00.000Z" and not converted.naive_time
    # the reverse migration gives the unchanged date back as the old services wrote it
    assert to_old(converted.record, original)["createdAt"] == "2025-04-30"


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(old_records(), st.sampled_from(["Asia/Shanghai", "America/New_York", "UTC"]))
def test_naive_times_come_back_as_written_given_the_migrations_zone(old, zone):
    """Finding 7: the reverse migration given the zone the migration read naive times in gives
    every unchanged record back as it was, naive times included."""
    naive_tz = ZoneInfo(zone)
    try:
        new = to_new(old, NOW, naive_tz).record
    except ConversionError:
        assume(False)
        raise

    assert canonical_json(to_old(new, old, naive_tz)) == canonical_json(old)


def test_an_unchanged_naive_time_comes_back_as_the_old_services_wrote_it():
    shanghai = ZoneInfo("Asia/Shanghai")
    original = {"userId": "cust-naive", "agent": "ai", "context": {"lang": "zh"},
                "createdAt": "2025-04-30 18:00:00", "updatedAt": "2025-04-30 18:05:00"}
    new = to_new(original, NOW, shanghai).record
    assert new["created_at"] == "2025-04-30T10:00:00.000Z"

    assert to_old(new, original, shanghai) == original
    # changed since: the new time, in the style the old services read
    changed = {**new, "updated_at": "2025-05-01T00:00:00.000Z"}
    assert to_old(changed, original, shanghai) == {**original, "updatedAt": "2025-05-01T00:00:00.000Z"}


def test_a_naive_time_never_puts_updated_before_created():
    with pytest.raises(ConversionError) as exc:
        to_new({"userId": "u", "createdAt": "2025-04-30 18:00:00", "updatedAt": "2025-04-30T10:30:00Z"}, NOW)
    assert exc.value.code == "naive_time_order"
