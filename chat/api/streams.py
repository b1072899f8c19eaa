"""Streamed REST responses (the export, transcripts): chunks written as they are produced, under
back-pressure, so a slow client holds at most one buffer of the service's memory."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

from aiohttp import web

from chat import logs
from chat.api.common import REQUEST_ID_HEADER
from chat.errors import log_failure

log = logging.getLogger(__name__)

FLUSH_BYTES = 64 * 1024  # chunks are gathered up to this before each write


async def stream(request: web.Request, chunks: AsyncIterator[bytes], *, content_type: str,
                 filename: str | None = None) -> web.StreamResponse:
    """Send `chunks` as the body. The first chunk is produced before the headers go out, so a
    failure at the start (the database down) is still an ordinary error response; a failure after
    that aborts the connection, and the client sees a broken transfer instead of a short body that
    looks whole."""
    first = await anext(chunks, b"")
    response = web.StreamResponse(headers={"Content-Type": content_type, "Cache-Control": "no-store"})
    if filename is not None:
        response.headers["Content-Disposition"] = f'attachment; filename="{filename}"'
    request_id = logs.current_request_id()
    if request_id is not None:
        response.headers[REQUEST_ID_HEADER] = request_id
    await response.prepare(request)
    buffer = bytearray()
    try:
        await response.write(first)  # the download starts at once
        async for chunk in chunks:
            buffer += chunk
            if len(buffer) >= FLUSH_BYTES:
                await response.write(bytes(buffer))  # waits while the client is slow to read
                buffer.clear()
        await response.write(bytes(buffer))
        await response.write_eof()
    except Exception as exc:
        if isinstance(exc, ConnectionResetError):  # aiohttp's "cannot write to closing transport"
            log.info("%s %s: the client went away during the transfer", request.method, request.path)
        else:
            log_failure(log, exc, "%s %s failed during the transfer", request.method, request.path)
        if request.transport is not None:
            request.transport.abort()  # never let aiohttp end the body as if it were whole
    return response
