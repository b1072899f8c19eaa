"""Agent commands (PROTOCOL 3.5): presence, queue, watch, claim, release, transfer, canned responses.

`message.send` (with `private`) and `conversation.close` are shared with customers
(chat.ws.commands.conversation); the operations check who may do what.
"""

from __future__ import annotations

from typing import Any

from marshmallow import ValidationError, fields, validate, validates_schema

from chat.ws.commands import CommandContext
from chat.ws.commands.conversation import (
    ConversationOnlySchema,
    ResumeSchema,
    conversation_id_field,
    subscribe_and_replay,
)
from chat.ws.registry import AGENT_ROLES, CommandSchema, Registry, command


def optional_id_field() -> fields.String:
    """An optional id field (agent or team)."""
    return fields.String(load_default=None, allow_none=True, validate=validate.Length(min=1, max=64))


class PresenceSchema(CommandSchema):
    status = fields.String(required=True, validate=validate.OneOf(["online", "away"]))


class QueueSchema(CommandSchema):
    team_id = optional_id_field()


class CannedSchema(CommandSchema):
    prefix = fields.String(load_default="", validate=validate.Length(max=64))
    conversation_id = optional_id_field()


class TransferSchema(CommandSchema):
    conversation_id = conversation_id_field()
    agent_id = optional_id_field()
    team_id = optional_id_field()

    @validates_schema
    def _one_target(self, data: dict[str, Any], **_: Any) -> None:
        if (data.get("agent_id") is None) == (data.get("team_id") is None):
            raise ValidationError("give exactly one of agent_id and team_id", "agent_id")


@command("presence.set", PresenceSchema, roles=AGENT_ROLES)
async def handle_presence(ctx: CommandContext, data: dict[str, Any]) -> dict[str, Any]:
    """online agents receive routed conversations; away agents do not."""
    await ctx.ops.staff.remember(ctx.identity)
    await ctx.ops.presence.set_status(ctx.identity, data["status"])
    return {"agent_id": ctx.identity.user_id, "status": data["status"]}


@command("queue.list", QueueSchema, roles=AGENT_ROLES)
async def handle_queue(ctx: CommandContext, data: dict[str, Any]) -> dict[str, Any]:
    """Unassigned conversations in handoff, longest waiting first."""
    return {"conversations": await ctx.ops.assignment.queue(data["team_id"])}


@command("conversation.watch", ResumeSchema, roles=AGENT_ROLES)
async def handle_watch(ctx: CommandContext, data: dict[str, Any]) -> dict[str, Any]:
    """Subscribe to a conversation in any state; the reply is as conversation.resume's."""
    return await subscribe_and_replay(ctx, data)


@command("conversation.unwatch", ConversationOnlySchema, roles=AGENT_ROLES)
async def handle_unwatch(ctx: CommandContext, data: dict[str, Any]) -> dict[str, Any]:
    """Stop receiving a conversation's events on this socket."""
    ctx.unsubscribe(data["conversation_id"])
    return {}


@command("conversation.claim", ConversationOnlySchema, roles=AGENT_ROLES)
async def handle_claim(ctx: CommandContext, data: dict[str, Any]) -> dict[str, Any]:
    """`ai` or `handoff` -> `human`, assigned to this agent; racing agents: one wins."""
    cid = data["conversation_id"]
    await ctx.ops.conversations.get_for(ctx.identity, cid)  # no events of one it may not see
    # subscribed before the move, so this socket hears it and the messages it brings, after the reply
    watching = ctx.subscribed(cid)
    await ctx.subscribe(cid, hold=True)
    try:
        conversation = await ctx.ops.assignment.claim(ctx.identity, cid)
    except BaseException:
        if not watching:
            ctx.unsubscribe(cid)
        raise
    return {"conversation": await ctx.ops.conversations.view(conversation)}


@command("conversation.release", ConversationOnlySchema, roles=AGENT_ROLES)
async def handle_release(ctx: CommandContext, data: dict[str, Any]) -> dict[str, Any]:
    """`human` -> `ai`: hand back to the AI."""
    conversation = await ctx.ops.assignment.release(ctx.identity, data["conversation_id"])
    return {"conversation": await ctx.ops.conversations.view(conversation)}


@command("conversation.transfer", TransferSchema, roles=AGENT_ROLES)
async def handle_transfer(ctx: CommandContext, data: dict[str, Any]) -> dict[str, Any]:
    """To another agent (stays `human`) or to a team (`handoff`, queued for it)."""
    conversation = await ctx.ops.assignment.transfer(
        ctx.identity, data["conversation_id"], agent_id=data["agent_id"], team_id=data["team_id"]
    )
    return {"conversation": await ctx.ops.conversations.view(conversation)}


@command("canned.list", CannedSchema, roles=AGENT_ROLES)
async def handle_canned(ctx: CommandContext, data: dict[str, Any]) -> dict[str, Any]:
    """Canned responses whose short code starts with `prefix`, placeholders filled for the conversation."""
    return {"items": await ctx.ops.canned.list_for(ctx.identity, data["prefix"], data["conversation_id"])}


def register(registry: Registry) -> None:
    """Add this family's commands."""
    registry.add(handle_presence, handle_queue, handle_watch, handle_unwatch, handle_claim, handle_release,
                 handle_transfer, handle_canned)
