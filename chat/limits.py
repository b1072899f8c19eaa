"""The limits of PROTOCOL 3.7 checked at the edge, the same on both transports.

`metadata` is a JSON object of at most 16 KiB serialized and at most 8 levels of nested
objects and arrays (itself level 1); an integer naming a seq, a limit or a count is within
0..2^31-1. The WebSocket command schemas and the REST request schemas both use these, so a
value one transport refuses the other refuses too, before anything is written.
"""

from __future__ import annotations

from typing import Any

import orjson
from marshmallow import ValidationError, validate

MAX_METADATA_BYTES = 16 * 1024  # conversations.metadata is a TEXT column (64 KiB on MySQL)
MAX_METADATA_DEPTH = 8
MAX_INT = 2**31 - 1  # INT columns; also far below what SQLite's 64-bit integers overflow on


def _too_deep(value: object, max_depth: int) -> bool:
    """Does `value` nest objects and arrays deeper than `max_depth` levels (itself level 1)?

    Iterative and stopping at the first container past the limit, so a hostile document of
    any depth costs no recursion and at most one walk of what lies within the limit."""
    stack: list[tuple[object, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else None
        if children is None:
            continue
        if depth > max_depth:
            return True
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False


def check_metadata(value: dict[str, Any]) -> None:
    """A marshmallow validator: at most MAX_METADATA_DEPTH levels, then at most MAX_METADATA_BYTES as JSON.

    The depth is checked first: replies nest metadata a few levels deeper than itself, and
    a document near the serializer's own depth limit must never get as far as the store."""
    if _too_deep(value, MAX_METADATA_DEPTH):
        raise ValidationError(f"Nested deeper than {MAX_METADATA_DEPTH} levels of objects and arrays.")
    try:
        size = len(orjson.dumps(value))
    except (orjson.JSONEncodeError, TypeError):
        raise ValidationError("Not a JSON object.") from None
    if size > MAX_METADATA_BYTES:
        raise ValidationError(f"Longer than {MAX_METADATA_BYTES} bytes as JSON.")


def counter_range(maximum: int = MAX_INT, minimum: int = 0) -> validate.Range:
    """The range of an integer naming a seq, a limit or a count (PROTOCOL 3.7: 0..2^31-1)."""
    return validate.Range(min=minimum, max=min(maximum, MAX_INT))
