"""The old chat-session API: POST /api/v1/sessions, GET /api/v1/sessions/{id} (C objects)."""

from __future__ import annotations

from typing import Any

from chat import render
from chat.api.common import EVERYONE, Ctx, endpoint
from chat.api.schemas import Body, ConversationOut, Id, Metadata, UserId
from chat.errors import Forbidden

ID_DOC = {"id": "the conversation (session) id"}


class StartSessionBody(Body):
    """A new conversation."""

    metadata = Metadata(load_default=dict)
    user_id = UserId(load_default=None, allow_none=True,  # a token's sub: a customer could own no other
                     metadata={"description": "admin only: start it for this user (a customer may name only itself)"})
    team_id = Id(load_default=None, allow_none=True, metadata={"description": "an existing team"})


@endpoint(
    "POST", "/api/v1/sessions", summary="Start a conversation", tag="sessions", roles=("customer", "admin"),
    body=StartSessionBody, body_required=False, response=ConversationOut, status=201, errors=(400, 403, 404, 413, 429),
    examples={"body": {"metadata": {"channel": "web", "page": "/pricing"}}},
    description="A customer starts its own conversation; an admin may start one for `user_id`. "
                "A customer naming another user_id is 403; agents are 403 (they do not start conversations).",
)
async def handle_start_session(ctx: Ctx, data: dict[str, Any]) -> render.PublicConversation:
    """Start a conversation in state `ai` (the same path as the WebSocket `conversation.start`)."""
    identity = ctx.identity
    user_id = data["user_id"]
    if user_id is not None and user_id != identity.user_id and not identity.is_admin:
        raise Forbidden("only an admin may start a session for another user")
    conversation = await ctx.ops.conversations.start(identity, metadata=data["metadata"], team_id=data["team_id"],
                                           user_id=user_id)
    return await ctx.public(conversation)


@endpoint(
    "GET", "/api/v1/sessions/{id}", summary="Get a conversation (session)", tag="sessions", roles=EVERYONE,
    response=ConversationOut, errors=(404,), path_doc=ID_DOC,
    description="A customer sees only its own (anyone else's is 404, existing or not).",
)
async def handle_get_session(ctx: Ctx) -> render.PublicConversation:
    """C of a conversation the caller may see."""
    conversation = await ctx.ops.conversations.get_for(ctx.identity, ctx.param("id"))
    return await ctx.public(conversation)


HANDLERS = (handle_start_session, handle_get_session)
