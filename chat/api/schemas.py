"""Marshmallow schemas shared by the REST modules: field types, the objects C, M, E, errors.

Request schemas validate: unknown body fields and unknown query parameters are errors. Their
syntactic constraints (length, range, enum, pattern) are all ones apispec writes into the
OpenAPI document, so whatever breaks the document is refused; what only the server can judge
(a cursor's content, a real calendar date, the metadata's size) is refused with 400 as well.
Response schemas are never used to load anything: they describe the JSON the handlers return,
for the document, and stay open (clients must accept fields added later).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from marshmallow import EXCLUDE, RAISE, Schema, ValidationError, fields, validate, validates_schema

from chat.auth import MAX_SUB_CHARS
from chat.limits import MAX_METADATA_BYTES, MAX_METADATA_DEPTH, check_metadata
from chat.store.models import SENDER_TYPES, STATES
from states.clock import datetime_from_iso, iso_from_ms

DATE_TIME = {"format": "date-time"}


class Body(Schema):
    """A JSON request body: unknown fields are an error."""

    class Meta:
        unknown = RAISE


class Query(Schema):
    """A query string: an unknown parameter is an error too (a misspelt filter must not
    silently list everything)."""

    class Meta:
        unknown = RAISE


class WindowQuery(Query):
    """A query with a `since`/`until` window (declared by each subclass with its own meaning): until
    must not come before since."""

    @validates_schema
    def _window(self, data: dict[str, Any], **_: Any) -> None:
        if "since" in data and "until" in data and data["since"] > data["until"]:
            raise ValidationError("must not be before since", "until")


class Out(Schema):
    """A response object (documentation only); clients must accept fields added later."""

    class Meta:
        unknown = EXCLUDE


class FullMatch(validate.Regexp):
    """A pattern the whole value must match (re.match would accept a trailing newline after `$`)."""

    def __call__(self, value: Any) -> Any:
        if self.regex.fullmatch(value) is None:
            raise ValidationError(self._format_error(value))
        return value


class Stripped(fields.String):
    """A string without leading or trailing white space: at most `max_length` characters as
    sent, then stripped and checked again (at least one character must remain)."""

    def __init__(self, max_length: int, **kwargs: Any) -> None:
        self.max_length = max_length
        super().__init__(validate=validate.Length(min=1, max=max_length), **kwargs)

    def _deserialize(self, value: Any, attr: str | None, data: Mapping[str, Any] | None, **kwargs: Any) -> str:
        text = super()._deserialize(value, attr, data, **kwargs)
        if len(text) > self.max_length:
            raise ValidationError(f"Longer than maximum length {self.max_length}.")
        return text.strip()


def Id(**kwargs: Any) -> fields.String:  # noqa: N802 - a field factory reads like a field class
    """An id or user id: 1 to 64 characters (the VARCHAR(64) columns)."""
    return fields.String(validate=validate.Length(min=1, max=64), **kwargs)


def _no_control_characters(value: str) -> None:
    if any(unicodedata.category(c) == "Cc" for c in value):
        raise ValidationError("Must not contain control characters.")


def UserId(**kwargs: Any) -> fields.String:  # noqa: N802 - a field factory reads like a field class
    """A user id as a token's `sub` (PROTOCOL 2): 1 to 64 characters, no control characters."""
    rule = f"1 to {MAX_SUB_CHARS} characters, no control characters"
    metadata = kwargs.pop("metadata", {})
    metadata["description"] = f"{metadata['description']}; {rule}" if "description" in metadata else rule
    return fields.String(validate=[validate.Length(min=1, max=MAX_SUB_CHARS), _no_control_characters],
                         metadata=metadata, **kwargs)


def Title(**kwargs: Any) -> fields.String:  # noqa: N802
    """A label title or team name: 1 to 191 characters once white space around it is stripped."""
    metadata = {"description": "leading and trailing white space is removed", **kwargs.pop("metadata", {})}
    return Stripped(191, metadata=metadata, **kwargs)


def Description(**kwargs: Any) -> fields.String:  # noqa: N802
    """Free text up to 2000 characters, or null."""
    return fields.String(validate=validate.Length(max=2000), allow_none=True, **kwargs)


class QueryInt(fields.Integer):
    """An integer in a query string: ASCII digits only (no "1.0", " 1", "1_000" or "١")."""

    _DIGITS = re.compile(r"-?[0-9]{1,12}")

    def _deserialize(self, value: Any, attr: str | None, data: Mapping[str, Any] | None, **kwargs: Any) -> int:
        if not isinstance(value, str) or not self._DIGITS.fullmatch(value):
            raise self.make_error("invalid", input=value)
        return int(value)


TIMESTAMP_CHARS = r"^[0-9T:.+ Zz-]{1,40}$"
EARLIEST_MS, LATEST_MS = -62135596800000, 253402300799999  # 0001-01-01T00:00:00.000Z, 9999-12-31T23:59:59.999Z
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)
_FRACTION = re.compile(r"\.(\d+)")  # of the seconds: the only dot an offset in whole minutes leaves


def ms_rounded_up(text: str) -> int:
    """An ISO 8601 date or date-time as epoch milliseconds, a time between two milliseconds rounded up to
    the next one, exactly, whatever the number of digits (ValueError if it is not one, or if its offset is
    not in whole minutes, as ISO 8601 has it)."""
    moment = datetime_from_iso(text)
    offset = moment.utcoffset()
    if offset is not None and offset % timedelta(minutes=1):
        raise ValueError("an offset is hours and minutes")
    digits = found[1] if (found := _FRACTION.search(text)) else ""
    scale: int = 10 ** len(digits)
    fraction_up = -(-int(digits or "0") * 1000 // scale)  # the fraction's ms, rounded up
    return (moment.replace(microsecond=0) - _EPOCH) // _MS + fraction_up


class Timestamp(fields.String):
    """An ISO 8601 date or date-time (no offset: UTC), loaded as epoch milliseconds: a window bound,
    `since <= created_at < until`. Years 1 to 9999 (a `since` before any data is harmless). Stored times
    are whole milliseconds, so a time between two is rounded up to the next one, for `since` and `until`
    alike: the window then holds exactly the stored times the bounds given say, and two windows that meet
    share none."""

    RULE = "years 1 to 9999; a time between two milliseconds is rounded up to the next"

    def __init__(self, **kwargs: Any) -> None:
        metadata = kwargs.pop("metadata", {})
        metadata["description"] = f"{metadata['description']}; {self.RULE}" if "description" in metadata else self.RULE
        # the pattern is checked in _deserialize (validators would see the parsed number)
        super().__init__(metadata={"pattern": TIMESTAMP_CHARS, **metadata}, **kwargs)

    # a string in the request, a number once loaded: marshmallow's way, which its types do not follow
    def _deserialize(  # type: ignore[override]
        self, value: Any, attr: str | None, data: Mapping[str, Any] | None, **kwargs: Any
    ) -> int:
        text = FullMatch(TIMESTAMP_CHARS)(super()._deserialize(value, attr, data, **kwargs))
        for candidate in (text, re.sub(r" (\d\d:?\d\d)$", r"+\1", text)):  # a `+` in a query string reads as a space
            try:
                ms = ms_rounded_up(candidate.upper())
            except (ValueError, OverflowError):
                continue
            if not EARLIEST_MS <= ms <= LATEST_MS:  # an offset took it past year 1 or 9999
                raise ValidationError(f"Must be from {iso_from_ms(EARLIEST_MS)} to {iso_from_ms(LATEST_MS)}.")
            return ms
        raise ValidationError("Not a valid ISO 8601 date-time, e.g. 2024-05-01T00:00:00Z.")

    def _serialize(self, value: Any, attr: str | None, obj: Any, **kwargs: Any) -> str | None:
        return None if value is None else iso_from_ms(value)


def Metadata(**kwargs: Any) -> fields.Dict:  # noqa: N802
    """A JSON object of at most 16 KiB and 8 levels (chat.limits, shared with the WebSocket)."""
    return fields.Dict(keys=fields.String(), validate=check_metadata,
                       metadata={"description": f"any JSON object, at most {MAX_METADATA_BYTES} bytes as JSON and "
                                                f"{MAX_METADATA_DEPTH} levels of nested objects and arrays "
                                                "(itself level 1)"}, **kwargs)


# --- objects -------------------------------------------------------------------------------


class ConversationOut(Out):
    """C: a conversation."""

    id = fields.String(required=True)
    user_id = fields.String(required=True)
    state = fields.String(required=True, validate=validate.OneOf(STATES))
    agent_type = fields.String(required=True, validate=validate.OneOf(("ai", "human")))
    agent_id = fields.String(required=True, allow_none=True)
    team_id = fields.String(required=True, allow_none=True)
    version = fields.Integer(required=True)
    last_seq = fields.Integer(required=True)
    labels = fields.List(fields.String(), required=True)
    metadata = fields.Dict(required=True)
    created_at = fields.String(required=True, metadata=DATE_TIME)
    updated_at = fields.String(required=True, metadata=DATE_TIME)


class MessageOut(Out):
    """M: a message."""

    id = fields.String(required=True)
    conversation_id = fields.String(required=True)
    seq = fields.Integer(required=True)
    sender_type = fields.String(required=True, validate=validate.OneOf(SENDER_TYPES))
    sender_id = fields.String(required=True, allow_none=True)
    content = fields.String(required=True)
    private = fields.Boolean(required=True)
    client_msg_id = fields.String(required=True, allow_none=True)
    created_at = fields.String(required=True, metadata=DATE_TIME)


class EventOut(Out):
    """E: one entry of the transition log."""

    id = fields.String(required=True)
    conversation_id = fields.String(required=True)
    version = fields.Integer(required=True)
    trigger = fields.String(required=True)
    from_state = fields.String(required=True, validate=validate.OneOf(STATES))
    to_state = fields.String(required=True, validate=validate.OneOf(STATES))
    actor_type = fields.String(required=True)
    actor_id = fields.String(required=True, allow_none=True)
    reason = fields.String(required=True, allow_none=True)
    created_at = fields.String(required=True, metadata=DATE_TIME)


class TranscriptOut(Out):
    """A conversation and its messages (GET .../transcript?format=json)."""

    conversation = fields.Nested(ConversationOut, required=True)
    messages = fields.List(fields.Nested(MessageOut), required=True,
                           metadata={"description": "oldest first; private notes (staff only) marked `private`"})


class ExportLineOut(TranscriptOut):
    """One line of the NDJSON export: a conversation, its messages (notes included) and its transition log."""

    events = fields.List(fields.Nested(EventOut), required=True, metadata={"description": "oldest first"})


def page_of(name: str, item: type[Schema], cursor_doc: str) -> type[Schema]:
    """A list response: `items` of one object schema and a `next_cursor`."""
    return type(
        name,
        (Out,),
        {
            "__doc__": f"A list of {item.__name__.removesuffix('Out')} objects.",
            "items": fields.List(fields.Nested(item), required=True),
            "next_cursor": fields.String(required=True, allow_none=True, metadata={"description": cursor_doc}),
        },
    )


NO_MORE = "always null: the list is complete"
ConversationPage = page_of("ConversationPage", ConversationOut, "pass as `cursor` for the next page; null on the last")
MessagePage = page_of("MessagePage", MessageOut, "the seq of the last item when the page is full: pass it as "
                                               "`after_seq` for the next page; null otherwise")
EventPage = page_of("EventPage", EventOut, NO_MORE)


class ErrorDetail(Out):
    """What went wrong."""

    code = fields.String(
        required=True,
        validate=validate.OneOf(("invalid", "unauthenticated", "forbidden", "not_found", "method_not_allowed",
                                 "conflict", "too_large", "rate_limited", "unavailable", "internal")),
    )
    message = fields.String(required=True)
    details = fields.Dict(metadata={"description": "validation errors: {field: [messages]}"})


class ErrorOut(Out):
    """Every error response."""

    error = fields.Nested(ErrorDetail, required=True)
