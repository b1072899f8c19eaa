"""The route table: every @endpoint handler once, each route served by exactly one handler."""

from aiohttp import web

from chat.api import routes


def test_every_handler_is_routed_once():
    app = web.Application()
    routes.register(app)
    served = {(route.method, route.resource.canonical) for route in app.router.routes() if route.resource}
    declared = [(h.endpoint.method, h.endpoint.path) for h in routes.HANDLERS]
    assert len(declared) == len(set(declared))
    assert set(declared) <= served
    public = {h.endpoint.path for h in routes.HANDLERS if not h.endpoint.roles}
    assert public == {"/api/v1/auth/login", "/api/v1/auth/refresh", "/api/v1/auth/logout",
                      "/api/v1/visitors"}  # the rest need a token
