"""The whole story in one browser: the customer's widget in one page, the agents' consoles in others,
against a real `chat-api serve` that is restarted in the middle of the conversation."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from playwright.async_api import Page, expect

from tests.browser.conftest import Service, unique
from tests.browser.console_page import Console, staff
from tests.browser.widget_page import RECORD_STREAM, Widget, open_host


async def shown_once(console: Console, widget: Widget) -> list[int]:
    """Every message each page shows has a distinct seq; the widget shows the console's minus the notes."""
    console_seqs = await console.seqs()
    assert console_seqs == list(range(1, len(console_seqs) + 1)), console_seqs  # no gap, no double
    private = [int(s) for s in await console.page.locator("[data-testid=message][data-private=true]").evaluate_all(
        "nodes => nodes.map(n => n.getAttribute('data-seq'))")]
    assert await widget.seqs() == [s for s in console_seqs if s not in private]
    return console_seqs


async def customer_asks_for_a_human(shop: Page, service: Service) -> tuple[Widget, str]:
    """The customer writes, sees the AI's reply stream in, and asks for a human; the conversation id."""
    await open_host(shop, service.url, token=service.token(unique("cust")))
    widget = Widget(shop)
    await widget.open()
    await shop.evaluate(RECORD_STREAM)
    await widget.write("Hello, my parcel is late")
    await expect(widget.message(2)).to_have_attribute("data-sender-type", "ai")
    assert await shop.evaluate("window.__streamed"), "the reply was never shown while it streamed"
    await shop.get_by_test_id("widget-human").click()
    await expect(widget.handoff).to_be_visible()
    return widget, str((await widget.storage())["conversation_id"])


async def agent_takes_it_replies_and_notes(ann: Console, widget: Widget, conversation_id: str) -> None:
    """From the queue: take over, reply, add a private note; the customer writes back."""
    await expect(ann.queue_item(conversation_id)).to_contain_text("Hello, my parcel is late")
    await ann.queue_item(conversation_id).click()
    await ann.claim_button.click()
    await expect(ann.item(conversation_id)).to_have_attribute("data-state", "human")
    await expect(widget.page.get_by_test_id("widget-agent")).to_be_visible()
    await ann.go("online")
    await ann.write("Hi, I am Ann. Let me check.")
    await expect(widget.by_text("Let me check.", "agent")).to_have_count(1)
    await ann.note_toggle.click()
    await ann.write("VIP customer, second late parcel")
    await expect(ann.by_text("VIP customer", "agent")).to_have_attribute("data-private", "true")
    await ann.note_toggle.click()
    await widget.write("Thank you!")
    await expect(ann.by_text("Thank you!", "customer")).to_have_count(1)


async def service_restarts(service: Service, ann: Console, widget: Widget) -> None:
    """Down in the middle of the conversation, both sides writing meanwhile; both pages come back by themselves."""
    await asyncio.to_thread(service.stop)
    await expect(ann.banner).to_be_visible()
    await expect(widget.status).to_have_attribute("data-state", "offline")
    await widget.write("are you still there?")  # kept in the widget's outbox
    await ann.write("one moment please")  # kept in the console's outbox
    await asyncio.to_thread(service.start)
    await expect(ann.banner).to_be_hidden()
    await widget.online()
    await expect(widget.by_text("one moment please", "agent")).to_have_count(1)
    await expect(ann.by_text("are you still there?", "customer")).to_have_count(1)
    await expect(ann.presence).to_have_attribute("data-status", "online")  # re-asserted after the restart


async def test_the_whole_story(make_service: Callable[..., Service], new_page: Callable[..., Any],
                               page_errors: list[str]) -> None:
    service = make_service()
    first_id, first_password = await staff(service, prefix="ann")
    second_id, second_password = await staff(service, prefix="bob")
    shop: Page = await new_page()
    widget, conversation_id = await customer_asks_for_a_human(shop, service)

    ann = Console(await new_page(), service.url)
    await ann.login(first_id, first_password)
    await agent_takes_it_replies_and_notes(ann, widget, conversation_id)
    await shown_once(ann, widget)

    await service_restarts(service, ann, widget)
    before_transfer = await shown_once(ann, widget)

    # the first agent transfers it to the second, who is online
    bob = Console(await new_page(), service.url)
    await bob.login(second_id, second_password)
    await bob.go("online")
    await ann.transfer_button.click()
    await ann.page.locator(f"[data-testid=transfer-target][data-agent-id='{second_id}']").click()
    await ann.confirm()
    await expect(widget.by_text("transferred", "system")).to_have_count(1)
    await expect(bob.item(conversation_id)).to_have_attribute("data-state", "human")

    # the second agent sees the whole history, notes included, and closes the conversation
    await bob.item(conversation_id).click()
    await expect(bob.by_text("VIP customer", "agent")).to_have_attribute("data-private", "true")
    await bob.write("Your parcel arrives tomorrow. Goodbye!")
    await expect(widget.by_text("arrives tomorrow", "agent")).to_have_count(1)
    await bob.close_button.click()
    await bob.confirm()
    await expect(bob.item(conversation_id)).to_have_attribute("data-state", "closed")
    await expect(shop.get_by_test_id("widget-closed")).to_be_visible()
    await expect(ann.item(conversation_id)).to_have_count(0)  # no longer the first agent's

    # the customer saw every step, never the note, and nothing twice
    await expect(widget.by_text("closed", "system")).to_have_count(1)
    final = await shown_once(bob, widget)
    assert len(final) > len(before_transfer)
    assert "VIP" not in await shop.evaluate(
        "() => document.querySelector('[data-chat-api-widget]').shadowRoot.textContent")
    assert page_errors == []
