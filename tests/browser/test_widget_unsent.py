"""The customer widget's messages written before its conversation exists, in a real browser: a new
visitor's first message written before its visitor token came is sent once the token comes, and a
message kept while the service is down goes out once, in one conversation, with two tabs open."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

import aiohttp
from playwright.async_api import Page, Route, expect

from tests.browser.conftest import Service, messages_of, unique
from tests.browser.console_page import rest
from tests.browser.widget_page import Widget, open_host


async def test_a_new_visitors_first_message_waits_for_its_token_and_is_sent(service: Service, page: Page,
                                                                            page_errors: list[str]) -> None:
    token_asked, let_through = asyncio.Event(), asyncio.Event()

    async def slow_visitors(route: Route) -> None:
        """POST /api/v1/visitors answered only once the test has written its message."""
        token_asked.set()
        await let_through.wait()
        await route.continue_()

    await page.route(service.url + "/api/v1/visitors", slow_visitors)
    await open_host(page, service.url)  # no token: an anonymous visitor, none known yet
    widget = Widget(page)
    await widget.launcher.click()
    await asyncio.wait_for(token_asked.wait(), 15)
    await widget.write("written before my token came")
    await expect(page.get_by_test_id("widget-pending")).to_have_count(1)
    let_through.set()

    await widget.online()
    await expect(widget.by_text("written before my token came", "customer")).to_have_attribute("data-seq", "1")
    await expect(widget.message(2)).to_contain_text("You said: written before my token came")
    await expect(page.get_by_test_id("widget-pending")).to_have_count(0)
    kept = await widget.storage()
    assert kept["unsent"] == []
    stored = await messages_of(service, kept["conversation_id"])  # type: ignore[arg-type]
    assert [m["content"] for m in stored].count("written before my token came") == 1
    assert page_errors == []


async def test_a_message_kept_while_the_service_is_down_goes_out_once_with_two_tabs_open(
        make_service: Callable[..., Service], page: Page, page_errors: list[str]) -> None:
    service = make_service()
    customer = unique("cust")
    token = service.token(customer)
    async with aiohttp.ClientSession() as http, http.get(service.url + "/widget.js") as response:
        script = await response.read()
    # both tabs load the widget as a browser cache would keep it while the service is down
    await page.context.route(service.url + "/widget.js", lambda route: route.fulfill(
        status=200, body=script, headers={"Content-Type": "text/javascript; charset=utf-8"}))
    await open_host(page, service.url, token=token)
    first = Widget(page)
    await first.open()
    await asyncio.to_thread(service.stop)
    await expect(first.status).to_have_attribute("data-state", "offline")
    await first.write("only once please")
    await expect(page.get_by_test_id("widget-pending")).to_have_count(1)
    assert "only once please" in json.dumps(await first.storage())

    other = await page.context.new_page()  # a second tab of the same site: the same localStorage
    other.on("pageerror", lambda exc: page_errors.append(f"pageerror: {exc}"))
    await open_host(other, service.url, token=token)
    second = Widget(other)
    await expect(other.get_by_test_id("widget-pending")).to_have_count(1)  # it holds the message too
    await asyncio.to_thread(service.start)

    for tab, widget in ((page, first), (other, second)):
        await widget.online()
        await expect(widget.by_text("only once please", "customer")).to_have_attribute("data-seq", "1")
        await expect(widget.message(2)).to_contain_text("You said: only once please")
        await expect(tab.get_by_test_id("widget-pending")).to_have_count(0)
    listed = await rest(service, "GET", f"/api/v1/conversations?user_id={customer}")
    assert len(listed["items"]) == 1, listed  # one conversation, not one per tab
    stored = await messages_of(service, listed["items"][0]["id"])
    assert [m["content"] for m in stored].count("only once please") == 1
    assert (await first.storage())["unsent"] == []
    assert page_errors == []
