"""Canned responses in the console's composer: "/" and a short-code prefix offer the matches (`canned.list`),
filled for the open conversation; the keyboard or a click puts one in the composer, and only then is it sent.

Each test has a private service, so the canned responses listed are exactly the ones it created."""

from __future__ import annotations

from collections.abc import Callable

from playwright.async_api import Page, expect

from tests.browser.conftest import Service
from tests.browser.console_page import rest
from tests.browser.test_console import XSS, claimed, customer, signed_in

GREETING = "Hello {{customer.name}}, this is {{agent.name}}. How can I help?"


async def canned(service: Service, short_code: str, content: str) -> None:
    """An admin creates a canned response over REST."""
    await rest(service, "POST", "/api/v1/canned_responses", body={"short_code": short_code, "content": content},
               expect_status=201)


async def test_slash_offers_canned_responses_filled_for_the_customer(make_service: Callable[..., Service],
                                                                     page: Page, page_errors: list[str]) -> None:
    service = make_service()
    await canned(service, "greet", GREETING)
    await canned(service, "bye", "Goodbye {{customer.name}}!")
    async with customer(service, metadata={"name": "Li Lei"}) as (ws, conversation):
        cid = conversation["id"]
        console, _ = await signed_in(page, service, name="Ann")
        await claimed(console, cid)

        await console.input.press_sequentially("/gre")

        item = page.get_by_test_id("canned-item")
        await expect(item).to_have_count(1)  # "bye" does not start with "gre"
        await expect(item).to_have_attribute("data-short-code", "greet")
        await expect(item).to_contain_text("Hello Li Lei, this is Ann.")
        await console.input.press("Enter")  # inserts, does not send
        filled = "Hello Li Lei, this is Ann. How can I help?"
        await expect(console.input).to_have_value(filled)
        await expect(item).to_have_count(0)

        await console.input.press("Enter")  # now it sends
        sent = (await ws.event("message.created", lambda f: f["data"]["message"]["sender_type"] == "agent"))["data"]
        assert sent["message"]["content"] == filled
        await expect(console.by_text(filled, "agent")).to_have_attribute("data-seq", str(sent["message"]["seq"]))
        stored = await rest(service, "GET", f"/api/v1/conversations/{cid}/messages")
        assert [m["content"] for m in stored["items"] if m["sender_type"] == "agent"] == [filled]  # no "/gre"
    assert page_errors == []


async def test_the_list_is_keyboard_navigable_clickable_and_text_only(make_service: Callable[..., Service],
                                                                      page: Page, page_errors: list[str]) -> None:
    service = make_service()
    await canned(service, "thanks", "Thank you!")
    await canned(service, "thanks-html", XSS)
    async with customer(service) as (_, conversation):
        console, _ = await signed_in(page, service)
        await claimed(console, conversation["id"])
        items = page.get_by_test_id("canned-item")

        async def chosen(short_code: str) -> None:
            item = page.locator(f"[data-testid=canned-item][data-short-code='{short_code}']")
            await expect(item).to_have_attribute("aria-selected", "true")

        await console.input.press_sequentially("/THA")  # the prefix is case-insensitive
        await expect(items).to_have_count(2)
        await chosen("thanks")
        await console.input.press("ArrowDown")
        await chosen("thanks-html")
        await console.input.press("ArrowDown")  # wraps around
        await chosen("thanks")
        await console.input.press("ArrowUp")
        await chosen("thanks-html")
        await expect(items.nth(1)).to_contain_text(XSS)  # shown as text
        assert await page.locator(".canned img").count() == 0
        await console.input.press("Tab")
        await expect(console.input).to_have_value(XSS)
        await expect(console.input).to_be_focused()

        await console.input.fill("/thanks")
        await expect(items).to_have_count(2)
        await console.input.press("Escape")
        await expect(items).to_have_count(0)
        await expect(console.input).to_have_value("/thanks")  # closing changes nothing

        await console.input.fill("/thanks-")
        await expect(items).to_have_count(1)
        await items.click()
        await expect(console.input).to_have_value(XSS)

    assert page_errors == []
