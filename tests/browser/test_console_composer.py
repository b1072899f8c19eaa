"""The agent console's composer in a real browser: a message over 4000 characters (code points, not
UTF-16 units) is refused on the page with the translated error and never cut, and every message the
service refused while another conversation was open comes back, in order."""

from __future__ import annotations

import json
import re
from typing import Any

import aiohttp
from playwright.async_api import Page, WebSocketRoute, expect

from tests.browser.conftest import Service, unique
from tests.browser.test_console import customer
from tests.browser.test_console_details import claimed_by_new_agent
from tests.wsclient import WS


async def test_a_long_paste_is_refused_whole_and_emoji_count_as_one_character(
        service: Service, page: Page, page_errors: list[str]) -> None:
    async with customer(service) as (ws, conversation):
        console = await claimed_by_new_agent(page, service, conversation["id"])
        too_long = "a" * 4500
        await console.input.fill(too_long)  # as a paste: nothing cut on the way in
        await console.input.press("Enter")
        await expect(page.get_by_test_id("toast")).to_have_text(
            ["Too long: a message may have at most 4000 characters."])
        await expect(console.input).to_have_value(too_long)  # kept, to shorten
        await expect(page.get_by_test_id("message-pending")).to_have_count(0)

        emoji = "\U0001F600" * 2500  # 2500 characters (5000 UTF-16 units): within the limit
        await console.input.fill(emoji)
        await console.input.press("Enter")
        sent = await ws.event("message.created", lambda f: f["data"]["message"]["sender_type"] == "agent")
        assert sent["data"]["message"]["content"] == emoji  # whole, not cut to 2000
        await expect(console.input).to_have_value("")
    assert page_errors == []


async def test_every_reply_refused_while_another_conversation_is_open_comes_back_in_order(
        service: Service, page: Page) -> None:
    held: list[tuple[WebSocketRoute, Any, str]] = []
    hold = {"on": False}

    def route(ws: WebSocketRoute) -> None:
        """The page's socket, its message.send frames held while `hold` is on."""
        server = ws.connect_to_server()

        def to_server(message: str | bytes) -> None:
            if hold["on"] and json.loads(message).get("type") == "message.send":
                held.append((ws, server, str(message)))
            else:
                server.send(message)

        ws.on_message(to_server)
        server.on_message(ws.send)

    await page.route_web_socket(re.compile(r".*/ws$"), route)
    async with customer(service, text="first customer") as (_, first), \
            customer(service, text="second customer") as (_, second):
        console = await claimed_by_new_agent(page, service, first["id"])
        hold["on"] = True
        await console.write("the first reply")
        await console.write("the second reply")
        await expect(page.get_by_test_id("message-pending")).to_have_count(2)
        await console.queue_item(second["id"]).click()  # another conversation open meanwhile
        await expect(console.claim_button).to_be_visible()

        await page.get_by_role("tab", name="All").click()  # it leaves "Mine" once it is not the agent's
        # an admin hands the first conversation back to the AI: the held replies are no longer the agent's to send
        async with aiohttp.ClientSession() as http, http.ws_connect(service.url + "/ws") as raw:
            admin = WS(raw)
            await admin.ok("auth", token=service.token(unique("admin"), "admin"))
            await admin.ok("conversation.release", conversation_id=first["id"])
        await expect(console.item(first["id"])).to_have_attribute("data-state", "ai")
        hold["on"] = False
        for _, server, message in held:
            server.send(message)
        await expect(page.get_by_test_id("toast")).to_have_count(2)  # both refused (forbidden)

        await console.item(first["id"]).click()
        await expect(console.input).to_have_value("the first reply\nthe second reply")
