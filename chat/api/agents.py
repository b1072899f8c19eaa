"""GET /api/v1/agents: every agent with its presence, capacity and active conversations."""

from __future__ import annotations

from typing import Any

from marshmallow import fields

from chat import keys
from chat.api.common import STAFF, Ctx, endpoint
from chat.api.schemas import Out, page_of


class AgentOut(Out):
    """An agent and its presence."""

    agent_id = fields.String(required=True)
    status = fields.String(
        required=True,
        metadata={"enum": ["online", "away", "offline"],
                  "description": "offline when no socket of the agent is open (after its lease)"},
    )
    active = fields.Boolean(required=True, metadata={"description": "the account is active"})
    max_chats = fields.Integer(required=True, allow_none=True)
    active_conversations = fields.Integer(required=True)


AgentPage = page_of("AgentPage", AgentOut, "always null: every agent is listed")


@endpoint("GET", "/api/v1/agents", summary="List agents and their presence", tag="agents", roles=STAFF,
          response=AgentPage)
async def handle_list_agents(ctx: Ctx) -> dict[str, Any]:
    """Agents (and admins) that have signed in at least once, with live presence from Redis."""
    staff = await ctx.store.staff.list_staff()
    settings = ctx.request.app[keys.SETTINGS]
    live = {a.agent_id: a for a in await ctx.request.app[keys.PRESENCE].agents([member.id for member in staff])}
    items = []
    for member in staff:
        state = live[member.id]
        status = state.status if state.connected and state.status in ("online", "away") else "offline"
        items.append({
            "agent_id": member.id,
            "status": status,
            "active": member.active,
            "max_chats": member.max_chats or state.max_chats or settings.agent_max_chats,
            "active_conversations": state.load,
        })
    return {"items": items, "next_cursor": None}


HANDLERS = (handle_list_agents,)
