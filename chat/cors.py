"""CORS from `CORS_ORIGINS` (aiohttp-cors): the listed origins may call every route of the app but
the WebSocket upgrade (browsers do not apply CORS to it; the token is its guard).

No credentials: the API's callers send a bearer token, never a cookie, and the console (whose
refresh cookie is the one credential a browser holds) is served from the service's own origin.
"""

from __future__ import annotations

import aiohttp_cors
from aiohttp import web

from chat.api.common import REQUEST_ID_HEADER, WS_ROUTE

ALLOW_HEADERS = ("Authorization", "Content-Type", REQUEST_ID_HEADER)
EXPOSE_HEADERS = (REQUEST_ID_HEADER, "Retry-After", "WWW-Authenticate")  # a script reads these on 401 and 429
PREFLIGHT_MAX_AGE_S = 600


def setup_cors(app: web.Application, origins: tuple[str, ...]) -> None:
    """Allow `origins` on every route registered so far except GET /ws; none: no CORS headers at all."""
    if not origins:
        return
    options = aiohttp_cors.ResourceOptions(  # type: ignore[no-untyped-call]  # its __init__ has no annotations
        allow_credentials=False, allow_headers=ALLOW_HEADERS, expose_headers=EXPOSE_HEADERS,
        max_age=PREFLIGHT_MAX_AGE_S)
    cors = aiohttp_cors.setup(app, defaults=dict.fromkeys(origins, options))
    for route in list(app.router.routes()):  # the preflight routes cors.add creates are not walked again
        if route.resource is None or route.resource.name != WS_ROUTE:
            cors.add(route)
    app.on_response_prepare.append(_vary_on_origin)


async def _vary_on_origin(request: web.Request, response: web.StreamResponse) -> None:
    """Whether a response carries Access-Control-Allow-Origin depends on the request's Origin: a
    shared cache (a CDN in front of /widget.js) must keep one copy per origin."""
    if request.match_info.route.name != WS_ROUTE and "Origin" not in response.headers.get("Vary", ""):
        response.headers.add("Vary", "Origin")
