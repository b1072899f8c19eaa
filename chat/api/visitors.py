"""POST /api/v1/visitors (PROTOCOL 2.2): a customer token for a new anonymous visitor, so the widget
can be tried with no website backend minting tokens. No token needed; off (404) unless
ANONYMOUS_VISITORS; each client address may get VISITORS_PER_ADDRESS of them per VISITOR_WINDOW_S,
counted in Redis so the limit holds across instances.

The client address is the TCP peer's, or behind `TRUSTED_PROXIES` the client they forwarded the request
for (chat.client_address, docs/protocol.md section 2.4).
"""

from __future__ import annotations

import uuid
from typing import Any

from marshmallow import fields, validate

from chat import keys
from chat.api.common import PUBLIC, RequestCtx, endpoint
from chat.api.schemas import Out
from chat.auth import issue_token
from chat.client_address import client_address
from chat.errors import NotFound, RateLimited
from chat.quotas import SlidingWindow
from states import redis_keys

VISITOR_PREFIX = "v-"  # then 32 hex digits: a visitor's user id never collides with a site's customer ids


class VisitorOut(Out):
    """A new visitor's customer token."""

    access_token = fields.String(required=True, metadata={
        "description": "a customer JWT (role `customer`, `sub` = user_id) for `GET /ws?token=` or the widget"})
    expires_in = fields.Integer(required=True, metadata={"description": "seconds it is valid (VISITOR_TOKEN_TTL_S)"})
    user_id = fields.String(required=True, validate=validate.Regexp(r"^v-[0-9a-f]{32}$"),
                            metadata={"description": "the new visitor's id: `v-` and 32 hex digits"})


_EXAMPLE = {"access_token": "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJ2LTRmIn0.c2lnbmF0dXJl",
            "expires_in": 86400, "user_id": "v-4f9c2d7e1b8a4c6e9d0f3a5b7c1e2d4f"}


@endpoint(
    "POST", "/api/v1/visitors", summary="Get a token for a new anonymous visitor", tag="visitors", roles=PUBLIC,
    response=VisitorOut, errors=(404, 429),
    description="Only when ANONYMOUS_VISITORS is on (the default in the embedded mode only), else 404. No body. "
                "Each call makes a new visitor id. At most VISITORS_PER_ADDRESS tokens per client address (the "
                "TCP peer, or behind TRUSTED_PROXIES the X-Forwarded-For client) in VISITOR_WINDOW_S, across "
                "instances: then 429 with Retry-After.",
    examples={"response": _EXAMPLE},
)
async def handle_new_visitor(ctx: RequestCtx) -> dict[str, Any]:
    """A customer token for a new visitor id."""
    app = ctx.request.app
    settings = app[keys.SETTINGS]
    if not settings.anonymous_visitors:
        raise NotFound("anonymous visitors are off (ANONYMOUS_VISITORS)")
    window = SlidingWindow(app[keys.REDIS], settings.visitors_per_address, settings.visitor_window_s)
    admission = await window.take(redis_keys.visitor_tokens(client_address(ctx.request)))
    if admission.member is None:
        raise RateLimited("too many visitor tokens for this address; try again later",
                          retry_after_s=admission.retry_after_s)
    user_id = f"{VISITOR_PREFIX}{uuid.uuid4().hex}"
    token = issue_token(settings.jwt_secret_key, user_id, "customer", ttl_s=settings.visitor_token_ttl_s)
    return {"access_token": token, "expires_in": settings.visitor_token_ttl_s, "user_id": user_id}


HANDLERS = (handle_new_visitor,)
