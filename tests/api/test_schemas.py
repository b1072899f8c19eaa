"""The request field types of chat.api.schemas, without a server."""

import pytest
from marshmallow import ValidationError

from chat.api.schemas import EARLIEST_MS, LATEST_MS, Body, FullMatch, Metadata, Query, QueryInt, Timestamp, Title
from chat.limits import MAX_METADATA_BYTES
from states.clock import ms_from_iso


class Sample(Query):
    n = QueryInt()
    at = Timestamp()


class Named(Body):
    title = Title()
    metadata = Metadata()


def test_query_ints_are_ascii_digits_only():
    assert Sample().load({"n": "42"}) == {"n": 42}
    for bad in ("1.0", " 1", "1_000", "١", "1" * 13):
        with pytest.raises(ValidationError):
            Sample().load({"n": bad})


def test_timestamps_load_as_epoch_ms():
    assert Sample().load({"at": "2024-05-01"})["at"] == ms_from_iso("2024-05-01T00:00:00Z")
    # a `+` in a query string arrives as a space
    assert Sample().load({"at": "2024-05-01T08:00:00 08:00"})["at"] == ms_from_iso("2024-05-01T00:00:00Z")
    for bad in ("2024-02-31", "yesterday", "10000-01-01"):
        with pytest.raises(ValidationError):
            Sample().load({"at": bad})
    with pytest.raises(ValidationError, match="Not a valid ISO 8601 date-time"):
        Sample().load({"at": "2024-05-01T08:00:00+05:30:00.5"})  # an offset is hours and minutes


def test_timestamps_before_1970_load_down_to_year_1():
    day = 86_400_000
    assert Sample().load({"at": "1969-12-31"})["at"] == -day
    assert Sample().load({"at": "1900-01-01T00:00:00Z"})["at"] == -25567 * day
    assert Sample().load({"at": "0001-01-01"})["at"] == EARLIEST_MS == -719162 * day
    assert Sample().load({"at": "9999-12-31T23:59:59.999Z"})["at"] == LATEST_MS
    for outside in ("0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59.9991Z", "9999-12-31T23:00:00-01:00"):
        with pytest.raises(ValidationError, match="Must be from 0001-01-01T00:00:00.000Z to 9999-12-31T23:59:59.999Z"):
            Sample().load({"at": outside})


@pytest.mark.parametrize("text, iso", [
    ("2026-12-02T12:21:44.0981Z", "2026-12-02T12:21:44.099Z"),  # between .098 and .099: .099
    ("2026-12-02T12:21:44.098Z", "2026-12-02T12:21:44.098Z"),
    ("2026-12-02T12:21:44.098000000Z", "2026-12-02T12:21:44.098Z"),
    ("2026-12-02T12:21:44.0980000001Z", "2026-12-02T12:21:44.099Z"),  # past datetime's microseconds too
    ("2026-12-02T12:21:44.0985Z", "2026-12-02T12:21:44.099Z"),
    ("2026-12-02T12:21:44.9999999Z", "2026-12-02T12:21:45.000Z"),
    ("2026-12-02T12:21:44.5", "2026-12-02T12:21:44.500Z"),
    ("2026-12-02T18:21:44.0001+06:00", "2026-12-02T12:21:44.001Z"),
    ("1969-12-31T23:59:59.9991Z", "1970-01-01T00:00:00.000Z"),
    ("1969-12-31T23:59:59.9981Z", "1969-12-31T23:59:59.999Z"),
])
def test_a_time_between_two_milliseconds_is_rounded_up_to_the_next(text, iso):
    """Stored times are whole ms: `since <= created_at < until` holds for the bounds as given."""
    assert Sample().load({"at": text})["at"] == ms_from_iso(iso)


def test_unknown_fields_are_errors():
    with pytest.raises(ValidationError):
        Sample().load({"statе": "ai"})  # a Cyrillic "е"
    with pytest.raises(ValidationError):
        Named().load({"colour": "#fff"})


def test_titles_are_stripped_and_metadata_is_bounded():
    assert Named().load({"title": "  vip  "}) == {"title": "vip"}
    with pytest.raises(ValidationError):
        Named().load({"title": "   "})
    with pytest.raises(ValidationError):
        Named().load({"metadata": {"x": "a" * MAX_METADATA_BYTES}})


def test_full_match_refuses_a_trailing_newline():
    check = FullMatch(r"^[a-z]+$")
    assert check("abc") == "abc"
    with pytest.raises(ValidationError):
        check("abc\n")
