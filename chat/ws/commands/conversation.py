"""Customer commands (PROTOCOL 3.4): start, resume, list, message.send, handoff.request, typing, close,
csat.submit."""

from __future__ import annotations

from typing import Any

from marshmallow import fields, validate

from chat import render
from chat.conversations.lifecycle import MAX_OWN_PAGE, OWN_PAGE
from chat.cursors import Cursor
from chat.errors import Forbidden
from chat.limits import check_metadata, counter_range
from chat.store.models import STATES
from chat.ws.commands import CommandContext
from chat.ws.registry import CommandSchema, Registry, StrictBoolean, command


def conversation_id_field() -> fields.String:
    """A required conversation id field."""
    return fields.String(required=True, validate=validate.Length(min=1, max=64))


class StartSchema(CommandSchema):
    metadata = fields.Dict(load_default=dict, validate=check_metadata)
    team_id = fields.String(load_default=None, allow_none=True, validate=validate.Length(min=1, max=64))


RESUME_PAGE = 200  # messages in a resume (or watch) reply unless `limit` says otherwise
MAX_RESUME_PAGE = 1000


class ResumeSchema(CommandSchema):
    conversation_id = conversation_id_field()
    after_seq = fields.Integer(load_default=0, strict=True, validate=counter_range())
    limit = fields.Integer(load_default=RESUME_PAGE, strict=True, validate=counter_range(MAX_RESUME_PAGE, minimum=1))


class ListSchema(CommandSchema):
    state = fields.String(load_default=None, allow_none=True, validate=validate.OneOf(STATES))
    limit = fields.Integer(load_default=OWN_PAGE, strict=True, validate=counter_range(MAX_OWN_PAGE, minimum=1))
    cursor = Cursor(load_default=None, allow_none=True)


class SendSchema(CommandSchema):
    conversation_id = conversation_id_field()
    client_msg_id = fields.String(required=True, validate=validate.Length(min=1, max=64))
    content = fields.String(required=True)  # length is checked by the operations: empty invalid, long too_large
    private = StrictBoolean(load_default=False)


class HandoffSchema(CommandSchema):
    conversation_id = conversation_id_field()
    reason = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=255))


class TypingSchema(CommandSchema):
    conversation_id = conversation_id_field()
    on = StrictBoolean(required=True)


class ConversationOnlySchema(CommandSchema):
    conversation_id = conversation_id_field()


MAX_CSAT_COMMENT_CHARS = 1000


class CsatSchema(CommandSchema):
    conversation_id = conversation_id_field()
    score = fields.Integer(required=True, strict=True, validate=validate.Range(min=1, max=5))
    comment = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=MAX_CSAT_COMMENT_CHARS))


@command("conversation.start", StartSchema)
async def handle_start(ctx: CommandContext, data: dict[str, Any]) -> dict[str, Any]:
    """Start a conversation and subscribe this socket to it."""
    if ctx.identity.role != "customer":
        raise Forbidden("only customers start conversations")
    conversation = await ctx.ops.conversations.start(ctx.identity, metadata=data["metadata"],
                                                     team_id=data["team_id"])
    await ctx.subscribe(conversation.id)
    return {"conversation": await ctx.ops.conversations.view(conversation)}


@command("conversation.resume", ResumeSchema)
async def handle_resume(ctx: CommandContext, data: dict[str, Any]) -> dict[str, Any]:
    """The first `limit` messages after `after_seq`, oldest first, and subscribe."""
    return await subscribe_and_replay(ctx, data)


async def subscribe_and_replay(ctx: CommandContext, data: dict[str, Any]) -> dict[str, Any]:
    """Subscribe this socket, then the conversation and one page of the messages after `after_seq`
    (conversation.resume and conversation.watch answer the same).

    Only the page is read from the store (one row more tells whether there is a next page),
    never the whole history: a long conversation resumed by many sockets costs one page each.
    `ai_stream` is S (PROTOCOL 3.7), the AI reply streaming now, read after the messages: a turn ends its
    stream before its reply is stored, so a reply is never both in the page and in S. The conversation's
    frames wait until the reply is sent, and the deltas it holds (or those of a turn that ended) are dropped."""
    ops, limit = ctx.ops, data["limit"]
    # checked against SQL: a client (re)joining must not be shown a live record left behind by a Redis restore
    conversation = await ops.conversations.get_for(ctx.identity, data["conversation_id"], fresh=True)
    # before reading, so nothing falls between the read and the live events
    await ctx.subscribe(conversation.id, hold=True)
    messages = await ops.messages.list_for(ctx.identity, conversation.id, data["after_seq"], limit + 1)
    snapshot = await ctx.streams.read(conversation.id)
    ctx.send_after_reply(conversation.id, snapshot.keeps)
    return {
        "conversation": await ops.conversations.view(conversation),
        "messages": [render.message(m) for m in messages[:limit]],
        "has_more": len(messages) > limit,
        "ai_stream": snapshot.stream.public() if snapshot.stream is not None else None,
    }


@command("conversation.list", ListSchema, roles=("customer",))
async def handle_list(ctx: CommandContext, data: dict[str, Any]) -> dict[str, Any]:
    """The customer's own conversations, newest first, one page (no subscription)."""
    conversations, cursor = await ctx.ops.conversations.list_own(ctx.identity, state=data["state"],
                                                                 limit=data["limit"], after=data["cursor"])
    return {"conversations": conversations, "next_cursor": cursor}


@command("message.send", SendSchema)
async def handle_send(ctx: CommandContext, data: dict[str, Any]) -> dict[str, Any]:
    """Store a message (idempotent per client_msg_id)."""
    message = await ctx.ops.messages.send(
        ctx.identity,
        data["conversation_id"],
        content=data["content"],
        client_msg_id=data["client_msg_id"],
        private=data["private"],
    )
    return {"message": render.message(message)}


@command("handoff.request", HandoffSchema)
async def handle_handoff(ctx: CommandContext, data: dict[str, Any]) -> dict[str, Any]:
    """Ask for a human agent."""
    conversation = await ctx.ops.conversations.request_handoff(ctx.identity, data["conversation_id"], data["reason"])
    return {"conversation": await ctx.ops.conversations.view(conversation)}


@command("typing", TypingSchema)
async def handle_typing(ctx: CommandContext, data: dict[str, Any]) -> None:
    """Tell the other side someone is typing (no reply unless the frame has an id)."""
    await ctx.ops.messages.typing(ctx.identity, data["conversation_id"], data["on"])


@command("conversation.close", ConversationOnlySchema)
async def handle_close(ctx: CommandContext, data: dict[str, Any]) -> dict[str, Any]:
    """Close the conversation."""
    conversation = await ctx.ops.conversations.close(ctx.identity, data["conversation_id"])
    return {"conversation": await ctx.ops.conversations.view(conversation)}


@command("csat.submit", CsatSchema, roles=("customer",))
async def handle_csat(ctx: CommandContext, data: dict[str, Any]) -> dict[str, Any]:
    """Rate the conversation's close (once per close)."""
    comment = (data["comment"] or "").strip() or None
    return {"csat": await ctx.ops.csat.submit(ctx.identity, data["conversation_id"], data["score"], comment)}


def register(registry: Registry) -> None:
    """Add this family's commands."""
    registry.add(handle_start, handle_resume, handle_list, handle_send, handle_handoff, handle_typing, handle_close,
                 handle_csat)
