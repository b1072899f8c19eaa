"""The customer widget's finer points in a real browser: a first message written while the service is
down survives a reload and is sent once, "Talk to a person" where it can no longer help, a connection
lost without a word noticed, the newest messages kept in view, and the page's focus left alone."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import aiohttp
from playwright.async_api import Page, expect

from tests.browser.conftest import Service, messages_of, unique
from tests.browser.widget_page import Widget, open_host
from tests.browser.wire import Wire
from tests.wsclient import WS


async def test_a_first_message_written_while_the_service_is_down_survives_a_reload(
        make_service: Callable[..., Service], page: Page, page_errors: list[str]) -> None:
    service = make_service()
    async with aiohttp.ClientSession() as http, http.get(service.url + "/widget.js") as response:
        script = await response.read()
    # the script as a browser cache would keep it: the page still loads the widget while the service is down
    await page.route(service.url + "/widget.js", lambda route: route.fulfill(
        status=200, body=script, headers={"Content-Type": "text/javascript; charset=utf-8"}))
    await open_host(page, service.url, token=service.token(unique("cust")))
    widget = Widget(page)
    await widget.open()  # a new visitor: no conversation yet
    await asyncio.to_thread(service.stop)
    await expect(widget.status).to_have_attribute("data-state", "offline")
    await widget.write("my very first message")
    await expect(page.get_by_test_id("widget-pending")).to_have_count(1)
    assert "my very first message" in json.dumps(await widget.storage())  # kept for a reload

    await page.reload()
    await expect(page.get_by_test_id("widget-pending")).to_have_count(1)  # still shown while the service is down
    await asyncio.to_thread(service.start)

    await widget.online()
    await expect(widget.by_text("my very first message", "customer")).to_have_attribute("data-seq", "1")
    await expect(widget.message(2)).to_contain_text("You said: my very first message")
    await expect(page.get_by_test_id("widget-pending")).to_have_count(0)
    kept = await widget.storage()
    assert "my very first message" not in json.dumps(kept)  # sent: nothing left to send again
    stored = await messages_of(service, kept["conversation_id"])  # type: ignore[arg-type]
    assert [m["content"] for m in stored].count("my very first message") == 1
    assert page_errors == []


async def test_talk_to_a_person_is_gone_once_closed_and_a_refusal_is_said(service: Service, page: Page,
                                                                          page_errors: list[str]) -> None:
    wire = Wire()
    await wire.install(page)
    await open_host(page, service.url, token=service.token(unique("cust")))
    widget = Widget(page)
    await widget.open()
    human = page.get_by_test_id("widget-human")
    notice = page.get_by_test_id("widget-notice")
    await widget.write("hello")
    await expect(widget.message(2)).to_be_visible()
    conversation_id = (await widget.storage())["conversation_id"]
    await expect(human).to_be_visible()

    async with aiohttp.ClientSession() as http, http.ws_connect(service.url + "/ws") as raw:
        agent = WS(raw)
        await agent.ok("auth", token=service.token(unique("agent"), "agent"))
        await agent.ok("conversation.close", conversation_id=conversation_id)
        await expect(page.get_by_test_id("widget-closed")).to_be_visible()
        await expect(human).to_be_hidden()  # a closed conversation cannot be handed to a person

        await widget.write("one more question")  # writing reopens it (state ai): a person may be asked again
        await expect(widget.by_text("one more question", "customer")).to_be_visible()
        await expect(human).to_be_visible()

        # the close reaches the service, but its event is lost on the way: the screen still offers the button
        wire.drop = lambda frame: (frame.get("type") == "conversation.updated"
                                   and frame["data"]["conversation"]["state"] == "closed")
        await agent.ok("conversation.close", conversation_id=conversation_id)
        await human.click()  # the service refuses it (conflict)

    await expect(notice).to_be_visible()
    await expect(notice).to_have_text("A person cannot take this conversation now. Write again to continue.")
    await expect(page.get_by_test_id("widget-closed")).to_be_visible()  # caught up with the service
    await expect(human).to_be_hidden()
    await expect(widget.handoff).to_be_hidden()
    assert page_errors == []


async def test_a_message_over_4000_characters_is_refused_whole_and_kept(service: Service, page: Page,
                                                                        page_errors: list[str]) -> None:
    """maxlength cut a paste at 4000 UTF-16 units and sent the rest silently (and counted an emoji twice): the
    widget counts code points as the service does, refuses a longer message whole and keeps it to shorten."""
    await open_host(page, service.url, token=service.token(unique("cust")))
    widget = Widget(page)
    await widget.open()
    too_long = "x" * 4500
    await widget.write(too_long)
    await expect(page.get_by_test_id("widget-notice")).to_contain_text("4000")
    await expect(widget.input).to_have_value(too_long)
    assert await page.get_by_test_id("widget-message").count() == 0  # nothing was sent
    emoji = "😀" * 2500  # 2500 characters: 5000 UTF-16 units
    await widget.write(emoji)
    # the shortened message went out: the notice about the long one goes at once (not after its own 10 s)
    assert await page.get_by_test_id("widget-notice").is_hidden()
    await expect(widget.by_text(emoji[:10], "customer")).to_have_attribute("data-seq", "1")
    stored = await messages_of(service, (await widget.storage())["conversation_id"])  # type: ignore[arg-type]
    assert [m["content"] for m in stored if m["sender_type"] == "customer"] == [emoji]
    assert page_errors == []


# The widget's log (inside its shadow root) scrolled to its end, with more in it than fits.
LOG_AT_END = """() => {
  const log = document.querySelector('[data-chat-api-widget]').shadowRoot.querySelector('.log');
  return log.scrollHeight > log.clientHeight + 100 && log.scrollHeight - log.scrollTop - log.clientHeight < 2;
}"""


async def test_a_connection_lost_without_a_close_event_is_noticed_and_caught_up(
        service: Service, page: Page, page_errors: list[str]) -> None:
    """With the network gone, closing the socket brings no close event: the client must drop it itself
    once a ping goes unanswered (ping 25 s + 10 s), say so, and reconnect when the network is back."""
    await page.clock.install()  # the page's timers, driven by the test: no 35 s of waiting
    customer_id = unique("cust")
    await open_host(page, service.url, token=service.token(customer_id))
    widget = Widget(page)
    await widget.open()
    await widget.write("hello")
    await expect(widget.message(2)).to_be_visible()
    conversation_id = str((await widget.storage())["conversation_id"])

    await page.context.set_offline(True)
    await page.clock.run_for(36_000)  # the ping goes out, its pong never comes
    await expect(widget.status).not_to_have_attribute("data-state", "online")
    await widget.write("written while offline")
    await expect(page.get_by_test_id("widget-pending")).to_have_count(1)

    await page.context.set_offline(False)  # the `online` event: reconnect now, not after the backoff
    await widget.online()
    await expect(widget.by_text("written while offline", "customer")).to_have_attribute("data-seq", "3")
    await expect(page.get_by_test_id("widget-pending")).to_have_count(0)
    stored = await messages_of(service, conversation_id)
    assert [m["content"] for m in stored if m["sender_type"] == "customer"] == ["hello", "written while offline"]
    assert page_errors == []


async def test_the_newest_messages_stay_in_view_when_the_conversation_closes(
        service: Service, new_page: Callable[..., Any]) -> None:
    """The closed banner and the satisfaction prompt take room from the log: on a phone its last
    messages (the last reply, the closing notice) were hidden behind them."""
    page = await new_page(viewport={"width": 375, "height": 667}, is_mobile=True, has_touch=True)
    await open_host(page, service.url, token=service.token(unique("cust")))
    widget = Widget(page)
    await widget.open()
    question = "how long does delivery to Hangzhou take, and can I pay on arrival? " * 2
    for n in range(1, 6):
        await widget.write(f"question {n}: {question}")
        await expect(widget.message(2 * n)).to_be_visible()
    await page.wait_for_function(LOG_AT_END)
    conversation_id = (await widget.storage())["conversation_id"]

    async with aiohttp.ClientSession() as http, http.ws_connect(service.url + "/ws") as raw:
        agent = WS(raw)
        await agent.ok("auth", token=service.token(unique("agent"), "agent"))
        await agent.ok("conversation.close", conversation_id=conversation_id)
    await expect(page.get_by_test_id("widget-closed")).to_be_visible()
    await expect(widget.csat).to_be_visible()  # the close asks for a rating (CSAT_ENABLED, the default)
    await expect(widget.by_text("", "system")).not_to_have_count(0)  # the closing notice
    await page.wait_for_function(LOG_AT_END, timeout=3000)


async def test_a_panel_left_open_takes_no_focus_on_load_and_escape_closes_it(service: Service, page: Page,
                                                                              page_errors: list[str]) -> None:
    await open_host(page, service.url, token=service.token(unique("cust")))
    widget = Widget(page)
    await widget.open()
    await page.reload()
    await expect(widget.input).to_be_visible()  # restored open
    await widget.online()
    # the host page keeps its focus: the widget's input takes it only when the visitor opens the panel
    assert await page.evaluate("document.activeElement === document.body")

    await widget.input.click()
    await page.keyboard.press("Escape")
    await expect(widget.input).to_be_hidden()
    await expect(widget.launcher).to_be_focused()
    assert (await widget.storage())["open"] is False
    await page.keyboard.press("Enter")  # the launcher opens it again, with the cursor in the input
    await expect(widget.input).to_be_focused()
    assert page_errors == []
