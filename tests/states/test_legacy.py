"""rollback.to_old, the inverse of migrate_redis.convert: what survives old -> new -> old.

No servers: these are the conversion functions alone, checked with hypothesis on every
record shape migrate_redis accepts.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import migrate_redis as mr
import pytest
import rollback
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

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
# migrate_redis.loads (orjson) reads an integer outside [-2**63, 2**64) as a float: the
# migration itself changes such a value (old -> new is lossy there, not new -> old), so the
# checks that compare against the old record's values keep to integers orjson reads exactly.
json_values_63, json_objects_63 = _json(63)


def _moment(ms: int) -> datetime:
    return EPOCH + timedelta(milliseconds=ms)


# Every timestamp form migrate_redis.parse_timestamp accepts, plus the ways of being absent.
timestamps = st.one_of(
    st.just(ABSENT),
    st.none(),
    st.just(""),
    MS.map(mr.format_epoch_ms),  # JavaScript's toISOString()
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
    lambda name: name not in mr.OLD_FIELDS and name not in ("user_id", "agent_type")
)


@st.composite
def old_records(draw) -> dict:
    """An old Node.js record in any shape migrate_redis converts, in a random key order."""
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


def migrate(raw: bytes) -> tuple[mr.Converted, dict]:
    """What migrate_redis writes for ``raw``, read back as the service would read it."""
    try:
        converted = mr.convert(raw, NOW)
    except mr.ConversionError:
        assume(False)
    assert not converted.copied
    return converted, mr.loads(converted.value)


def canonical(value) -> bytes:
    return rollback.canonical_json(value)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(old_records(), st.sampled_from([None, 0, 2]))
def test_old_new_old_with_the_original_is_exact(old, indent):
    """With the original at hand (backup or old db), an unchanged record comes back byte for byte."""
    raw = json.dumps(old, indent=indent).encode()
    _, new = migrate(raw)
    original = (mr.loads(raw), raw)

    back = rollback.to_old(new, original[0])

    assert canonical(back) == canonical(original[0])
    assert list(back) == list(original[0])  # the original's key order too
    assert rollback.encode_old(back, original) == raw


@settings(max_examples=200, deadline=None)
@given(
    st.text(min_size=1, max_size=64),
    st.sampled_from(["ai", "human"]),
    json_objects_63,
    json_objects_63,
    MS,
    MS,
)
def test_old_new_old_without_the_original_is_exact_for_the_canonical_shape(
    user_id, agent, context, metadata, created_ms, updated_ms
):
    """Without it, exact for what the old service itself wrote: every field, ISO strings with Z."""
    old = {
        "userId": user_id,
        "agent": agent,
        "context": context,
        "metadata": metadata,
        "createdAt": mr.format_epoch_ms(created_ms),
        "updatedAt": mr.format_epoch_ms(updated_ms),
    }
    raw = mr.dumps(old)
    _, new = migrate(raw)

    back = rollback.to_old(new)

    assert canonical(back) == canonical(old)
    assert rollback.encode_old(back) == raw


@settings(max_examples=300, deadline=None)
@given(old_records())
def test_new_old_new_is_exact_for_any_migrated_record(old):
    """Whatever the old shape, converting back and migrating again gives the same new record."""
    converted, new = migrate(json.dumps(old).encode())

    again = mr.convert(rollback.encode_old(rollback.to_old(new)), "2099-01-01T00:00:00.000Z")

    assert again.value == converted.value


service_records = st.fixed_dictionaries(
    {
        "user_id": st.text(min_size=1, max_size=64),
        "agent_type": st.sampled_from(["ai", "human"]),
        "context": json_objects_63,  # the service's orjson cannot write bigger integers either
        "created_at": MS.map(mr.format_epoch_ms),
        "updated_at": MS.map(mr.format_epoch_ms),
        "state": st.sampled_from(["ai", "handoff", "human", "closed"]),
        "version": st.integers(0, 100),
        "agent_id": st.none() | st.text(min_size=1, max_size=8),
        "team_id": st.none() | st.text(min_size=1, max_size=8),
        "metadata": json_objects_63,
        "handoff_at": st.none() | MS.map(mr.format_epoch_ms),
    }
)


@settings(max_examples=200, deadline=None)
@given(service_records)
def test_records_of_the_new_service_keep_what_the_old_format_can_hold(record):
    """A conversation created after the cut-over: everything the old record has a field for."""
    old = rollback.to_old(record)

    assert set(old) == {"userId", "agent", "context", "metadata", "createdAt", "updatedAt"}
    expected_agent = {"ai": "ai", "handoff": "human", "human": "human"}.get(record["state"], record["agent_type"])
    assert old["agent"] == expected_agent
    again = mr.convert(rollback.encode_old(old), NOW).record
    for name in ("user_id", "context", "metadata", "created_at", "updated_at"):
        assert canonical(again[name]) == canonical(record[name]), name
    assert again["agent_type"] == expected_agent


def test_a_changed_record_keeps_the_change_and_the_original_forms():
    original = {"userId": 7, "createdAt": 1704103200000, "updatedAt": "1704103200000", "note": "kept"}
    _, new = migrate(json.dumps(original).encode())
    new.update(state="human", agent_type="human", updated_at="2024-06-01T00:00:00.000Z",
               metadata={"vip": True}, context={"k": 1})

    back = rollback.to_old(new, original)

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
    with pytest.raises(rollback.ReverseError) as exc:
        rollback.to_old(record)
    assert exc.value.code == code


def test_a_five_field_record_has_no_metadata_to_give_back():
    record = {"user_id": "u", "agent_type": "human", "context": {}, "created_at": NOW, "updated_at": NOW}
    assert rollback.to_old(record) == {"userId": "u", "agent": "human", "context": {}, "createdAt": NOW,
                                       "updatedAt": NOW}
