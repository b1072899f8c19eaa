"""Erasure of a customer (PROTOCOL 6): DELETE /api/v1/customers/{user_id}, admins only."""

from __future__ import annotations

from typing import Any

from marshmallow import fields

from chat import keys
from chat.api.common import ADMIN, Ctx, endpoint
from chat.api.schemas import Out


class ErasedOut(Out):
    """What an erasure scrubbed (zeros when there was nothing left: it is idempotent)."""

    user_id = fields.String(required=True)
    conversations = fields.Integer(required=True, metadata={"description": "conversations scrubbed"})
    contacts = fields.Integer(required=True, metadata={"description": "contact rows deleted"})


@endpoint(
    "DELETE", "/api/v1/customers/{user_id}", summary="Erase a customer", tag="customers", roles=ADMIN,
    response=ErasedOut, path_doc={"user_id": "the customer's user id"},
    description="Message contents, conversation metadata, rating comments, the event log's reasons, the customer's "
                "contact rows and live records (Redis) are removed, and the webhook outbox bodies about its "
                "conversations replaced by a notice. Counts, states, times and the event log stay, the customer's id "
                "replaced by an anonymous one, so statistics survive; each conversation's log records the erasure "
                "(trigger `erase`). Webhooks hear `customer.erased`. Idempotent: a second call erases nothing more.",
    examples={"response": {"user_id": "cust-42", "conversations": 3, "contacts": 1}},
)
async def handle_erase_customer(ctx: Ctx) -> dict[str, Any]:
    """Erase everything the service holds of a customer's words."""
    erased = await ctx.request.app[keys.ERASER].erase(ctx.param("user_id"), actor_type=ctx.identity.role,
                                                      actor_id=ctx.identity.user_id)
    return {"user_id": erased.user_id, "conversations": len(erased.conversation_ids), "contacts": erased.contacts}


HANDLERS = (handle_erase_customer,)
