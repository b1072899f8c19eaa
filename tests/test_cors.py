"""CORS_ORIGINS: the origins listed (and only they) may call the service from a browser; every route
but the WebSocket upgrade; none configured, no CORS headers at all."""

import pytest
from aiohttp import web

from chat.api.common import WS_ROUTE
from chat.cors import setup_cors
from chat.settings import Settings, SettingsError

ALLOWED = "https://shop.example.com"
OTHER = "https://evil.example.net"
ACAO = "Access-Control-Allow-Origin"


def test_origins_are_normalized_as_browsers_send_them(tmp_path):
    s = Settings.from_env({"CHAT_DATA_DIR": str(tmp_path), "CORS_ORIGINS":
                           " HTTPS://Shop.Example.com:443 , http://localhost:3000,,http://[::1]:8080,https://shop.example.com"})
    assert s.cors_origins == ("https://shop.example.com", "http://localhost:3000", "http://[::1]:8080")
    assert Settings.from_env({"CHAT_DATA_DIR": str(tmp_path)}).cors_origins == ()


@pytest.mark.parametrize("value", ["*", "https://a.example/", "https://a.example/chat", "a.example", "ftp://a.example",
                                   "https://user:pw@a.example", "https://a.example?x=1", "https://a.example#f",
                                   "https://a.example:99999", "https://"])
def test_a_bad_origin_is_refused_naming_the_variable(tmp_path, value):
    with pytest.raises(SettingsError, match=r"^CORS_ORIGINS: ") as err:
        Settings.from_env({"CHAT_DATA_DIR": str(tmp_path), "CORS_ORIGINS": f"{ALLOWED},{value}"})
    assert "*" not in value or "not accepted" in str(err.value)


def _preflight(origin: str, method: str = "GET") -> dict[str, str]:
    return {"Origin": origin, "Access-Control-Request-Method": method,
            "Access-Control-Request-Headers": "authorization,content-type"}


async def test_an_allowed_origin_gets_the_headers_on_a_preflight_and_on_a_real_request(harness_factory):
    h = await harness_factory(cors_origins=(ALLOWED,))
    resp = await h.client.options("/api/v1/sessions", headers=_preflight(ALLOWED, "POST"))
    assert resp.status == 200 and resp.headers[ACAO] == ALLOWED
    assert "POST" in resp.headers["Access-Control-Allow-Methods"]
    assert {"AUTHORIZATION", "CONTENT-TYPE"} <= set(resp.headers["Access-Control-Allow-Headers"].upper().split(","))
    assert "Access-Control-Allow-Credentials" not in resp.headers

    token = h.token("admin-c", "admin")
    resp = await h.client.get("/api/v1/agents", headers={"Origin": ALLOWED, "Authorization": f"Bearer {token}"})
    assert resp.status == 200 and resp.headers[ACAO] == ALLOWED
    assert "X-Request-ID" in resp.headers["Access-Control-Expose-Headers"]
    assert "Origin" in resp.headers["Vary"] and "Access-Control-Allow-Credentials" not in resp.headers
    resp = await h.client.get("/api/v1/agents", headers={"Origin": ALLOWED})  # errors too: the script can read them
    assert resp.status == 401 and resp.headers[ACAO] == ALLOWED


async def test_another_origin_gets_no_cors_headers(harness_factory):
    h = await harness_factory(cors_origins=(ALLOWED,))
    resp = await h.client.options("/api/v1/sessions", headers=_preflight(OTHER, "POST"))
    assert resp.status == 403 and ACAO not in resp.headers
    resp = await h.client.get("/health", headers={"Origin": OTHER})
    assert resp.status in (200, 503) and ACAO not in resp.headers
    resp = await h.client.get("/health", headers={"Origin": ALLOWED})
    assert resp.headers[ACAO] == ALLOWED


async def test_no_origins_configured_means_no_cors_at_all(harness):
    resp = await harness.client.options("/api/v1/sessions", headers=_preflight(ALLOWED, "POST"))
    assert resp.status == 405 and ACAO not in resp.headers
    resp = await harness.client.get("/health", headers={"Origin": ALLOWED})
    assert ACAO not in resp.headers and "Vary" not in resp.headers


async def test_every_route_but_the_websocket_upgrade_has_cors(harness_factory):
    h = await harness_factory(cors_origins=(ALLOWED,))
    resources = {route.resource for route in h.app.router.routes()}
    with_preflight = {r.canonical for r in resources if any(route.method == "OPTIONS" for route in r)}
    assert with_preflight == {r.canonical for r in resources} - {"/ws"}
    assert {"/api/v1/sessions", "/api/openapi.json", "/health"} <= with_preflight
    resp = await h.client.options("/ws", headers=_preflight(ALLOWED))
    assert resp.status == 405 and ACAO not in resp.headers


async def test_routes_of_any_kind_registered_before_it_get_cors(aiohttp_client, tmp_path):
    (tmp_path / "widget.js").write_text("console.log('hi')")

    async def hello(request):
        return web.Response(text="hi")

    app = web.Application()
    app.router.add_get("/widget.js", hello)
    app.router.add_static("/static/", tmp_path)
    app.router.add_get("/ws", hello, name=WS_ROUTE)
    setup_cors(app, (ALLOWED,))
    client = await aiohttp_client(app)
    for path in ("/widget.js", "/static/widget.js"):
        resp = await client.get(path, headers={"Origin": ALLOWED})
        assert resp.status == 200 and resp.headers[ACAO] == ALLOWED, path
        resp = await client.options(path, headers=_preflight(ALLOWED))
        assert resp.status == 200 and resp.headers[ACAO] == ALLOWED, path
    resp = await client.get("/ws", headers={"Origin": ALLOWED})
    assert resp.status == 200 and ACAO not in resp.headers
