"""The old Node.js session record <-> the live record of PROTOCOL section 5, both directions.

Old: ``session:{id}`` = ``{"userId", "agent", "context", "metadata"?, "createdAt"?, "updatedAt"?}``;
new: the record states/record.py loads. ``to_new`` is the migration's conversion, ``to_old`` the
reverse migration's; both work on parsed JSON (chat/cutover/records.py reads and writes the bytes).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any, NamedTuple

import orjson
from marshmallow import validate

from states.clock import iso_from_ms, ms_from_iso
from states.machine import State
from states.record import RecordSchema

Record = dict[str, Any]

# The user-id limit and the agent types are the record schema's own (states/record.py).
_SCHEMA_FIELDS = RecordSchema().fields

MAX_USER_ID_LENGTH = next(v.max or 0 for v in _SCHEMA_FIELDS["user_id"].validators if isinstance(v, validate.Length))
AGENT_TYPES = next(tuple(v.choices) for v in _SCHEMA_FIELDS["agent_type"].validators if isinstance(v, validate.OneOf))
OLD_FIELDS = frozenset({"userId", "agent", "context", "metadata", "createdAt", "updatedAt"})
OLD_ORDER = ("userId", "agent", "context", "metadata", "createdAt", "updatedAt")  # as the old service wrote them
TIMESTAMP_FIELDS = ("created_at", "updated_at")
# The state a record without one loads in (states/record.py); a plain dict: Enum.value is slow.
_FIRST_STATE = {"ai": State.AI.value, "human": State.HANDOFF.value}

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_MS = timedelta(milliseconds=1)
_EPOCH_MS = re.compile(r"[+-]?\d+(?:\.\d*)?")  # epoch ms written as text
_DATE_ONLY = re.compile(r"\d{4}-\d{2}-\d{2}")  # an ISO 8601 date, no time of day
_MIN_EPOCH_MS = -62_135_596_800_000  # 0001-01-01T00:00:00.000Z
_MAX_EPOCH_MS = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z
_ABSENT: Any = type("Absent", (), {"__repr__": lambda self: "<absent>"})()
_UNPARSEABLE = "<unparseable>"


class LegacyError(Exception):
    """A record that cannot be converted; ``code`` names the kind, ``reason`` says why."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


class ConversionError(LegacyError):
    """An old record that cannot be turned into the new format."""


class ReverseError(LegacyError):
    """A new-format record that cannot be turned back into an old one."""


# --------------------------------------------------------------------------- JSON


def canonical_json(value: Any) -> bytes:
    """Sorted-key compact JSON: equal exactly when the JSON values are equal (1 != 1.0, 0 != false)."""
    try:
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
    except (orjson.JSONEncodeError, TypeError):
        return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def _same_json(a: Any, b: Any) -> bool:
    return canonical_json(a) == canonical_json(b)


_JSON_TYPES = {type(None): "null", bool: "boolean", int: "number", float: "number", str: "string", list: "array"}


def json_type(value: Any) -> str:
    """The JSON name of a parsed value's type."""
    return _JSON_TYPES.get(type(value), "object")


def _preview(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


# --------------------------------------------------------------------------- timestamps


def parse_timestamp(value: Any, name: str, naive_tz: tzinfo = UTC) -> str | None:
    """An old ``createdAt``/``updatedAt`` (ISO 8601, offset or UTC; epoch ms as a number or a string)
    as ``YYYY-MM-DDTHH:MM:SS.mmmZ``; None when absent. An ISO time without an offset (naive,
    ``"2025-04-30 18:00:00"``) is read in ``naive_tz``; a date alone (``"2025-04-30"``) is UTC
    midnight, as JavaScript's Date reads it."""
    return _parse_timestamp(value, name, naive_tz)[0]


def _parse_timestamp(value: Any, name: str, naive_tz: tzinfo) -> tuple[str | None, bool]:
    """parse_timestamp, and whether the value was naive (parsed once: the migration's hot path)."""
    if type(value) is int and _MIN_EPOCH_MS <= value <= _MAX_EPOCH_MS:
        return iso_from_ms(value), False  # Date.now(), the other common case
    if value is None or value == "":
        return None, False
    if isinstance(value, str):
        return _parse_text(value, name, naive_tz)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return _from_epoch_ms(value, name), False
    raise ConversionError("bad_timestamp", f"{name} is a JSON {json_type(value)}")


def _parse_text(value: str, name: str, naive_tz: tzinfo) -> tuple[str, bool]:
    if _is_canonical_layout(value):
        # JavaScript's toISOString() form, the common case: valid as it is if it parses.
        try:
            datetime.fromisoformat(value)
            return value, False
        except ValueError:
            raise ConversionError("bad_timestamp", f"{name} is not a valid date: {_preview(value)}") from None
    text = value.strip()
    if _EPOCH_MS.fullmatch(text):
        return _from_epoch_ms(float(text) if "." in text else int(text), name), False
    try:
        moment = datetime.fromisoformat(text)
        # `new Date("2025-04-30")` is UTC midnight: only a date-time without an offset is local time
        naive = moment.tzinfo is None and not _DATE_ONLY.fullmatch(text)
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=naive_tz if naive else UTC)
        return iso_from_ms((moment - _EPOCH) // _ONE_MS), naive
    except (ValueError, OverflowError):
        problem = f"{name} is neither ISO 8601 nor epoch ms: {_preview(value)}"
        raise ConversionError("bad_timestamp", problem) from None


def _is_canonical_layout(text: str) -> bool:
    """The shape of ``YYYY-MM-DDTHH:MM:SS.mmmZ`` (fromisoformat still vouches for the digits)."""
    # (not 24:00: newer Pythons read it as the next midnight)
    return (len(text) == 24 and text[23] == "Z" and text[19] == "." and text[10] == "T"
            and text[4] == text[7] == "-" and text[13] == text[16] == ":" and text[11:13] != "24")


def _from_epoch_ms(value: int | float, name: str) -> str:
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ConversionError("bad_timestamp", f"{name} is not a finite number")
        value = math.floor(value)  # whole milliseconds, rounded down like JavaScript's Date
    if not _MIN_EPOCH_MS <= value <= _MAX_EPOCH_MS:
        raise ConversionError("bad_timestamp", f"{name} epoch ms out of range: {_preview(value)}")
    return iso_from_ms(value)


def _canonical_stamp(value: Any, naive_tz: tzinfo = UTC) -> str | None:
    """What the migration makes of a timestamp value, a naive one read in ``naive_tz`` (None: absent;
    _UNPARSEABLE: refused)."""
    if value is _ABSENT:
        return None
    try:
        return parse_timestamp(value, "timestamp", naive_tz)
    except ConversionError:
        return _UNPARSEABLE


def is_canonical_timestamp(stamp: str) -> bool:
    """``YYYY-MM-DDTHH:MM:SS.mmmZ`` and a real moment."""
    try:
        return parse_timestamp(stamp, "timestamp") == stamp
    except ConversionError:
        return False


# --------------------------------------------------------------------------- old -> new


def is_new_format(obj: Any) -> bool:
    """The PROTOCOL 5 record is recognised by its two renamed fields."""
    return isinstance(obj, dict) and "user_id" in obj and "agent_type" in obj


def is_old_format(obj: Any) -> bool:
    """An old Node.js record: an object with ``userId`` and not the new format."""
    return isinstance(obj, dict) and "userId" in obj and not is_new_format(obj)


class Converted(NamedTuple):
    """The new record for an old one, and what the conversion had to make up or leave out."""

    record: Record
    defaulted_time: bool  # no createdAt/updatedAt: the migration time stands in for both
    dropped: tuple[str, ...]  # old fields that have no place in the new record
    naive_time: bool = False  # a timestamp without an offset, read in the naive zone


def to_new(obj: Record, now: str, naive_tz: tzinfo = UTC) -> Converted:
    """The new record for an old one (``now`` stands in for absent timestamps); ConversionError if none.

    Timestamps without an offset are read in ``naive_tz``; a record whose ``updated_at`` would
    then come before its ``created_at`` is refused (the zone is wrong) rather than reordered.
    Each field is checked by type first and only unusual values take the slower helpers: a
    100k-key migration spends most of its time here.
    """
    get = obj.get
    user_id = get("userId")
    if type(user_id) is not str or not 0 < len(user_id) <= MAX_USER_ID_LENGTH:
        user_id = _user_id(obj, user_id)
    agent = get("agent")
    if agent is None:
        agent = "ai"  # the old service wrote "ai" for every new session
    elif agent not in AGENT_TYPES:
        raise ConversionError("bad_agent", f"agent is not 'ai' or 'human': {_preview(agent)}")
    context = get("context")
    if type(context) is not dict:
        context = _object_field(obj, "context")
    metadata = get("metadata")
    if type(metadata) is not dict:
        metadata = _object_field(obj, "metadata")
    created, updated, naive = _times(get("createdAt"), get("updatedAt"), naive_tz)
    defaulted = created is None and updated is None  # each stands in for the other; neither: now
    if defaulted:
        created = updated = now
    else:
        created = created or updated
        updated = updated or created
    # The contract's field order (PROTOCOL 5); states/record.py loads it as version 0.
    record = {"user_id": user_id, "agent_type": agent, "context": context, "created_at": created,
              "updated_at": updated, "state": _FIRST_STATE[agent], "version": 0, "agent_id": None, "team_id": None,
              "metadata": metadata}
    dropped = () if OLD_FIELDS.issuperset(obj) else tuple(sorted(obj.keys() - OLD_FIELDS))
    return Converted(record, defaulted, dropped, naive)


def _times(created: Any, updated: Any, naive_tz: tzinfo) -> tuple[str | None, str | None, bool]:
    """``createdAt`` and ``updatedAt`` parsed, and whether either was naive (read in ``naive_tz``)."""
    created, naive_created = _parse_timestamp(created, "createdAt", naive_tz)
    updated, naive_updated = _parse_timestamp(updated, "updatedAt", naive_tz)
    naive = naive_created or naive_updated
    if naive and created is not None and updated is not None and updated < created:
        raise ConversionError(
            "naive_time_order",
            f"updatedAt ({updated}) comes before createdAt ({created}) once the time without an offset is "
            f"read in {naive_tz}: give --naive-tz the old services' time zone",
        )
    return created, updated, naive  # (canonical stamps of years 0001-9999 sort as text)


def _user_id(obj: Record, user_id: Any) -> str:
    """The slow path of ``userId``: absent, a number, or not acceptable."""
    if user_id is None:
        hint = " (has user_id but no agent_type)" if "user_id" in obj else ""
        raise ConversionError("missing_user_id", f"no userId{hint}")
    if isinstance(user_id, int) and not isinstance(user_id, bool):
        user_id = str(user_id)  # the contract's user ids are strings (JWT sub)
    if not isinstance(user_id, str) or not user_id:
        raise ConversionError("bad_user_id", f"userId is not a non-empty string: {_preview(user_id)}")
    if len(user_id) > MAX_USER_ID_LENGTH:
        problem = f"userId is longer than {MAX_USER_ID_LENGTH} characters: {_preview(user_id)}"
        raise ConversionError("bad_user_id", problem)
    return user_id


def _object_field(obj: Record, name: str) -> Record:
    value = obj.get(name)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConversionError(f"bad_{name}", f"{name} is a JSON {json_type(value)}, not an object")
    return value


# --------------------------------------------------------------------------- new -> old


def old_agent(record: Record) -> str:
    """The old ``agent``: ``human`` in handoff and human, ``ai`` in ai; closed keeps agent_type."""
    state = record.get("state")
    if state in (State.HANDOFF.value, State.HUMAN.value):
        return "human"
    if state == State.AI.value:
        return "ai"
    if state not in (None, State.CLOSED.value):
        raise ReverseError("bad_state", f"state is not one of ai/handoff/human/closed: {state!r}")
    agent_type = record.get("agent_type")
    if agent_type not in AGENT_TYPES:
        raise ReverseError("bad_agent_type", f"agent_type is not 'ai' or 'human': {agent_type!r}")
    return str(agent_type)


def to_old(record: Record, original: Record | None = None, naive_tz: tzinfo = UTC) -> Record:
    """The old record for a new one: the inverse of ``to_new``; ReverseError when there is none.

    ``state`` beyond ai/human, ``version``, ``agent_id``, ``team_id`` and ``handoff_at`` have no
    place in it. With the ``original`` old record the key was migrated from, every field the
    conversation has not changed takes the original's raw form back (an epoch-ms ``createdAt``,
    a numeric ``userId``, fields the migration dropped): an unchanged record comes back as it was.
    ``naive_tz`` is the zone the migration read the original's times without an offset in (its
    ``--naive-tz``): only with it is such a time recognised as unchanged.
    """
    user_id = record.get("user_id")
    if type(user_id) is not str or not user_id:
        raise ReverseError("bad_user_id", f"user_id is not a non-empty string: {user_id!r}")
    context = record.get("context")
    if context is None:
        context = {}
    if not isinstance(context, dict):
        raise ReverseError("bad_context", "context is not an object")
    old: Record = {"userId": user_id, "agent": old_agent(record), "context": context}
    metadata = record.get("metadata")
    if metadata is not None:
        if not isinstance(metadata, dict):
            raise ReverseError("bad_metadata", "metadata is not an object")
        old["metadata"] = metadata
    for new_name, old_name in (("created_at", "createdAt"), ("updated_at", "updatedAt")):
        value = record.get(new_name)
        if value is None:
            continue
        if type(value) is not str or _canonical_stamp(value) in (None, _UNPARSEABLE):
            raise ReverseError("bad_timestamp", f"{new_name} is not an ISO 8601 timestamp: {value!r}")
        old[old_name] = value
    return old if original is None else _like_original(old, original, naive_tz)


def _like_original(old: Record, original: Record, naive_tz: tzinfo) -> Record:
    """``old`` with the original's raw value for every field that converts to the same value."""

    def raw(name: str) -> Any:
        return original.get(name, _ABSENT)

    user_id = raw("userId")
    as_migrated = str(user_id) if isinstance(user_id, int) and not isinstance(user_id, bool) else user_id
    fields: Record = {"userId": user_id if as_migrated == old["userId"] else old["userId"]}
    agent = raw("agent")
    fields["agent"] = agent if ("ai" if agent in (_ABSENT, None) else agent) == old["agent"] else old["agent"]
    for name in ("context", "metadata"):
        value = raw(name)
        as_migrated = {} if value in (_ABSENT, None) else value
        fields[name] = value if _same_json(as_migrated, old.get(name, {})) else old.get(name, _ABSENT)
    fields.update(_original_times(old, raw, naive_tz))
    result: Record = {}
    for name, value in original.items():  # the original's key order, dropped fields included
        if name not in OLD_FIELDS:
            result[name] = value
        elif fields[name] is not _ABSENT:
            result[name] = fields[name]
    for name in OLD_ORDER:
        if name not in original and fields[name] is not _ABSENT:
            result[name] = fields[name]
    return result


def _original_times(old: Record, raw: Callable[[str], Any], naive_tz: tzinfo) -> Record:
    """createdAt and updatedAt as the original wrote them where the conversation kept them (the
    original's naive times read in ``naive_tz``, as the migration read them)."""
    created = _canonical_stamp(raw("createdAt"), naive_tz)
    updated = _canonical_stamp(raw("updatedAt"), naive_tz)
    now_created = _canonical_stamp(old.get("createdAt", _ABSENT))
    now_updated = _canonical_stamp(old.get("updatedAt", _ABSENT))
    # convert: created = createdAt or updatedAt, updated = updatedAt or createdAt; with
    # neither, both are the migration time (unknown here, but created_at never changes after).
    fields: Record = {}
    if created is not None:
        fields["createdAt"] = raw("createdAt") if created == now_created else _styled(old, "createdAt", raw)
    elif updated is None or updated == now_created:
        fields["createdAt"] = raw("createdAt")
    else:
        fields["createdAt"] = old.get("createdAt", _ABSENT)
    if updated is not None:
        fields["updatedAt"] = raw("updatedAt") if updated == now_updated else _styled(old, "updatedAt", raw)
    elif now_updated == (created if created is not None else now_created):
        fields["updatedAt"] = raw("updatedAt")
    else:
        fields["updatedAt"] = old.get("updatedAt", _ABSENT)
    return fields


def _styled(old: Record, name: str, original: Callable[[str], Any]) -> Any:
    """A changed timestamp in the style the original used (epoch ms stays epoch ms)."""
    raw = original(name)
    value = old.get(name, _ABSENT)
    if value is _ABSENT:
        return _ABSENT
    stamp = _canonical_stamp(value)
    assert stamp is not None
    if isinstance(raw, int | float) and not isinstance(raw, bool):
        return ms_from_iso(stamp)
    if isinstance(raw, str) and _EPOCH_MS.fullmatch(raw.strip()):
        return str(ms_from_iso(stamp))
    return value


def newest_ms(obj: Record) -> int | None:
    """The later of a record's two timestamps (either format) in epoch ms; None: neither parses."""
    names = ("updated_at", "created_at") if is_new_format(obj) else ("updatedAt", "createdAt")
    stamps = [_canonical_stamp(obj.get(name)) for name in names]
    found = [ms_from_iso(stamp) for stamp in stamps if stamp not in (None, _UNPARSEABLE)]
    return max(found, default=None)
