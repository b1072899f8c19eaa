"""/api/docs in a real browser: the vendored Swagger UI renders every operation of the service's OpenAPI
document under its Content-Security-Policy (no 'unsafe-inline') with no violation and nothing loaded
from another origin, and "Try it out" reaches the service."""

from __future__ import annotations

import json
import urllib.request

from playwright.async_api import Page, expect

from tests.browser.conftest import Service


async def test_swagger_ui_renders_and_tries_the_api_under_the_policy(service: Service, page: Page,
                                                                      page_errors: list[str]) -> None:
    with urllib.request.urlopen(service.url + "/api/openapi.json") as answer:  # noqa: S310 - our own service
        document = json.load(answer)
    operations = sum(len(ops) for ops in document["paths"].values())
    elsewhere: list[str] = []
    page.on("request", lambda r: None if r.url.startswith(service.url) or r.url.startswith("data:")
            else elsewhere.append(r.url))
    response = await page.goto(service.url + "/api/docs")
    assert response is not None and "unsafe-inline" not in response.headers["content-security-policy"]
    await expect(page.locator(".opblock")).to_have_count(operations)
    health = page.locator("#operations-service-health")
    await health.locator(".opblock-summary").click()
    await health.get_by_role("button", name="Try it out").click()
    await health.get_by_role("button", name="Execute").click()
    await expect(health.locator(".live-responses-table tbody .response-col_status").first).to_have_text("200")
    assert elsewhere == []
    assert page_errors == []  # a policy violation is a console error: none
