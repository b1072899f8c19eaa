"""The web routes (PROTOCOL 9): `/widget.js`, `/demo/`, `/console/` and the shared assets under `/web/`,
served from the package's own files with cache and security headers."""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from functools import cache
from pathlib import Path

from aiohttp import web

from chat.web.bundle import bundle

WEB_ROOT = Path(__file__).resolve().parent
SHARED, CONSOLE, DEMO, WIDGET = (WEB_ROOT / name for name in ("shared", "console", "demo", "widget"))

# The pages load scripts and styles only from the service itself: no inline script or style, so an
# injected `<script>` or `onerror=` in anything rendered runs nothing. connect-src: the WebSocket (some
# browsers do not count ws: to the same host as 'self').
PAGE_CSP = "; ".join((
    "default-src 'self'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self' data:",
    "media-src 'self' data:",
    "connect-src 'self' ws: wss:",
    "object-src 'none'",
    "base-uri 'none'",
    "form-action 'self'",
    "frame-ancestors 'none'",
))
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
SCRIPT_MAX_AGE_S = 300  # a changed widget reaches embedding sites within minutes; the ETag saves the body
TYPES = {".js": "text/javascript", ".css": "text/css", ".html": "text/html", ".svg": "image/svg+xml",
         ".png": "image/png", ".json": "application/json", ".mp3": "audio/mpeg", ".ogg": "audio/ogg",
         ".wav": "audio/wav", ".woff2": "font/woff2", ".txt": "text/plain"}


def register(app: web.Application) -> None:
    """Add the web routes."""
    app.router.add_get("/widget.js", handle_widget)
    app.router.add_get("/demo", _redirect_to("/demo/"))
    app.router.add_get("/demo/", _page(DEMO / "index.html"))
    app.router.add_get("/demo/{path:.+}", _static(DEMO))
    app.router.add_get("/console", _redirect_to("/console/"))
    app.router.add_get("/console/", _page(CONSOLE / "index.html"))
    app.router.add_get("/console/{path:.+}", _static(CONSOLE))
    app.router.add_get("/web/{path:.+}", _static(SHARED))


@cache
def widget_script() -> tuple[bytes, str]:
    """The bundled widget and its ETag (the files are package data: they change only with a new install)."""
    body = bundle(WIDGET / "widget.js").encode()
    return body, '"' + hashlib.sha256(body).hexdigest()[:32] + '"'


async def handle_widget(request: web.Request) -> web.StreamResponse:
    """The widget as one classic script (chat/web/bundle.py)."""
    body, etag = widget_script()
    return _with_validator(request, body, etag, "text/javascript", f"public, max-age={SCRIPT_MAX_AGE_S}")


def _redirect_to(location: str) -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        raise web.HTTPMovedPermanently(location)

    return handler


def _page(path: Path) -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        return _file(request, path)

    return handler


def _static(root: Path) -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        return _file(request, _inside(root, request.match_info["path"]))

    return handler


def _inside(root: Path, relative: str) -> Path:
    """The file `relative` names under `root`; 404 for anything else: a folder (no listings), a hidden
    name, or a path that leaves `root` (`..`, an absolute path, a symlink pointing out)."""
    parts = relative.replace("\\", "/").split("/")
    if any(part in ("", ".", "..") or part.startswith(".") for part in parts):
        raise web.HTTPNotFound()
    path = root.joinpath(*parts).resolve()
    if not path.is_relative_to(root) or not path.is_file():
        raise web.HTTPNotFound()
    return path


def _file(request: web.Request, path: Path) -> web.StreamResponse:
    """A file with its type, an ETag, and the headers of its kind (HTML: no-cache and the page CSP)."""
    content_type = TYPES.get(path.suffix)
    if content_type is None or not path.is_file():
        raise web.HTTPNotFound()
    body = path.read_bytes()  # small files, read from the package: no need for sendfile
    etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
    cache_control = "no-cache" if content_type == "text/html" else f"public, max-age={SCRIPT_MAX_AGE_S}"
    response = _with_validator(request, body, etag, content_type, cache_control)
    if content_type == "text/html":
        response.headers["Content-Security-Policy"] = PAGE_CSP
        response.headers["Referrer-Policy"] = "same-origin"
    return response


def _with_validator(request: web.Request, body: bytes, etag: str, content_type: str,
                    cache_control: str) -> web.Response:
    """200 with the body, or 304 when the client's If-None-Match names the same ETag."""
    headers = {"ETag": etag, "Cache-Control": cache_control, "X-Content-Type-Options": "nosniff"}
    if etag in request.headers.get("If-None-Match", ""):
        return web.Response(status=304, headers=headers)
    charset = "utf-8" if content_type.startswith("text/") or content_type.endswith(("json", "+xml")) else None
    return web.Response(body=body, content_type=content_type, charset=charset, headers=headers)
