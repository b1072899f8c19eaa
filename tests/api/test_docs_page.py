"""GET /api/docs: the vendored Swagger UI renders the OpenAPI document under a Content-Security-Policy
without 'unsafe-inline' (no inline script or style; nothing from another origin), in a real browser
(Debian's chromium driven by Playwright), and "Try it out" reaches the service."""

from __future__ import annotations

import os
import re

from playwright.async_api import async_playwright

from chat.apidocs import CSP, FILES, VIEWER
from chat.app import create_app

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
UI_TIMEOUT_MS = 20000


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


async def test_swagger_ui_renders_and_tries_the_api_under_the_policy(aiohttp_client, make_settings):
    client = await aiohttp_client(create_app(make_settings()))
    document = await (await client.get("/api/openapi.json")).json()
    operations = sum(len(ops) for ops in document["paths"].values())
    problems: list[str] = []
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM)
        try:
            page = await browser.new_page()
            page.on("console", lambda m: problems.append(m.text) if m.type in ("error", "warning") else None)
            page.on("pageerror", lambda e: problems.append(str(e)))
            page.on("request", lambda r: None if r.url.startswith(str(client.make_url("/"))) else
                    problems.append(f"request to another origin: {r.url}"))
            await page.goto(str(client.make_url("/api/docs")))
            blocks = page.locator(".opblock")
            await blocks.first.wait_for(timeout=UI_TIMEOUT_MS)
            assert await blocks.count() == operations
            health = page.locator("#operations-service-health")
            await health.locator(".opblock-summary").click()
            await health.get_by_role("button", name="Try it out").click()
            await health.get_by_role("button", name="Execute").click()
            status = health.locator(".live-responses-table tbody .response-col_status").first
            await status.wait_for(timeout=UI_TIMEOUT_MS)
            assert (await status.inner_text()).strip() == "200"
        finally:
            await browser.close()
    assert not problems, problems  # a CSP violation is a console error: none
