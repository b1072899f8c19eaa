"""Canned responses: GET|POST /api/v1/canned_responses, PATCH|DELETE /api/v1/canned_responses/{id}
(writes: admins; agents read). `short_code` is unique; `content` may hold `{{customer.name}}` and
`{{agent.name}}`, filled by the WebSocket `canned.list` for a conversation (chat.conversations.canned)."""

from __future__ import annotations

from typing import Any

from marshmallow import fields, validate

from chat.api.common import STAFF, Ctx, endpoint
from chat.api.schemas import DATE_TIME, Body, FullMatch, Out, page_of
from chat.conversations import MAX_CONTENT_CHARS
from chat.errors import Conflict, Invalid, NotFound
from chat.store.canned import Canned
from chat.store.db import DuplicateKey

SHORT_CODE = r"^\S{1,64}$"  # no white space: it is typed after `/` in the console
ID_DOC = {"id": "the canned response id"}


class CannedOut(Out):
    """A canned response as stored (its placeholders unfilled)."""

    id = fields.String(required=True)
    short_code = fields.String(required=True)
    content = fields.String(required=True)
    created_at = fields.String(required=True, metadata=DATE_TIME)
    updated_at = fields.String(required=True, metadata=DATE_TIME)


CannedPage = page_of("CannedPage", CannedOut, "always null: every canned response is listed")


def ShortCode(**kwargs: Any) -> fields.String:  # noqa: N802 - a field factory reads like a field class
    """A short code: 1 to 64 characters, no white space."""
    return fields.String(validate=FullMatch(SHORT_CODE), metadata={"description": "1-64 characters, no white space"},
                         **kwargs)


def Content(**kwargs: Any) -> fields.String:  # noqa: N802
    """The text, with optional `{{customer.name}}` and `{{agent.name}}` placeholders."""
    return fields.String(validate=validate.Length(min=1, max=MAX_CONTENT_CHARS),
                         metadata={"description": "1-4000 characters; `{{customer.name}}` and `{{agent.name}}` "
                                                  "are filled by `canned.list`"}, **kwargs)


class CannedBody(Body):
    """A new canned response."""

    short_code = ShortCode(required=True)
    content = Content(required=True)


class CannedPatchBody(Body):
    """What to change (at least one field)."""

    short_code = ShortCode()
    content = Content()


EXAMPLE_BODY = {"short_code": "thanks", "content": "Thank you {{customer.name}}, this is {{agent.name}}."}
EXAMPLE = {"id": "7d7a3a9c-6a0e-4c1b-8f3e-1b2c3d4e5f60", **EXAMPLE_BODY,
           "created_at": "2026-12-01T09:00:00.000Z", "updated_at": "2026-12-01T09:00:00.000Z"}


def _duplicate(short_code: str) -> Conflict:
    return Conflict(f"the short code {short_code!r} is in use", {"short_code": ["Already in use."]})


@endpoint("GET", "/api/v1/canned_responses", summary="List canned responses", tag="canned responses", roles=STAFF,
          response=CannedPage, examples={"response": {"items": [EXAMPLE], "next_cursor": None}})
async def handle_list_canned(ctx: Ctx) -> dict[str, Any]:
    """Every canned response, by short code."""
    return {"items": await ctx.store.canned.all(), "next_cursor": None}


@endpoint(
    "POST", "/api/v1/canned_responses", summary="Create a canned response", tag="canned responses", roles=STAFF,
    body=CannedBody, response=CannedOut, status=201, errors=(400, 409, 413),
    description="A short code already in use is 409 conflict.", examples={"body": EXAMPLE_BODY, "response": EXAMPLE},
)
async def handle_create_canned(ctx: Ctx, data: dict[str, Any]) -> Canned:
    """A new canned response."""
    try:
        return await ctx.store.canned.create(data["short_code"], data["content"])
    except DuplicateKey:
        raise _duplicate(data["short_code"]) from None


@endpoint(
    "PATCH", "/api/v1/canned_responses/{id}", summary="Change a canned response", tag="canned responses",
    roles=STAFF, body=CannedPatchBody, response=CannedOut, errors=(400, 404, 409, 413), path_doc=ID_DOC,
    examples={"body": {"content": EXAMPLE["content"]}, "response": EXAMPLE},
)
async def handle_update_canned(ctx: Ctx, data: dict[str, Any]) -> Canned:
    """Change the short code and/or the content."""
    if not data:
        raise Invalid("give short_code and/or content", {"_schema": ["Nothing to change."]})
    try:
        canned = await ctx.store.canned.update(ctx.param("id"), data)
    except DuplicateKey:
        raise _duplicate(data["short_code"]) from None
    if canned is None:
        raise NotFound("canned response not found")
    return canned


@endpoint(
    "DELETE", "/api/v1/canned_responses/{id}", summary="Delete a canned response", tag="canned responses",
    roles=STAFF, status=204, errors=(404,), path_doc=ID_DOC,
)
async def handle_delete_canned(ctx: Ctx) -> None:
    """204, or 404."""
    if not await ctx.store.canned.delete(ctx.param("id")):
        raise NotFound("canned response not found")


HANDLERS = (handle_list_canned, handle_create_canned, handle_update_canned, handle_delete_canned)
