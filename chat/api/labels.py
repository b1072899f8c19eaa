"""Labels: GET|POST /api/v1/labels, DELETE /api/v1/labels/{id} (writes: admins only)."""

from __future__ import annotations

from typing import Any

from marshmallow import fields

from chat.api.common import ADMIN, STAFF, Ctx, endpoint
from chat.api.schemas import DATE_TIME, Body, Description, FullMatch, Out, Title, page_of
from chat.errors import Conflict, NotFound
from chat.store.db import DuplicateKey
from chat.store.labels import Label

COLOR = r"^#[0-9A-Fa-f]{6}$"


class LabelOut(Out):
    """A label."""

    id = fields.String(required=True)
    title = fields.String(required=True)
    description = fields.String(required=True, allow_none=True)
    color = fields.String(required=True, allow_none=True)
    created_at = fields.String(required=True, metadata=DATE_TIME)


LabelPage = page_of("LabelPage", LabelOut, "always null: every label is listed")


class LabelBody(Body):
    """A new label; the title is unique."""

    title = Title(required=True)
    description = Description(load_default=None)
    color = fields.String(load_default=None, allow_none=True, validate=FullMatch(COLOR),
                          metadata={"description": "#RRGGBB"})


@endpoint("GET", "/api/v1/labels", summary="List labels", tag="labels", roles=STAFF, response=LabelPage)
async def handle_list_labels(ctx: Ctx) -> dict[str, Any]:
    """Every label, by title."""
    return {"items": await ctx.store.labels.all(), "next_cursor": None}


@endpoint(
    "POST", "/api/v1/labels", summary="Create a label", tag="labels", roles=ADMIN, body=LabelBody,
    response=LabelOut, status=201, errors=(400, 409, 413), description="A title already in use is 409 conflict.",
    examples={"body": {"title": "refund", "description": "the customer asks for money back", "color": "#e5534b"}},
)
async def handle_create_label(ctx: Ctx, data: dict[str, Any]) -> Label:
    """A new label."""
    try:
        return await ctx.store.labels.create(data["title"], data["description"], data["color"])
    except DuplicateKey:
        raise Conflict(f"a label titled {data['title']!r} already exists", {"title": ["Already in use."]}) from None


@endpoint(
    "DELETE", "/api/v1/labels/{id}", summary="Delete a label", tag="labels", roles=ADMIN, status=204,
    errors=(404,), path_doc={"id": "the label id"}, description="Also removes it from every conversation.",
)
async def handle_delete_label(ctx: Ctx) -> None:
    """204, or 404 when there is no such label."""
    if not await ctx.store.labels.delete(ctx.param("id")):
        raise NotFound("label not found")


HANDLERS = (handle_list_labels, handle_create_label, handle_delete_label)
