"""The opaque cursors of keyset pages (the admin listing, a customer's own conversations, the export).

A cursor is the position of the last item of a page, (created_ms, id), as unpadded urlsafe base64
of its JSON. It is opaque to clients but not secret: whatever a client makes of it is decoded
strictly (anything else is `invalid`), and every query it feeds is still bounded by the caller's
own filters (a customer's cursor only ever moves within its own conversations).
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from typing import Any

import orjson
from marshmallow import ValidationError, fields

Position = tuple[int, str]  # (created_ms, id) of the last item of a page
MAX_CURSOR_CHARS = 512
CURSOR_CHARS = rf"^[A-Za-z0-9_-]{{0,{MAX_CURSOR_CHARS}}}$"
CURSOR_HINT = "Not a valid cursor: pass back a next_cursor unchanged."


def encode_cursor(position: Position) -> str:
    """An opaque cursor: urlsafe base64 (unpadded) of the JSON [created_ms, id]."""
    return base64.urlsafe_b64encode(orjson.dumps(list(position))).decode().rstrip("=")


def decode_cursor(cursor: str) -> Position:
    """The position a cursor stands for; ValueError when it is not one of ours."""
    if len(cursor) > MAX_CURSOR_CHARS:
        raise ValueError("not a cursor")
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        value = orjson.loads(raw)
    except (ValueError, binascii.Error, orjson.JSONDecodeError):
        raise ValueError("not a cursor") from None
    if (
        not isinstance(value, list)
        or len(value) != 2
        or type(value[0]) is not int
        or not 0 <= value[0] < 2**53
        or not isinstance(value[1], str)
        or not 0 < len(value[1]) <= 64
    ):
        raise ValueError("not a cursor")
    return value[0], value[1]


def next_cursor(position: Position | None) -> str | None:
    """The `next_cursor` of a page: its last position encoded, or None on the last page."""
    return encode_cursor(position) if position is not None else None


class Cursor(fields.String):
    """The opaque `cursor` of a page, loaded as its (created_ms, id) position (empty: the first page, None)."""

    _CHARS = re.compile(CURSOR_CHARS.strip("^$"))

    def __init__(self, **kwargs: Any) -> None:
        # the pattern is checked in _deserialize (validators would see the decoded position)
        super().__init__(metadata={"pattern": CURSOR_CHARS, **kwargs.pop("metadata", {})}, **kwargs)

    # a string in the request, a position once loaded: marshmallow's way, which its types do not follow
    def _deserialize(  # type: ignore[override]
        self, value: Any, attr: str | None, data: Mapping[str, Any] | None, **kwargs: Any
    ) -> Position | None:
        text = super()._deserialize(value, attr, data, **kwargs)
        if not text:
            return None  # `cursor=`: the first page
        if not self._CHARS.fullmatch(text):
            raise ValidationError(CURSOR_HINT)
        try:
            return decode_cursor(text)
        except ValueError:
            raise ValidationError(CURSOR_HINT) from None
