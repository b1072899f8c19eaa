"""Webhook subscriptions and their deliveries (PROTOCOL 6.1), admins only:
GET|POST /api/v1/webhooks, DELETE /api/v1/webhooks/{id}, GET /api/v1/webhooks/{id}/deliveries,
POST /api/v1/webhooks/{id}/deliveries/{delivery_id}/redeliver."""

from __future__ import annotations

from typing import Any

from marshmallow import fields, validate

from chat import keys
from chat.api.common import ADMIN, Ctx, endpoint
from chat.api.schemas import DATE_TIME, Body, Out, Query, QueryInt, page_of
from chat.cursors import Cursor, next_cursor
from chat.errors import Conflict, Invalid, NotFound
from chat.limits import counter_range
from chat.store.webhooks import EVENT_TYPES, Delivery, Webhook
from chat.webhooks import RefusedTarget, check_url

ID_DOC = {"id": "the webhook id"}
DELIVERY_DOC = {**ID_DOC, "delivery_id": "the delivery id"}


class WebhookOut(Out):
    """A subscription (its secret is shown once, in the answer to its creation)."""

    id = fields.String(required=True)
    url = fields.String(required=True)
    events = fields.List(fields.String(validate=validate.OneOf(EVENT_TYPES)), required=True)
    created_at = fields.String(required=True, metadata=DATE_TIME)
    secret = fields.String(metadata={"description": "only in the 201 answer: keep it to verify signatures"})


class DeliveryOut(Out):
    """One event to one subscription and what its attempts met."""

    id = fields.String(required=True)
    webhook_id = fields.String(required=True)
    event_id = fields.String(required=True, metadata={"description": "the body's `id` and X-Chat-Event-Id"})
    event_type = fields.String(required=True)
    conversation_id = fields.String(required=True, metadata={"description": "empty for customer.erased"})
    status = fields.String(required=True, validate=validate.OneOf(["pending", "delivered", "failed"]))
    attempts = fields.Integer(required=True)
    next_attempt_at = fields.String(required=True, allow_none=True, metadata=DATE_TIME)
    last_attempt_at = fields.String(required=True, allow_none=True, metadata=DATE_TIME)
    response_status = fields.Integer(required=True, allow_none=True)
    response_excerpt = fields.String(required=True, allow_none=True,
                                     metadata={"description": "the first 512 bytes of the last response body"})
    error = fields.String(required=True, allow_none=True, metadata={"description": "timeout, refused address..."})
    delivered_at = fields.String(required=True, allow_none=True, metadata=DATE_TIME)
    created_at = fields.String(required=True, metadata=DATE_TIME)


WebhookPage = page_of("WebhookPage", WebhookOut, "always null: every webhook is listed")
DeliveryPage = page_of("DeliveryPage", DeliveryOut, "pass as `cursor` for the next page; null on the last")


class WebhookBody(Body):
    """A new subscription."""

    url = fields.String(required=True, validate=validate.Length(min=1, max=2048),
                        metadata={"description": "http(s); private, loopback and link-local hosts are refused "
                                                 "unless WEBHOOK_ALLOW_PRIVATE"})
    events = fields.List(fields.String(validate=validate.OneOf(EVENT_TYPES)), required=True,
                         validate=validate.Length(min=1, max=len(EVENT_TYPES)))
    secret = fields.String(validate=validate.Length(min=1, max=255),
                           metadata={"description": "the HMAC key; generated when absent"})


class DeliveriesQuery(Query):
    """A page of deliveries."""

    limit = QueryInt(load_default=50, validate=counter_range(200, minimum=1))
    cursor = Cursor(metadata={"description": "the next_cursor of the previous page (empty: the first page)"})


EXAMPLE_BODY = {"url": "https://crm.example.com/hooks/chat", "events": ["message.created", "conversation.updated"]}
EXAMPLE = {"id": "3f1c6d0e-2b9a-4c55-8a0e-7d1f2e3a4b5c", **EXAMPLE_BODY, "created_at": "2026-12-01T09:00:00.000Z"}
EXAMPLE_DELIVERY = {
    "id": "a1b2c3d4-0000-4000-8000-000000000001", "webhook_id": EXAMPLE["id"],
    "event_id": "e5f6a7b8-0000-4000-8000-000000000002", "event_type": "message.created",
    "conversation_id": "0f8e3c52-8d7a-4f0e-9a51-3b0d6c9a1e77", "status": "delivered", "attempts": 2,
    "next_attempt_at": None, "last_attempt_at": "2026-12-01T09:00:05.300Z", "response_status": 200,
    "response_excerpt": "ok", "error": None, "delivered_at": "2026-12-01T09:00:05.300Z",
    "created_at": "2026-12-01T09:00:00.000Z",
}


async def _webhook(ctx: Ctx) -> Webhook:
    webhook = await ctx.store.webhooks.get(ctx.param("id"))
    if webhook is None:
        raise NotFound("webhook not found")
    return webhook


@endpoint("GET", "/api/v1/webhooks", summary="List webhooks", tag="webhooks", roles=ADMIN, response=WebhookPage,
          examples={"response": {"items": [EXAMPLE], "next_cursor": None}})
async def handle_list_webhooks(ctx: Ctx) -> dict[str, Any]:
    """Every subscription, oldest first (no secrets)."""
    return {"items": await ctx.store.webhooks.all(), "next_cursor": None}


@endpoint(
    "POST", "/api/v1/webhooks", summary="Subscribe a URL to events", tag="webhooks", roles=ADMIN, body=WebhookBody,
    response=WebhookOut, status=201, errors=(400,),
    description="Events: " + ", ".join(f"`{t}`" for t in EVENT_TYPES) + ". A private note is sent as `note.created` "
                "only to webhooks that ask for it. The answer carries the secret, once. A URL that is not http(s), "
                "or whose host is private, loopback or link-local (unless WEBHOOK_ALLOW_PRIVATE), is 400.",
    examples={"body": {**EXAMPLE_BODY, "secret": "whsec_0123456789abcdef"},
              "response": {**EXAMPLE, "secret": "whsec_0123456789abcdef"}},
)
async def handle_create_webhook(ctx: Ctx, data: dict[str, Any]) -> Webhook:
    """A new subscription, with its secret."""
    try:
        await check_url(data["url"], allow_private=ctx.request.app[keys.SETTINGS].webhook_allow_private)
    except RefusedTarget as exc:
        raise Invalid(f"webhook URL refused: {exc}", {"url": [str(exc)]}) from None
    return await ctx.store.webhooks.create(data["url"], data["events"], data.get("secret"))


@endpoint("DELETE", "/api/v1/webhooks/{id}", summary="Delete a webhook", tag="webhooks", roles=ADMIN, status=204,
          errors=(404,), path_doc=ID_DOC, description="Its pending deliveries are dropped with it.")
async def handle_delete_webhook(ctx: Ctx) -> None:
    """204, or 404."""
    if not await ctx.store.webhooks.delete(ctx.param("id")):
        raise NotFound("webhook not found")


@endpoint(
    "GET", "/api/v1/webhooks/{id}/deliveries", summary="List a webhook's deliveries", tag="webhooks", roles=ADMIN,
    query=DeliveriesQuery, response=DeliveryPage, errors=(400, 404), path_doc=ID_DOC,
    description="Newest first; keyset pagination.",
    examples={"response": {"items": [EXAMPLE_DELIVERY], "next_cursor": None}},
)
async def handle_list_deliveries(ctx: Ctx, query: dict[str, Any]) -> dict[str, Any]:
    """One page of deliveries."""
    webhook = await _webhook(ctx)
    items, position = await ctx.store.webhooks.deliveries(webhook["id"], limit=query["limit"],
                                                          before=query.get("cursor"))
    return {"items": items, "next_cursor": next_cursor(position)}


@endpoint(
    "POST", "/api/v1/webhooks/{id}/deliveries/{delivery_id}/redeliver", summary="Deliver an event again",
    tag="webhooks", roles=ADMIN, response=DeliveryOut, errors=(404, 409), path_doc=DELIVERY_DOC,
    description="A delivered or failed delivery: the same event (same `id` and body) is queued again, due now, "
                "with a fresh 24 h of retries, after the events of its conversation already queued. It starts over: "
                "`attempts` 0, and `last_attempt_at`, `response_status`, `response_excerpt`, `error` and "
                "`delivered_at` null until its next attempt ends. A pending one is 409 (it is on its way).",
    examples={"response": {**EXAMPLE_DELIVERY, "status": "pending", "attempts": 0,
                           "next_attempt_at": "2026-12-01T10:00:00.000Z", "last_attempt_at": None,
                           "response_status": None, "response_excerpt": None, "error": None, "delivered_at": None}},
)
async def handle_redeliver(ctx: Ctx) -> Delivery:
    """The delivery, pending again; 409 while it is pending already."""
    webhook_id, delivery_id = ctx.param("id"), ctx.param("delivery_id")
    if not await ctx.store.webhooks.redeliver(webhook_id, delivery_id):
        if await ctx.store.webhooks.delivery(webhook_id, delivery_id) is None:
            raise NotFound("delivery not found")
        raise Conflict("the delivery is pending: it will be attempted (see next_attempt_at)")
    delivery = await ctx.store.webhooks.delivery(webhook_id, delivery_id)
    if delivery is None:  # its webhook was deleted meanwhile
        raise NotFound("delivery not found")
    return delivery


HANDLERS = (handle_list_webhooks, handle_create_webhook, handle_delete_webhook, handle_list_deliveries,
            handle_redeliver)
