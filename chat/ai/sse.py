"""An incremental Server-Sent Events decoder fed with raw bytes as they arrive.

Kept here rather than taken from a library: the maintained Python SSE clients either
own the HTTP request (aiohttp-sse-client2 re-sends it when a stream ends, which would
re-POST a finished completion), tie their decoder to another HTTP client (httpx-sse),
or drop comment lines, which DashScope uses to carry the HTTP status of an event.
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass

_NEWLINE = re.compile(r"\r\n|\r|\n")
_HTTP_STATUS_COMMENT = re.compile(r"^\s*HTTP_STATUS/(\d{3})\s*$")


class SSEDecodeError(ValueError):
    """The stream broke the decoder's limits (an event larger than max_event_chars)."""


@dataclass(frozen=True, slots=True)
class SSEEvent:
    """One dispatched event: its data lines joined by newlines."""

    data: str
    event: str = "message"
    id: str = ""
    # Comment lines of the event's block, without the leading colon.
    comments: tuple[str, ...] = ()

    @property
    def http_status(self) -> int | None:
        """The status in a DashScope `:HTTP_STATUS/429` comment, if the block had one."""
        for comment in self.comments:
            match = _HTTP_STATUS_COMMENT.match(comment)
            if match:
                return int(match.group(1))
        return None


class SSEDecoder:
    """Turn byte chunks, split anywhere (even inside a UTF-8 character), into SSEEvents."""

    def __init__(self, *, max_event_chars: int = 1_048_576) -> None:
        self._max_event_chars = max_event_chars
        self._utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._started = False
        self._buffer = ""  # text after the last complete line
        self._data: list[str] = []
        self._data_chars = 0
        self._event = ""
        self._last_id = ""
        self._comments: list[str] = []

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        """Decode one chunk; return the events it completed."""
        return self._consume(self._utf8.decode(chunk), final=False)

    def flush(self) -> list[SSEEvent]:
        """End of stream: dispatch the last event even without its closing blank line."""
        # The spec drops an unterminated event; servers that close right after the
        # last data line are common enough that losing it would lose the reply's end.
        events = self._consume(self._utf8.decode(b"", final=True), final=True)
        event = self._dispatch()
        if event is not None:
            events.append(event)
        return events

    def _consume(self, text: str, *, final: bool) -> list[SSEEvent]:
        if not self._started and text:
            self._started = True
            text = text.removeprefix("\ufeff")
        buffer = self._buffer + text
        held = ""
        if "\r" in buffer:
            # A lone CR at the very end may be the first half of a CRLF split
            # across chunks; wait for the next chunk to know.
            if buffer.endswith("\r") and not final:
                buffer, held = buffer[:-1], "\r"
            lines = _NEWLINE.split(buffer)
        else:
            lines = buffer.split("\n")  # the usual stream: one C-level split, no regex
        self._buffer = lines.pop() + held  # after the last line break: not a line yet
        events: list[SSEEvent] = []
        for line in lines:
            event = self._line(line)
            if event is not None:
                events.append(event)
        if final and self._buffer:
            event = self._line(self._buffer)
            self._buffer = ""
            if event is not None:
                events.append(event)
        if len(self._buffer) + self._data_chars > self._max_event_chars:
            raise SSEDecodeError(f"an event exceeds {self._max_event_chars} characters")
        return events

    def _line(self, line: str) -> SSEEvent | None:
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            self._comments.append(line[1:])
            return None
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
            self._data_chars += len(value) + 1
            if self._data_chars > self._max_event_chars:
                raise SSEDecodeError(f"an event exceeds {self._max_event_chars} characters")
        elif name == "event":
            self._event = value
        elif name == "id" and "\0" not in value:
            self._last_id = value
        # "retry" and unknown fields are ignored: we never reconnect a completion.
        return None

    def _dispatch(self) -> SSEEvent | None:
        event = None
        if self._data:
            event = SSEEvent(
                data="\n".join(self._data),
                event=self._event or "message",
                id=self._last_id,
                comments=tuple(self._comments),
            )
        self._data = []
        self._data_chars = 0
        self._event = ""
        self._comments = []
        return event
