"""GET /api/docs and its files: a page with no inline script or style under a Content-Security-Policy
without 'unsafe-inline', the vendored Swagger UI files unchanged, nothing else of the package reachable
(tests/browser/test_api_docs.py renders it in a real browser)."""

from __future__ import annotations

import re

from chat.apidocs import CSP, FILES, VIEWER
from chat.app import create_app


async def test_the_page_and_its_files(aiohttp_client, make_settings):
    client = await aiohttp_client(create_app(make_settings()))
    resp = await client.get("/api/docs")
    assert resp.status == 200 and resp.content_type == "text/html"
    assert resp.headers["Content-Security-Policy"] == CSP and "unsafe" not in CSP
    html = await resp.text()
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html)  # every script is a file
    assert "<style" not in html and " style=" not in html and "http" not in html  # no CDN, no inline style
    assets = re.findall(r'(?:src|href)="(docs/[^"]+)"', html)
    assert {a.removeprefix("docs/") for a in assets} == {"swagger-ui.css", "page.css", "swagger-ui-bundle.js",
                                                          "init.js"}
    for asset in assets:
        got = await client.get("/api/" + asset)
        assert got.status == 200, asset
        assert got.content_type == ("text/css" if asset.endswith(".css") else "text/javascript")
        again = await client.get("/api/" + asset, headers={"If-None-Match": got.headers["ETag"]})
        assert again.status == 304
    bundle = await (await client.get("/api/docs/swagger-ui-bundle.js")).read()
    assert bundle == FILES["swagger-ui-bundle.js"].read_bytes() and len(bundle) > 1_000_000  # the package's file
    licence = await (await client.get("/api/docs/LICENSE")).text()
    assert "Apache License" in licence and VIEWER["licence"] == "Apache-2.0"
    for missing in ("index.js", "..%2F__init__.py", "swagger-ui.js.map"):
        assert (await client.get(f"/api/docs/{missing}")).status == 404
