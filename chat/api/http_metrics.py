"""The HTTP request histogram (chat_http_request_seconds): every request but the WebSocket's, by
method, route (the route's pattern, so ids never become labels) and status class."""

from __future__ import annotations

import time
from collections.abc import Awaitable

from aiohttp import web

from chat import metrics
from chat.api.common import WS_ROUTE, RequestHandler

UNMATCHED = "unmatched"  # no route: one label for every unknown path (a scanner must not add series)


@web.middleware
def http_metrics(request: web.Request, handler: RequestHandler) -> Awaitable[web.StreamResponse]:
    """Time each request until its response is complete (a streamed export: the whole transfer).
    The WebSocket handler runs for the socket's life: it is passed straight through, not timed."""
    if request.match_info.route.name == WS_ROUTE:
        return handler(request)
    return _timed(request, handler)


async def _timed(request: web.Request, handler: RequestHandler) -> web.StreamResponse:
    started = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:  # only what the error middleware (inside this one) lets through
        status = exc.status
        raise
    finally:
        resource = request.match_info.route.resource
        route = resource.canonical if resource is not None else UNMATCHED
        metrics.HTTP_REQUESTS.labels(request.method, route, f"{status // 100}xx").observe(
            time.perf_counter() - started)


def register(app: web.Application) -> None:
    """Put the middleware outermost, so it sees the status the client gets."""
    app.middlewares.insert(0, http_metrics)
