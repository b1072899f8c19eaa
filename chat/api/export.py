"""Conversations out of the service over REST: one conversation's transcript (JSON, CSV, Markdown)
and the admin's bulk NDJSON export, both streamed a page at a time (chat/export.py)."""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web
from marshmallow import fields, validate

from chat.api.common import ADMIN, STAFF, Ctx, endpoint
from chat.api.schemas import Query, Timestamp, TranscriptOut, WindowQuery
from chat.api.streams import stream
from chat.export import FORMATS, NdjsonExport, transcript, transcript_messages
from states.clock import now_ms

ID_DOC = {"id": "the conversation id"}
CONTENT_TYPES = {
    "json": "application/json",
    "csv": "text/csv; charset=utf-8",
    "md": "text/markdown; charset=utf-8",
}
NDJSON = "application/x-ndjson"
_UNSAFE_FILENAME = re.compile(r"[^A-Za-z0-9._-]")


class TranscriptQuery(Query):
    """The format."""

    format = fields.String(load_default="json", validate=validate.OneOf(FORMATS),
                           metadata={"description": "json (default), csv (UTF-8 with a BOM) or md"})


@endpoint(
    "GET", "/api/v1/conversations/{id}/transcript", summary="Transcript of a conversation", tag="export",
    roles=STAFF, query=TranscriptQuery, errors=(400, 404), path_doc=ID_DOC,
    content={"application/json": {"schema": TranscriptOut},
             "text/csv": {"schema": {"type": "string"}}, "text/markdown": {"schema": {"type": "string"}}},
    description="Every message with its sender and time, oldest first; private notes included and marked "
                "(`private: true`; in CSV the `private` column; in Markdown **private note**). "
                "`json`: `{\"conversation\": C, \"messages\": [M...]}`; `csv`: columns seq, created_at, "
                "sender_type, sender_id, private, content (RFC 4180, UTF-8 with a byte order mark so spreadsheet "
                "programs read Chinese text); `md`: a readable document. Streamed: any length costs the same "
                "memory.",
)
async def handle_transcript(ctx: Ctx, query: dict[str, Any]) -> web.StreamResponse:
    """The transcript, streamed."""
    conversation = await ctx.ops.conversations.get_for(ctx.identity, ctx.param("id"))
    fmt = query["format"]
    pages = transcript_messages(ctx.store, conversation.id, include_private=ctx.identity.is_agent)
    name = f"conversation-{_UNSAFE_FILENAME.sub('_', conversation.id)}.{fmt}"
    return await stream(ctx.request, transcript(fmt, await ctx.public(conversation), pages),
                        content_type=CONTENT_TYPES[fmt], filename=None if fmt == "json" else name)


class ExportQuery(WindowQuery):
    """The window of creation times."""

    since = Timestamp(metadata={"description": "created at or after (ISO 8601; no offset means UTC); default: "
                                               "the first conversation"})
    until = Timestamp(metadata={"description": "created before (ISO 8601; no offset means UTC); default: the time "
                                               "the export starts, so conversations started meanwhile are left "
                                               "for the next window"})


@endpoint(
    "GET", "/api/v1/export/conversations", summary="Export conversations (NDJSON)", tag="export", roles=ADMIN,
    query=ExportQuery, errors=(400,),
    content={NDJSON: {"schema": {"type": "string", "description": "one ExportLine object (components) as JSON "
                                                                 "per line"}}},
    description="One line per conversation created in [since, until), oldest first: "
                "`{\"conversation\": C, \"messages\": [M...], \"events\": [E...]}` with private notes included "
                "(`private: true`). Streamed from keyset pages of the database: memory stays flat whatever the "
                "size; a failure during the transfer breaks the connection (never a short body that looks whole). "
                "The same as `chat-api export`.",
)
async def handle_export(ctx: Ctx, query: dict[str, Any]) -> web.StreamResponse:
    """NdjsonExport, streamed."""
    until_ms = query.get("until", now_ms())
    export = NdjsonExport(ctx.store, since_ms=query.get("since"), until_ms=until_ms)
    return await stream(ctx.request, export.chunks(), content_type=NDJSON, filename="conversations.ndjson")


HANDLERS = (handle_transcript, handle_export)
