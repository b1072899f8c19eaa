"""The request field types of chat.api.schemas, without a server."""

import pytest
from marshmallow import ValidationError

from chat.api.schemas import Body, FullMatch, Metadata, Query, QueryInt, Timestamp, Title
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
