"""Every REST route of /api/v1 and the OpenAPI document."""

from aiohttp import web

from chat.api import (
    agents,
    auth,
    canned,
    common,
    conversations,
    csat,
    customers,
    export,
    labels,
    me,
    messages,
    openapi,
    sessions,
    stats,
    teams,
    users,
    visitors,
    webhooks,
)
from chat.api.common import EndpointHandler

# One tuple of @endpoint handlers: the router and the OpenAPI document are both built from it.
HANDLERS: tuple[EndpointHandler, ...] = (
    *sessions.HANDLERS,
    *conversations.HANDLERS,
    *messages.HANDLERS,
    *me.HANDLERS,
    *export.HANDLERS,
    *labels.HANDLERS,
    *teams.HANDLERS,
    *stats.HANDLERS,
    *agents.HANDLERS,
    *auth.HANDLERS,
    *users.HANDLERS,
    *visitors.HANDLERS,
    *csat.HANDLERS,
    *canned.HANDLERS,
    *webhooks.HANDLERS,
    *customers.HANDLERS,
)


def register(app: web.Application) -> None:
    """Add the REST routes and the error middleware."""
    app.middlewares.append(common.error_middleware)
    for handler in HANDLERS:
        app.router.add_route(handler.endpoint.method, handler.endpoint.path, handler)
    openapi.register(app, HANDLERS)
