"""The widget on another site: the script tag names the service, the host page's CSP allows only
the service (docs/web.md), and anonymous visitors work only from an origin in CORS_ORIGINS."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from playwright.async_api import expect

from tests.browser.conftest import Service
from tests.browser.widget_page import Widget, open_host

LISTED, UNLISTED = "http://shop.example", "http://elsewhere.example"


async def test_a_listed_site_gets_a_visitor_token_and_an_unlisted_one_does_not(
        make_service: Callable[..., Service], new_page: Callable[..., Any], page_errors: list[str]) -> None:
    service = make_service(CORS_ORIGINS=LISTED)

    shop = await new_page()
    await open_host(shop, service.url, origin=LISTED)  # no data-server: the script's own origin
    widget = Widget(shop)
    await widget.open()
    await widget.write("hello from another site")
    await expect(widget.message(2)).to_contain_text("hello from another site")
    assert page_errors == []

    elsewhere = await new_page()
    refused = elsewhere.wait_for_event("console", lambda message: "CORS policy" in message.text)
    await open_host(elsewhere, service.url, origin=UNLISTED)
    other = Widget(elsewhere)
    await other.launcher.click()
    await refused  # the browser kept the visitor token from the page
    await expect(other.status).to_have_attribute("data-state", "offline")
    assert await other.storage() in ({}, {"open": True})  # no token kept, no conversation
    page_errors.clear()  # the CORS refusal above was the point
