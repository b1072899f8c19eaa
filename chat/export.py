"""Conversations out of the service: the bulk NDJSON export (REST and `chat-api export`) and one
conversation's transcript as JSON, CSV or Markdown.

Both are produced as a stream of byte chunks read from the store a bounded page at a time
(chat/store/export.py), so memory stays flat whatever the number of conversations or the length of
one: a line of the export is written piece by piece while its messages are read page by page.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any, TypeVar

import orjson

from chat import render
from chat.render import PublicConversation
from chat.store import Message, Store
from chat.store.export import Position
from chat.store.models import ConversationRow
from chat.store.timers import Mark
from states.clock import iso_from_ms

EXPORT_PAGE = 200  # conversations per read
ROWS_PER_READ = 1000  # messages (or log entries) per read
TRANSCRIPT_PAGE = 500  # messages per read of a transcript
FORMATS = ("json", "csv", "md")
CSV_COLUMNS = ("seq", "created_at", "sender_type", "sender_id", "private", "content")
BOM = "\ufeff".encode()  # spreadsheet programs read the CSV as UTF-8 only with it (Chinese text)

T = TypeVar("T")
Entry = dict[str, Any]  # E, rendered: a transition or a mark
Batches = AsyncIterator[list[T]]


async def _one(batch: list[T]) -> AsyncIterator[list[T]]:
    yield batch


async def _json_array(batches: Batches[T], to_json: Callable[[T], Any]) -> AsyncIterator[bytes]:
    """The items of the batches as the inside of a JSON array, one chunk per batch."""
    first = True
    async for batch in batches:
        if batch:
            part = b",".join(orjson.dumps(to_json(item)) for item in batch)
            yield part if first else b"," + part
            first = False


class NdjsonExport:
    """One line per conversation created in [since, until), oldest first:
    `{"conversation": C, "messages": [M...], "events": [E...]}` (private notes included, `"private": true`;
    the event log as `GET .../events` gives it: transitions and the marks such as `sla_breached`).

    `conversations` counts the lines written so far (for progress output)."""

    def __init__(self, store: Store, *, since_ms: int | None, until_ms: int | None, page_size: int = EXPORT_PAGE,
                 rows_per_read: int = ROWS_PER_READ) -> None:
        self.store = store
        self.since_ms, self.until_ms = since_ms, until_ms
        self.page_size, self.rows_per_read = page_size, rows_per_read
        self.conversations = 0

    async def chunks(self) -> AsyncIterator[bytes]:
        """The export, as byte chunks of at most one conversation's page of messages each."""
        after: Position | None = None
        while True:
            rows = await self.store.export.conversations(since_ms=self.since_ms, until_ms=self.until_ms,
                                                         after=after, limit=self.page_size)
            if not rows:
                return
            labels = await self.store.labels.titles_of([row.id for row in rows])
            async for chunk in self._lines(rows, labels):
                yield chunk
            if len(rows) < self.page_size:
                return
            after = (int(rows[-1].created_ms), rows[-1].id)

    async def _lines(self, rows: list[ConversationRow], labels: dict[str, list[str]]) -> AsyncIterator[bytes]:
        """The lines of some conversations: their messages and log entries read in one statement each
        when they fit `rows_per_read`, else the conversations halved and read again, down to one
        conversation, whose messages and log entries are then read a page at a time."""
        ids = [row.id for row in rows]
        messages = await self.store.export.messages_of(ids, limit=self.rows_per_read)
        events = await self.store.export.events_of(ids, limit=self.rows_per_read) if messages is not None else None
        if (messages is None or events is None) and len(rows) > 1:
            half = len(rows) // 2
            for part in (rows[:half], rows[half:]):
                async for chunk in self._lines(part, labels):
                    yield chunk
            return
        log: dict[str, list[Entry]] | None = None
        if events is not None:  # the marks of these transitions' versions: as many at most
            marks: dict[str, list[Mark]] = {}
            for mark in await self.store.timers.marks_of(ids):
                marks.setdefault(mark.conversation_id, []).append(mark)
            log = {cid: render.log_entries(events.get(cid, []), marks.get(cid, [])) for cid in ids}
        for row in rows:
            async for chunk in self._line(row, labels.get(row.id, []), messages, log):
                yield chunk
            self.conversations += 1

    async def _line(self, row: ConversationRow, labels: list[str], messages: dict[str, list[Message]] | None,
                    log: dict[str, list[Entry]] | None) -> AsyncIterator[bytes]:
        conversation = render.conversation_from_row(row, labels)
        yield b'{"conversation":' + orjson.dumps(conversation) + b',"messages":['
        message_batches = _one(messages.get(row.id, [])) if messages is not None else self._messages(row.id)
        async for chunk in _json_array(message_batches, render.message):
            yield chunk
        yield b'],"events":['
        log_batches = _one(log.get(row.id, [])) if log is not None else self._log(row.id)
        async for chunk in _json_array(log_batches, _as_is):
            yield chunk
        yield b"]}\n"

    async def _messages(self, conversation_id: str) -> AsyncIterator[list[Message]]:
        """A long conversation's messages, a page at a time."""
        after_seq = 0
        while True:
            page = await self.store.messages.list_of(conversation_id, after_seq=after_seq, limit=self.rows_per_read)
            yield page
            if len(page) < self.rows_per_read:
                return
            after_seq = page[-1].seq

    async def _log(self, conversation_id: str) -> AsyncIterator[list[Entry]]:
        """A long event log, a page of transitions at a time, each with the marks of its versions."""
        after_version = 0
        while True:
            page = await self.store.export.events_after(conversation_id, after_version=after_version,
                                                        limit=self.rows_per_read)
            through = page[-1].version if len(page) == self.rows_per_read else None  # None: the last page
            marks = await self.store.timers.marks_of([conversation_id], after_version=after_version,
                                                     through_version=through)
            yield render.log_entries(page, marks)
            if through is None:
                return
            after_version = through


def _as_is(entry: Entry) -> Entry:
    return entry


# --- one conversation's transcript --------------------------------------------------------------------


async def transcript_messages(store: Store, conversation_id: str, *, include_private: bool,
                              page_size: int = TRANSCRIPT_PAGE) -> AsyncIterator[list[Message]]:
    """The messages of a transcript, a page at a time (private notes only when asked for)."""
    after_seq = 0
    while True:
        page = await store.messages.list_of(conversation_id, after_seq=after_seq, limit=page_size,
                                            include_private=include_private)
        yield page
        if len(page) < page_size:
            return
        after_seq = page[-1].seq


async def transcript(fmt: str, conversation: PublicConversation, batches: Batches[Message]) -> AsyncIterator[bytes]:
    """The transcript in `fmt` (json, csv or md) as byte chunks."""
    if fmt == "json":
        yield b'{"conversation":' + orjson.dumps(conversation) + b',"messages":['
        async for chunk in _json_array(batches, render.message):
            yield chunk
        yield b"]}"
    elif fmt == "csv":
        yield BOM + _csv_rows([CSV_COLUMNS])
        async for batch in batches:
            yield _csv_rows(_csv_row(m) for m in batch)
    elif fmt == "md":
        yield _md_header(conversation).encode()
        async for batch in batches:
            yield "".join(_md_message(m) for m in batch).encode()
    else:
        raise ValueError(f"unknown transcript format {fmt}")


def _csv_rows(rows: Iterable[Iterable[Any]]) -> bytes:
    """RFC 4180 rows (CRLF; a field with a comma, quote or line break quoted, quotes doubled)."""
    out = io.StringIO()
    csv.writer(out).writerows(rows)
    return out.getvalue().encode()


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")  # what a spreadsheet program would run as a formula


def csv_text(text: str) -> str:
    """A cell a spreadsheet program shows as text: one starting like a formula gets a leading `'`
    (CSV injection; the JSON transcript has the text exactly)."""
    return "'" + text if text.startswith(_FORMULA_START) else text


def _csv_row(m: Message) -> tuple[Any, ...]:
    return (m.seq, iso_from_ms(m.created_ms), m.sender_type, csv_text(m.sender_id or ""),
            "true" if m.private else "false", csv_text(m.content))


_MD_SPECIAL = re.compile(r"([\\`*_\[\]|~])")  # inline markup; line-start markers stay inside the quote


def md_text(text: str) -> str:
    """Plain text inside Markdown: its markup characters escaped, and `&` `<` as entities so that no
    HTML in a message is ever rendered by a Markdown viewer."""
    return _MD_SPECIAL.sub(r"\\\1", text.replace("&", "&amp;").replace("<", "&lt;"))


def _md_header(c: PublicConversation) -> str:
    lines = [f"# Conversation {md_text(c['id'])}", "",
             f"- customer: {md_text(c['user_id'])}", f"- state: {c['state']}",
             f"- started: {c['created_at']}", f"- updated: {c['updated_at']}"]
    if c["agent_id"]:
        lines.append(f"- agent: {md_text(c['agent_id'])}")
    if c["team_id"]:
        lines.append(f"- team: {md_text(c['team_id'])}")
    if c["labels"]:
        lines.append(f"- labels: {', '.join(md_text(label) for label in c['labels'])}")
    return "\n".join(lines) + "\n\n---\n"


def _md_message(m: Message) -> str:
    who = m.sender_type + (f" {md_text(m.sender_id)}" if m.sender_id else "")
    note = " · **private note** (staff only)" if m.private else ""
    quoted = "\n".join("> " + md_text(line) if line else ">" for line in m.content.splitlines() or [""])
    return f"\n**{who}** · {iso_from_ms(m.created_ms)} · #{m.seq}{note}\n\n{quoted}\n"
