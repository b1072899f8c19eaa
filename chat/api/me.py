"""What a customer reads about itself over REST: GET /api/v1/me/conversations (as the WebSocket's
conversation.list, the same operation and paging)."""

from __future__ import annotations

from typing import Any

from marshmallow import fields, validate

from chat.api.common import Ctx, endpoint
from chat.api.schemas import ConversationPage, Query, QueryInt
from chat.conversations.lifecycle import MAX_OWN_PAGE, OWN_PAGE
from chat.cursors import Cursor
from chat.limits import counter_range
from chat.store.models import STATES

CUSTOMER = ("customer",)


class OwnQuery(Query):
    """A state filter and the page."""

    state = fields.String(validate=validate.OneOf(STATES))
    limit = QueryInt(load_default=OWN_PAGE, validate=counter_range(MAX_OWN_PAGE, minimum=1))
    cursor = Cursor(metadata={"description": "the next_cursor of the previous page (empty: the first page)"})


@endpoint(
    "GET", "/api/v1/me/conversations", summary="My conversations", tag="customers", roles=CUSTOMER,
    query=OwnQuery, response=ConversationPage, errors=(400,),
    description="The calling customer's own conversations, newest first (created_at, then id), keyset-paged "
                "like the admin listing; the WebSocket `conversation.list` answers the same.",
)
async def handle_my_conversations(ctx: Ctx, query: dict[str, Any]) -> dict[str, Any]:
    """Conversations.list_own."""
    items, cursor = await ctx.ops.conversations.list_own(ctx.identity, state=query.get("state"),
                                                         limit=query["limit"], after=query.get("cursor"))
    return {"items": items, "next_cursor": cursor}


HANDLERS = (handle_my_conversations,)
