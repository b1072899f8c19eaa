"""Time helpers: ISO 8601 UTC strings in the record, epoch milliseconds in SQL."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from states.clock import iso_from_ms, ms_from_iso, now_iso, now_ms


def test_iso_has_milliseconds_and_a_z():
    assert iso_from_ms(0) == "1970-01-01T00:00:00.000Z"
    assert iso_from_ms(1_704_103_200_123) == "2024-01-01T10:00:00.123Z"


@pytest.mark.parametrize(
    "text, ms",
    [
        ("2024-01-01T10:00:00Z", 1_704_103_200_000),
        ("2024-01-01T10:00:00.5z", 1_704_103_200_500),
        ("2024-01-01T12:00:00+02:00", 1_704_103_200_000),
        ("2024-01-01T10:00:00", 1_704_103_200_000),  # naive means UTC
        (" 2024-01-01T10:00:00.0004Z ", 1_704_103_200_000),  # rounded to the millisecond
    ],
)
def test_iso_forms_read_as_utc_milliseconds(text, ms):
    assert ms_from_iso(text) == ms


@given(st.integers(min_value=0, max_value=253_402_300_799_999))
def test_milliseconds_survive_a_round_trip(ms):
    assert ms_from_iso(iso_from_ms(ms)) == ms


def test_now_is_consistent():
    before = now_ms()
    assert before <= ms_from_iso(now_iso()) <= now_ms()
