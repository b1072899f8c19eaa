"""The Redis record schema: the guide's five-field format, full records, round trips."""

import orjson
import pytest

from states import RecordError, dump_record, load_record

FIVE_FIELDS = {
    "user_id": "user123",
    "agent_type": "ai",
    "context": {"lang": "zh"},
    "created_at": "2024-01-01T10:00:00Z",
    "updated_at": "2024-01-01T10:05:00Z",
}


def test_five_field_record_loads_as_ai_version_0():
    c = load_record("s1", orjson.dumps(FIVE_FIELDS))
    assert (c.state, c.version, c.agent_id, c.team_id, c.metadata) == ("ai", 0, None, None, {})
    assert c.context == {"lang": "zh"}


def test_five_field_human_record_loads_as_handoff():
    c = load_record("s1", orjson.dumps({**FIVE_FIELDS, "agent_type": "human"}))
    assert (c.state, c.version) == ("handoff", 0)


def test_unknown_fields_survive_a_round_trip():
    raw = orjson.dumps({**FIVE_FIELDS, "legacy_flag": [1, 2], "state": "ai", "version": 3})
    c = load_record("s1", raw)
    assert c.extra == {"legacy_flag": [1, 2]}
    again = orjson.loads(dump_record(c))
    assert again["legacy_flag"] == [1, 2] and again["version"] == 3
    assert load_record("s1", dump_record(c)) == c


@pytest.mark.parametrize(
    "raw",
    [
        b"not json",
        b"[1, 2]",
        orjson.dumps({**FIVE_FIELDS, "agent_type": "robot"}),
        orjson.dumps({k: v for k, v in FIVE_FIELDS.items() if k != "user_id"}),
        orjson.dumps({**FIVE_FIELDS, "created_at": "yesterday"}),
        orjson.dumps({**FIVE_FIELDS, "state": "sleeping"}),
        orjson.dumps({**FIVE_FIELDS, "version": -1}),
    ],
)
def test_bad_records_are_refused(raw):
    with pytest.raises(RecordError):
        load_record("s1", raw)
