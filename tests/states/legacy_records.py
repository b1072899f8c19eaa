"""Hypothesis strategies for the old and the new session record (tests/states/test_legacy.py and
tests/cutover/test_records.py); no fixtures here."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from hypothesis import strategies as st

from states.clock import iso_from_ms
from states.legacy import OLD_FIELDS

ABSENT = object()
NOW = "2030-01-01T00:00:00.000Z"  # the "migration time" for records without timestamps
MS = st.integers(min_value=0, max_value=4_102_444_800_000)  # 1970 .. 2100
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _json(int_bits: int):
    scalars = st.none() | st.booleans() | st.integers(-(2**int_bits), 2**int_bits) | st.floats(
        allow_nan=False, allow_infinity=False
    ) | st.text(max_size=10)
    values = st.recursive(
        scalars,
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
        max_leaves=8,
    )
    return values, st.dictionaries(st.text(max_size=6), values, max_size=4)


json_values, json_objects = _json(70)
# The service writes its records with orjson, which refuses integers outside 64 bits: the
# checks on records of the new service keep to integers it can write.
json_values_63, json_objects_63 = _json(63)


def _moment(ms: int) -> datetime:
    return EPOCH + timedelta(milliseconds=ms)


# Every timestamp form states.legacy.parse_timestamp accepts, plus the ways of being absent.
timestamps = st.one_of(
    st.just(ABSENT),
    st.none(),
    st.just(""),
    MS.map(iso_from_ms),  # JavaScript's toISOString()
    MS,  # Date.now()
    MS.map(str),  # epoch ms as a string
    MS.map(lambda ms: ms + 0.25),  # fractional epoch ms
    st.builds(
        lambda ms, minutes: _moment(ms).astimezone(timezone(timedelta(minutes=minutes))).isoformat(),
        MS,
        st.integers(-720, 840),
    ),
    MS.map(lambda ms: _moment(ms).replace(tzinfo=None).isoformat()),  # naive: UTC
    MS.map(lambda ms: _moment(ms).date().isoformat()),  # date only
)

# Old fields the migration drops; "user_id"/"agent_type" together would make a new record.
extra_names = st.text(min_size=1, max_size=8).filter(
    lambda name: name not in OLD_FIELDS and name not in ("user_id", "agent_type")
)


@st.composite
def old_records(draw) -> dict:
    """An old Node.js record in any shape the migration converts, in a random key order."""
    fields = {
        "userId": draw(
            st.text(min_size=1, max_size=64) | st.integers(-(10**30), 10**30)
        ),
        "agent": draw(st.sampled_from([ABSENT, None, "ai", "human"])),
        "context": draw(st.sampled_from([ABSENT, None]) | json_objects),
        "metadata": draw(st.sampled_from([ABSENT, None]) | json_objects),
        "createdAt": draw(timestamps),
        "updatedAt": draw(timestamps),
    }
    fields.update(draw(st.dictionaries(extra_names, json_values, max_size=2)))
    items = [(k, v) for k, v in fields.items() if v is not ABSENT]
    return dict(draw(st.permutations(items)))


service_records = st.fixed_dictionaries(
    {
        "user_id": st.text(min_size=1, max_size=64),
        "agent_type": st.sampled_from(["ai", "human"]),
        "context": json_objects_63,  # the service's orjson cannot write bigger integers either
        "created_at": MS.map(iso_from_ms),
        "updated_at": MS.map(iso_from_ms),
        "state": st.sampled_from(["ai", "handoff", "human", "closed"]),
        "version": st.integers(0, 100),
        "agent_id": st.none() | st.text(min_size=1, max_size=8),
        "team_id": st.none() | st.text(min_size=1, max_size=8),
        "metadata": json_objects_63,
        "handoff_at": st.none() | MS.map(iso_from_ms),
    }
)
