"""Customer satisfaction ratings: GET /api/v1/csat (admins; agents may read)."""

from __future__ import annotations

from typing import Any

from marshmallow import fields

from chat.api.common import STAFF, Ctx, endpoint
from chat.api.schemas import DATE_TIME, Out, QueryInt, Timestamp, WindowQuery, page_of
from chat.cursors import Cursor, next_cursor
from chat.limits import counter_range


class CsatOut(Out):
    """One rating of one close of a conversation."""

    id = fields.String(required=True)
    conversation_id = fields.String(required=True)
    version = fields.Integer(required=True, metadata={"description": "the conversation's version at the close rated"})
    user_id = fields.String(required=True, metadata={"description": "the customer"})
    agent_id = fields.String(required=True, allow_none=True, metadata={"description": "who held it at the close"})
    team_id = fields.String(required=True, allow_none=True)
    score = fields.Integer(required=True, metadata={"description": "1 (worst) to 5 (best)"})
    comment = fields.String(required=True, allow_none=True)
    closed_at = fields.String(required=True, metadata=DATE_TIME)
    created_at = fields.String(required=True, metadata=DATE_TIME)


CsatPage = page_of("CsatPage", CsatOut, "pass as `cursor` for the next page; null on the last")


class CsatQuery(WindowQuery):
    """The window (by when the rating was given) and the page."""

    since = Timestamp(metadata={"description": "given at or after (ISO 8601; no offset means UTC)"})
    until = Timestamp(metadata={"description": "given before (ISO 8601; no offset means UTC)"})
    limit = QueryInt(load_default=50, validate=counter_range(200, minimum=1))
    cursor = Cursor(metadata={"description": "the next_cursor of the previous page (empty: the first page)"})


EXAMPLE_RATING = {
    "id": "5b0c2f9e-3f43-4a55-9d55-2f4a1f1d0c11", "conversation_id": "0f8e3c52-8d7a-4f0e-9a51-3b0d6c9a1e77",
    "version": 4, "user_id": "cust-42", "agent_id": "agent-7", "team_id": "billing", "score": 5,
    "comment": "Quick and friendly", "closed_at": "2026-12-01T09:30:00.000Z", "created_at": "2026-12-01T09:31:12.000Z",
}


@endpoint(
    "GET", "/api/v1/csat", summary="List satisfaction ratings", tag="csat", roles=STAFF, query=CsatQuery,
    response=CsatPage, errors=(400,),
    description="Newest first (created_at, then id, descending); keyset pagination. One rating per close: "
                "a conversation closed, reopened and closed again may have one for each close (`version`).",
    examples={"response": {"items": [EXAMPLE_RATING], "next_cursor": "WzE3NjQ1ODE0NzIwMDAsIjViMGMiXQ"}},
)
async def handle_list_csat(ctx: Ctx, query: dict[str, Any]) -> dict[str, Any]:
    """One page of ratings."""
    items, position = await ctx.store.csat.page(since_ms=query.get("since"), until_ms=query.get("until"),
                                                limit=query["limit"], after=query.get("cursor"))
    return {"items": items, "next_cursor": next_cursor(position)}


HANDLERS = (handle_list_csat,)
