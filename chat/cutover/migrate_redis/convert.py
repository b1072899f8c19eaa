"""The migration's conversion of one stored value: ``chat.cutover.records.convert``, quicker on ordinary records.

Converting is most of a migration's time. ``convert`` (states/legacy.py's ``to_new`` underneath)
checks every field for every oddity the old services wrote and wraps the outcome in two tuples;
the ordinary record takes a shorter way here: a string ``userId``, ``agent`` "ai" or "human" or
absent, an object ``context``, ``metadata`` an object or null or absent, timestamps absent, null,
epoch ms or ISO 8601 with an offset, and no other field. It comes out byte for byte as ``convert``
writes it (tests/cutover/test_migrate_redis_convert.py compares the two on generated records);
every other value, a record that cannot be converted included, goes to ``convert`` itself.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any

from chat.cutover.migrate_redis.run import COPIED, DEFAULTED_TIME, outcome
from chat.cutover.records import convert, dumps, loads
from states.clock import iso_from_ms
from states.legacy import AGENT_TYPES, MAX_USER_ID_LENGTH, Record
from states.machine import State

_FIRST_STATE = {"ai": State.AI.value, "human": State.HANDOFF.value}  # as states/legacy.py's to_new
assert set(_FIRST_STATE) == set(AGENT_TYPES)
_MIN_EPOCH_MS = -62_135_596_800_000  # 0001-01-01T00:00:00.000Z
_MAX_EPOCH_MS = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_MS = timedelta(milliseconds=1)
_ABSENT: Any = object()
_UNUSUAL: Any = object()  # a timestamp the short way does not read: convert decides
_fromisoformat = datetime.fromisoformat


def migrate_value(raw: bytes, now: str, naive_tz: tzinfo) -> tuple[bytes, int, tuple[str, ...]]:
    """The bytes to write for one source value, its summary bits (run.outcome) and the old fields
    it drops; ConversionError when it cannot be converted. ``now`` and ``naive_tz`` as in convert."""
    obj = loads(raw)
    if type(obj) is dict:
        if "user_id" in obj and "agent_type" in obj:  # new format already: copied as it is
            return raw, COPIED, ()
        ordinary = _ordinary(obj, now)
        if ordinary is not None:
            return dumps(ordinary[0]), ordinary[1], ()
    converted = convert(raw, now, naive_tz)  # parses again: only unusual records come here
    return converted.value, outcome(converted), converted.dropped


def _ordinary(obj: Record, now: str) -> tuple[Record, int] | None:
    """to_new's record and summary bits for an ordinary old record; None for any other."""
    get = obj.get
    user_id = get("userId")
    if type(user_id) is not str or not 0 < len(user_id) <= MAX_USER_ID_LENGTH:
        return None
    agent = get("agent", _ABSENT)
    if agent is _ABSENT:
        agent, fields = "ai", 1  # the old service wrote "ai" for every new session
    elif agent == "ai" or agent == "human":  # noqa: PLR1714 - agent may be an unhashable JSON value
        fields = 2
    else:
        return None
    context = get("context")
    if type(context) is not dict:
        return None
    metadata = get("metadata", _ABSENT)
    if metadata is _ABSENT:
        metadata = {}
    elif metadata is None:
        metadata, fields = {}, fields + 1
    elif type(metadata) is dict:
        fields += 1
    else:
        return None
    created, updated = get("createdAt", _ABSENT), get("updatedAt", _ABSENT)
    if len(obj) != fields + 1 + (created is not _ABSENT) + (updated is not _ABSENT):
        return None  # a field beyond the old ones: convert reports it dropped
    created, updated = _stamp(created), _stamp(updated)
    if created is _UNUSUAL or updated is _UNUSUAL:
        return None
    flags = 0
    if created is None and updated is None:
        created = updated = now
        flags = DEFAULTED_TIME
    else:
        created = created or updated
        updated = updated or created
    record = {"user_id": user_id, "agent_type": agent, "context": context, "created_at": created,
              "updated_at": updated, "state": _FIRST_STATE[agent], "version": 0, "agent_id": None,
              "team_id": None, "metadata": metadata}  # fmt: skip
    return record, flags


def _stamp(value: Any) -> Any:
    """A timestamp as to_new writes it; None when absent or null; _UNUSUAL when convert must decide."""
    if type(value) is int:  # Date.now()
        return iso_from_ms(value) if _MIN_EPOCH_MS <= value <= _MAX_EPOCH_MS else _UNUSUAL
    if value is None or value is _ABSENT:
        return None
    if type(value) is not str or not value:
        return _UNUSUAL
    try:
        moment = _fromisoformat(value)
        if (
            len(value) == 24 and value[23] == "Z" and value[19] == "." and value[10] == "T"
            and value[4] == value[7] == "-" and value[13] == value[16] == ":" and value[11:13] != "24"
        ):  # fmt: skip
            return value  # toISOString()'s layout, and fromisoformat vouched for the digits
        if moment.tzinfo is None:
            return _UNUSUAL  # naive, or epoch ms as text: read in --naive-tz or as a number
        return iso_from_ms((moment - _EPOCH) // _ONE_MS)
    except (ValueError, OverflowError):
        return _UNUSUAL
