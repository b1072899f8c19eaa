"""Messages over REST for bridges and bots (PROTOCOL 6): POST /api/v1/conversations/{id}/messages.

It calls the very operation the WebSocket `message.send` calls (Messages.deliver): the same rules
(only the assignee writes to the customer, anyone on the staff adds a private note), the same
idempotency per (conversation, sender, client_msg_id), the same events pushed to the sockets.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from marshmallow import fields, validate

from chat import render
from chat.api.common import STAFF, Ctx, dumps, endpoint
from chat.api.schemas import Body, MessageOut
from chat.conversations import MAX_CONTENT_CHARS
from chat.ws.registry import StrictBoolean

ID_DOC = {"id": "the conversation id"}


class SendBody(Body):
    """A message (or a private note) to store; resending the same client_msg_id stores nothing new."""

    content = fields.String(required=True, metadata={
        "description": f"1 to {MAX_CONTENT_CHARS} characters (code points): empty is 400, longer is 413"})
    client_msg_id = fields.String(required=True, validate=validate.Length(min=1, max=64), metadata={
        "description": "the caller's id of this message: a resend with the same one returns the stored message"})
    private = StrictBoolean(load_default=False, metadata={
        "description": "an internal note, never shown to the customer (any agent may add one)"})


@endpoint(
    "POST", "/api/v1/conversations/{id}/messages", summary="Send a message or a private note", tag="messages",
    roles=STAFF, body=SendBody, response=MessageOut, status=201, errors=(400, 403, 404, 409, 413),
    path_doc=ID_DOC, also={200: "a resend of the same client_msg_id: the stored message (nothing stored or pushed)"},
    examples={"body": {"content": "您好，我来帮您查一下订单", "client_msg_id": "slack-1717171717.000200",
                       "private": False}},
    description="The WebSocket `message.send` over REST, for bridges and bots: 201 with M for a new message, 200 "
                "with the stored M for a resend of the same `client_msg_id` (nothing stored, nothing pushed). Only "
                "the assigned agent (state `human`) may write to the customer, others get 403; any agent or admin "
                "may add a private note. Subscribed sockets get `message.created` as for a WebSocket message.",
)
async def handle_send_message(ctx: Ctx, data: dict[str, Any]) -> web.Response:
    """Messages.deliver, as the WebSocket's message.send."""
    message, created = await ctx.ops.messages.deliver(
        ctx.identity, ctx.param("id"), content=data["content"], client_msg_id=data["client_msg_id"],
        private=data["private"],
    )
    return web.json_response(text=dumps(render.message(message)), status=201 if created else 200)


HANDLERS = (handle_send_message,)
