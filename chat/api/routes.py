"""Every REST route of /api/v1 and the OpenAPI document."""

from aiohttp import web

from chat.api import agents, common, conversations, labels, openapi, sessions, stats, teams

# One tuple of @endpoint handlers: the router and the OpenAPI document are both built from it.
HANDLERS = (
    *sessions.HANDLERS,
    *conversations.HANDLERS,
    *labels.HANDLERS,
    *teams.HANDLERS,
    *stats.HANDLERS,
    *agents.HANDLERS,
)


def register(app: web.Application) -> None:
    """Add the REST routes, the error middleware and the admin queries."""
    app.middlewares.append(common.error_middleware)
    app.cleanup_ctx.append(common.admin_queries_ctx)  # after the store's cleanup_ctx (create_app adds it first)
    for handler in HANDLERS:
        app.router.add_route(handler.endpoint.method, handler.endpoint.path, handler)
    openapi.register(app, HANDLERS)
