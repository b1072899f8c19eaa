"""GET /api/docs: the OpenAPI document rendered for people by a vendored, pinned Swagger UI
(swagger-ui-dist, the files of its npm package unchanged; version and licence in VIEWER and
docs/rest.md), served by the service itself: no CDN, and a Content-Security-Policy that allows
scripts and styles from the service only (the start-up script is a file, not inline)."""

from __future__ import annotations

import hashlib
from functools import cache
from pathlib import Path

from aiohttp import web

HERE = Path(__file__).resolve().parent
VIEWER = {
    "package": "swagger-ui-dist", "version": "5.35.0", "licence": "Apache-2.0",
    "integrity": "sha512-U06rpMtW9V3XPGOBeamTUSr0Z09jMX4IJuANpE/EZbAhw0G8CgwrzU4YmXkn/h0wCDNsXdGarTNNHC3sU8yVUQ==",
}
PAGE_PATH = "/api/docs"
# the page's own files and the viewer's, by the name the page asks for
FILES = {
    "init.js": HERE / "init.js",
    "page.css": HERE / "page.css",
    "swagger-ui-bundle.js": HERE / "swagger-ui" / "swagger-ui-bundle.js",
    "swagger-ui.css": HERE / "swagger-ui" / "swagger-ui.css",
    "LICENSE": HERE / "swagger-ui" / "LICENSE",
    "NOTICE": HERE / "swagger-ui" / "NOTICE",
}
TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8",
         ".html": "text/html; charset=utf-8"}
CSP = "; ".join((
    "default-src 'none'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self' data:",  # the viewer's icons are data: URIs in its stylesheet
    "font-src 'self'",
    "connect-src 'self'",  # the document and "Try it out" requests, to this service only
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'none'",
))
MAX_AGE_S = 3600  # the files change only with a new install; the ETag saves the body after that


@cache
def _file(name: str) -> tuple[bytes, str]:
    """A file's bytes and its ETag (package data: read once)."""
    body = (HERE / "index.html").read_bytes() if name == "" else FILES[name].read_bytes()
    return body, '"' + hashlib.sha256(body).hexdigest()[:32] + '"'


def _respond(request: web.Request, name: str, content_type: str) -> web.Response:
    body, etag = _file(name)
    headers = {"ETag": etag, "Cache-Control": f"public, max-age={MAX_AGE_S}", "X-Content-Type-Options": "nosniff",
               "Content-Security-Policy": CSP, "Referrer-Policy": "no-referrer"}
    if etag in request.headers.get("If-None-Match", ""):
        return web.Response(status=304, headers=headers)
    return web.Response(body=body, headers={**headers, "Content-Type": content_type})


async def handle_page(request: web.Request) -> web.Response:
    """The page that loads the viewer."""
    return _respond(request, "", TYPES[".html"])


async def handle_file(request: web.Request) -> web.Response:
    """One of the page's files (only those named in FILES: nothing else of the package is reachable)."""
    name = request.match_info["name"]
    if name not in FILES:
        raise web.HTTPNotFound(text="no such file")
    return _respond(request, name, TYPES.get(FILES[name].suffix, "text/plain; charset=utf-8"))


def register(app: web.Application) -> None:
    """Add GET /api/docs and its files."""
    app.router.add_get(PAGE_PATH, handle_page)
    app.router.add_get(PAGE_PATH + "/{name}", handle_file)
