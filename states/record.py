"""The Redis live record of PROTOCOL section 5, checked by a marshmallow schema.

Stored as JSON at `session:{id}`. A record holding only the migration guide's five fields
(`user_id`, `agent_type`, `context`, `created_at`, `updated_at`) loads as state `ai` (or
`handoff` for a human agent_type) with version 0. Fields this version does not know are
kept and written back unchanged, so a record survives any round trip.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field, fields
from functools import lru_cache
from typing import Any

import orjson
from marshmallow import INCLUDE, Schema, ValidationError, post_load, validate
from marshmallow import fields as mf

from states.clock import ms_from_iso
from states.machine import AgentType, State


class RecordError(Exception):
    """A stored record is not valid JSON or does not match the schema."""


def _iso(value: str) -> None:
    try:
        ms_from_iso(value)
    except (ValueError, TypeError):
        raise ValidationError("not an ISO 8601 timestamp") from None


class RecordSchema(Schema):
    """The JSON shape at session:{id}; unknown fields are kept."""

    class Meta:
        unknown = INCLUDE

    user_id = mf.String(required=True, validate=validate.Length(min=1, max=64))
    agent_type = mf.String(required=True, validate=validate.OneOf([a.value for a in AgentType]))
    context = mf.Dict(load_default=dict)
    created_at = mf.String(required=True, validate=_iso)
    updated_at = mf.String(required=True, validate=_iso)
    state = mf.String(load_default=None, allow_none=True, validate=validate.OneOf([s.value for s in State]))
    version = mf.Integer(load_default=0, validate=validate.Range(min=0), strict=True)
    agent_id = mf.String(load_default=None, allow_none=True)
    team_id = mf.String(load_default=None, allow_none=True)
    metadata = mf.Dict(load_default=dict)
    handoff_at = mf.String(load_default=None, allow_none=True, validate=_iso)

    @post_load
    def _default_state(self, data: dict[str, Any], **_: object) -> dict[str, Any]:
        if data.get("state") is None:
            data["state"] = State.AI.value if data["agent_type"] == AgentType.AI else State.HANDOFF.value
        return data


_SCHEMA = RecordSchema()


@dataclass
class Conversation:
    """A conversation's live state: the transient model the shared machine acts on."""

    id: str
    user_id: str
    agent_type: str
    created_at: str
    updated_at: str
    state: str = State.AI.value
    version: int = 0
    agent_id: str | None = None
    team_id: str | None = None
    context: dict[str, Any] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)
    handoff_at: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # fields of the record this version does not know

    def copy(self) -> Conversation:
        """A deep copy, so a refused trigger never touches the loaded record."""
        return copy.deepcopy(self)


_KNOWN = {f.name for f in fields(Conversation)} - {"id", "extra"}


def load_record(conversation_id: str, raw: bytes | str) -> Conversation:
    """Parse and check the JSON at session:{id}."""
    known, extra = _validated(conversation_id, raw if isinstance(raw, bytes) else raw.encode())
    # fresh containers per call: callers may change their copy, never the cached one
    fresh: dict[str, Any] = {k: (copy.deepcopy(v) if isinstance(v, dict | list) else v) for k, v in known.items()}
    return Conversation(id=conversation_id, extra=copy.deepcopy(extra) if extra else {}, **fresh)


@lru_cache(maxsize=4096)
def _validated(conversation_id: str, raw: bytes) -> tuple[dict[str, Any], dict[str, Any]]:
    """The schema check of one exact record value, cached: on the message path the same record
    is read again and again until its next transition changes the bytes."""
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise RecordError(f"session:{conversation_id} is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise RecordError(f"session:{conversation_id} is not a JSON object")
    try:
        loaded = _SCHEMA.load(data)
    except ValidationError as exc:
        raise RecordError(f"session:{conversation_id} is invalid: {exc.messages}") from None
    extra = {k: v for k, v in loaded.items() if k not in _KNOWN}
    known = {k: v for k, v in loaded.items() if k in _KNOWN}
    return known, extra


def dump_record(conversation: Conversation) -> bytes:
    """The JSON stored at session:{id} (the id is the key, not a field)."""
    data = asdict(conversation)
    data.pop("id")
    extra = data.pop("extra")
    return orjson.dumps({**extra, **data})
