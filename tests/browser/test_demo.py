"""/demo/: the sample shop page embeds the widget with no token, so the widget asks the service for an
anonymous visitor token (POST /api/v1/visitors) when it is first opened, keeps it, and the visitor's
conversation survives a reload; the page runs under its CSP with nothing refused."""

from __future__ import annotations

import re

from playwright.async_api import Page, Request, expect

from tests.browser.conftest import Service
from tests.browser.widget_page import Widget


async def test_a_visitor_chats_on_the_demo_page_and_keeps_the_conversation(service: Service, page: Page,
                                                                           page_errors: list[str]) -> None:
    visitor_calls: list[Request] = []
    page.on("request", lambda r: visitor_calls.append(r) if r.url.endswith("/api/v1/visitors") else None)
    banner = re.search(r"^  demo: +(\S+)", service.process.log_path.read_text(), re.MULTILINE)
    assert banner is not None and banner.group(1) == service.url + "/demo/"  # `./dev serve` says where it is
    response = await page.goto(banner.group(1))
    assert response is not None and "unsafe-inline" not in response.headers["content-security-policy"]
    widget = Widget(page)
    await expect(widget.launcher).to_be_visible()
    assert visitor_calls == []  # a page view mints no visitor token; opening the chat does

    await widget.open()
    await widget.write("hello from the demo")

    await expect(widget.message(2)).to_contain_text("hello from the demo")
    assert len(visitor_calls) == 1
    kept = await widget.storage()
    assert str(kept["user_id"]).startswith("v-") and kept["visitor"]["token"]  # type: ignore[index]
    assert kept["visitor"]["token"] not in page.url  # type: ignore[index]

    await page.reload()
    await widget.online()
    await expect(widget.message(2)).to_be_visible()
    assert await widget.seqs() == [1, 2]
    assert len(visitor_calls) == 1  # the same visitor: its token was kept
    assert (await widget.storage())["conversation_id"] == kept["conversation_id"]
    assert page_errors == []  # no CSP refusal, no script error
