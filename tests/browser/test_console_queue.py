"""The agent console's queue in a real browser: queue.list's order kept, and each conversation's
transition log asked for once per version, a few at a time, also when it holds no entry into handoff
(an adopted or imported conversation)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from contextlib import AsyncExitStack
from typing import Any

from playwright.async_api import Page, Route, expect

from tests.browser.conftest import UI_TIMEOUT_MS, Service
from tests.browser.console_page import Console, staff
from tests.browser.test_console import customer

EVENTS = re.compile(r".*/api/v1/conversations/([^/?]+)/events$")


async def until(changed: asyncio.Condition, check: Callable[[], bool], what: str) -> None:
    """Wait until `check()` holds, woken by `changed` (the route handlers notify it as requests come)."""
    async with asyncio.timeout(UI_TIMEOUT_MS / 1000), changed:
        await changed.wait_for(check)
    assert check(), what


async def test_a_conversation_whose_log_lacks_its_handoff_keeps_its_place_and_is_asked_for_once(
        make_service: Callable[..., Service], page: Page, page_errors: list[str]) -> None:
    service = make_service(ROUTING="manual")  # the queue stays as it is
    async with AsyncExitStack() as stack:
        waiting: list[dict[str, Any]] = []
        for n in range(6):
            waiting.append((await stack.enter_async_context(customer(service, text=f"waiting {n}")))[1])
        ids = [c["id"] for c in waiting]
        unlogged = set(ids[:3])  # the three that waited longest: their logs do not say when (imported rows)
        asked: dict[str, int] = {}
        flight = {"now": 0, "most": 0}
        four_at_once = asyncio.Event()
        changed = asyncio.Condition()

        async def events(route: Route) -> None:
            """Each log request counted; the first ones held until four are asked for at once."""
            match = EVENTS.match(route.request.url)
            assert match
            asked[match.group(1)] = asked.get(match.group(1), 0) + 1
            async with changed:
                changed.notify_all()
            flight["now"] += 1
            flight["most"] = max(flight["most"], flight["now"])
            if flight["now"] >= 4:
                four_at_once.set()
            try:
                await four_at_once.wait()
                if match.group(1) in unlogged:
                    await route.fulfill(json={"items": []})
                else:
                    await route.continue_()
            finally:
                flight["now"] -= 1

        await page.route(EVENTS, events)
        user_id, password = await staff(service, "agent")
        console = Console(page, service.url)
        await console.login(user_id, password)  # away: the queue is re-read every few seconds
        items = page.get_by_test_id("queue-item")
        await expect(items).to_have_count(6)
        for conversation_id in ids[3:]:
            await expect(console.queue_item(conversation_id).locator("time.wait")).to_be_visible()
        await until(changed, lambda: all(asked.get(i) for i in ids), "every log asked for")
        # queue.list's order (longest waiting first), not the known times first
        assert await items.evaluate_all("nodes => nodes.map(n => n.dataset.conversationId)") == ids
        for conversation_id in unlogged:
            await expect(console.queue_item(conversation_id).locator("time.wait")).to_have_count(0)

        # a newcomer is seen by the next queue.list (an away agent gets no queue events): by the time its
        # log is asked for, that list was rendered, and the logs already read are not asked for again
        newcomer = (await stack.enter_async_context(customer(service, text="the newest")))[1]
        await expect(items).to_have_count(7)
        await until(changed, lambda: asked.get(newcomer["id"], 0) >= 1, "the newcomer's log asked for")
        assert [asked[i] for i in ids] == [1] * 6, asked
        assert await items.evaluate_all("nodes => nodes.map(n => n.dataset.conversationId)") == [*ids, newcomer["id"]]
        assert flight["most"] <= 4, flight
    assert page_errors == []
