"""What the reply parsers share: chunk JSON, message text, tool calls assembled from pieces."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson

from .base import AIError, StreamItem, ToolCall
from .sse import SSEEvent


def text_of(content: Any) -> str:
    """Text of a message content: a string, or a list of {"text": ...} parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            part["text"] for part in content if isinstance(part, dict) and isinstance(part.get("text"), str)
        )
    return ""


def load_json_object(data: str, provider: str) -> dict[str, Any]:
    """Parse one chunk's JSON (orjson: every chunk of every reply goes through here); anything
    but an object is a bad response."""
    try:
        payload = orjson.loads(data)
    except ValueError:  # orjson.JSONDecodeError is a ValueError
        raise AIError("bad_response", f"{provider} sent a chunk that is not JSON") from None
    if not isinstance(payload, dict):
        raise AIError("bad_response", f"{provider} sent a chunk that is not a JSON object")
    return payload


@dataclass
class _PartialCall:
    name: str = ""
    pieces: list[str] = field(default_factory=list)
    latest: str = ""
    parsed: dict[str, Any] | None = None

    def arguments(self) -> dict[str, Any]:
        if self.parsed is not None:
            return self.parsed
        # Incremental streams send argument pieces to concatenate; cumulative ones
        # resend the whole string each time. Try the first reading, then the second.
        for candidate in ("".join(self.pieces), self.latest):
            try:
                value = json.loads(candidate)
            except ValueError:
                continue
            if isinstance(value, dict):
                return value
        return {}


class ToolCallAccumulator:
    """Collect tool-call pieces by index until the model finishes the call."""

    def __init__(self) -> None:
        self._calls: dict[int, _PartialCall] = {}

    def add(self, deltas: Any) -> None:
        """Add one chunk's `tool_calls` list."""
        if not isinstance(deltas, list):
            return
        for position, delta in enumerate(deltas):
            if not isinstance(delta, dict):
                continue
            index = delta.get("index", position)
            if not isinstance(index, int):
                index = position
            call = self._calls.setdefault(index, _PartialCall())
            function = delta.get("function") or {}
            if not isinstance(function, dict):
                continue
            name = function.get("name")
            if isinstance(name, str) and name:
                call.name = name
            arguments = function.get("arguments")
            if isinstance(arguments, str) and arguments:
                call.pieces.append(arguments)
                call.latest = arguments
            elif isinstance(arguments, dict):
                call.parsed = arguments

    def drain(self) -> list[ToolCall]:
        """Return the complete calls in index order and forget them."""
        calls = [
            ToolCall(call.name, call.arguments())
            for _, call in sorted(self._calls.items())
            if call.name
        ]
        self._calls.clear()
        return calls


class ReplyParser(Protocol):
    """Turns one attempt's events into stream items."""

    def feed(self, event: SSEEvent) -> list[StreamItem]:
        """Items from one event; raise AIError for an error event."""
        ...

    @property
    def ended(self) -> bool:
        """The reply said it is complete ([DONE], a final finish_reason): nothing more to wait for."""
        ...

    def finish(self) -> list[StreamItem]:
        """Items left at the end of the body; raise AIError if the reply was cut short."""
        ...
