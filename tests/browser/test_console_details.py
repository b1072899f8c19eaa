"""The agent console's finer points in a real browser: presence that belongs to the person signed in,
a refused reply that goes back to the composer, the queue in the order conversations entered it,
Chinese everywhere in a Chinese browser, and accessible names that say what a control is."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import datetime
from typing import Any

import aiohttp
from playwright.async_api import Page, Route, expect

from tests.browser.conftest import Service
from tests.browser.console_page import Console, rest, staff
from tests.browser.test_console import claimed, customer, signed_in
from tests.wsclient import WS


async def status_of(service: Service, user_id: str) -> str | None:
    """The presence the service lists for a staff account (None when it is not listed)."""
    agents = await rest(service, "GET", "/api/v1/agents")
    return next((a["status"] for a in agents["items"] if a["agent_id"] == user_id), None)


async def claim(service: Service, token: str, conversation_id: str) -> None:
    """Take a conversation over on an agent's own socket."""
    async with aiohttp.ClientSession() as http, http.ws_connect(service.url + "/ws") as raw:
        agent = WS(raw)
        await agent.ok("auth", token=token)
        await agent.ok("conversation.claim", conversation_id=conversation_id)


async def test_presence_chosen_by_one_person_is_not_the_next_ones_in_the_same_tab(service: Service,
                                                                                  page: Page) -> None:
    agent, agent_password = await staff(service, "agent")
    admin, admin_password = await staff(service, "admin")
    console = Console(page, service.url)
    await console.login(agent, agent_password)
    await console.go("online")
    await page.get_by_test_id("logout-button").click()
    await expect(console.submit).to_be_visible()

    await console.user.fill(admin)
    await console.password.fill(admin_password)
    await console.submit.click()

    await expect(console.banner).to_be_hidden()  # connected: a kept status would have been sent by now
    await expect(console.presence).to_have_attribute("data-status", "away")
    assert await status_of(service, admin) != "online"
    assert await page.evaluate("() => sessionStorage.length") == 0  # signing out forgot the agent's choice


async def claimed_by_new_agent(page: Page, service: Service, conversation_id: str) -> Console:
    """A console signed in as a new agent, holding the conversation (opened from the queue, taken over)."""
    user_id, password = await staff(service, "agent")
    console = Console(page, service.url)
    await console.login(user_id, password)
    await console.queue_item(conversation_id).click()
    await console.claim_button.click()
    await expect(console.item(conversation_id)).to_have_attribute("data-state", "human")
    return console


async def test_a_refused_reply_goes_back_to_the_composer_with_one_translated_error(
        service: Service, new_page: Callable[..., Any], page_errors: list[str]) -> None:
    page = await new_page(locale="zh-CN")
    async with customer(service) as (ws, conversation):
        console = await claimed_by_new_agent(page, service, conversation["id"])
        # PROTOCOL 3.4: 1-4000 characters, checked on sending (no maxlength: it would cut a paste silently)
        assert await console.input.get_attribute("maxlength") is None
        too_long = "长" * 4000 + "!"
        await console.input.evaluate("(node, text) => { node.value = text; }", too_long)
        await console.input.press("Enter")

        toast = page.get_by_test_id("toast")
        await expect(toast).to_have_text(["内容过长：一条消息最多 4000 个字符。"])  # once, in Chinese
        await expect(console.input).to_have_value(too_long)  # nothing lost: the text is back, to shorten
        await expect(page.get_by_test_id("message-pending")).to_have_count(0)

        await console.input.evaluate("node => { node.value = node.value.slice(0, 20); }")
        await console.input.press("Enter")
        sent = await ws.event("message.created", lambda f: f["data"]["message"]["sender_type"] == "agent")
        assert sent["data"]["message"]["content"] == "长" * 20
        await expect(console.input).to_have_value("")
        await expect(console.by_text("长" * 20, "agent")).to_have_count(1)
    assert page_errors == []


async def test_the_composer_and_the_note_toggle_say_what_they_are(service: Service, page: Page) -> None:
    async with customer(service) as (_, conversation):
        console = await claimed_by_new_agent(page, service, conversation["id"])
        await expect(console.input).to_have_accessible_name(
            "Reply to the customer (Enter sends, Shift+Enter: new line, / canned responses)")
        await expect(console.send_button).to_have_accessible_name("Send")
        await expect(console.note_toggle).to_have_attribute("aria-pressed", "false")
        await expect(console.note_toggle).to_have_attribute("title", "Private note mode: off")

        await console.note_toggle.click()
        await expect(console.note_toggle).to_have_attribute("aria-pressed", "true")
        await expect(console.note_toggle).to_have_attribute("title", "Private note mode: on")
        await expect(console.input).to_have_accessible_name("Private note, only agents see it (Enter adds it)")

        await console.note_toggle.click()
        await expect(console.note_toggle).to_have_attribute("title", "Private note mode: off")


PROTOCOL_ERROR_CODES = ("unauthenticated", "forbidden", "not_found", "invalid", "conflict", "rate_limited",
                        "too_large", "unavailable", "internal")  # PROTOCOL 3.3
CLIENT_ERROR_CODES = ("offline", "timeout")  # the shared client's own (docs/web.md)


async def test_every_error_code_has_words_in_both_languages(service: Service, page: Page) -> None:
    await page.goto(service.url + "/console/")
    tables = await page.evaluate("async () => (await import('/console/strings.js')).STRINGS")
    for code in PROTOCOL_ERROR_CODES + CLIENT_ERROR_CODES:
        for language in ("en", "zh"):
            assert f"error.{code}" in tables[language], (language, code)
        assert tables["zh"][f"error.{code}"] != tables["en"][f"error.{code}"]


async def test_statistics_speak_chinese_units(service: Service, new_page: Callable[..., Any]) -> None:
    page = await new_page(locale="zh-CN")
    async with customer(service) as (_, conversation):
        agent = service.token("stats-agent", "agent")
        await rest(service, "GET", "/api/v1/agents", token=agent)  # known as staff, so it may claim
        await claim(service, agent, conversation["id"])  # a queue wait to show, in seconds
        user_id, password = await staff(service, "admin")
        console = Console(page, service.url)
        await console.login(user_id, password)
        await page.get_by_test_id("nav-stats").click()
        wait = page.get_by_test_id("stats-panel").locator("[data-stat=queue_wait_avg_s] .figure-value")
        await expect(wait).to_have_text(re.compile(r"^\d+(\.\d)? (秒|分钟|小时)$"))


async def test_the_queue_is_longest_waiting_first_by_the_time_each_entered_it(
        make_service: Callable[..., Service], page: Page, page_errors: list[str]) -> None:
    service = make_service(ROUTING="manual")  # the queue stays as it is
    async with customer(service, text="first to wait") as (first_ws, first), \
            customer(service, text="second to wait") as (_, second):
        # the first one writes again: its last message (and its updated_at) is now the newest
        await first_ws.ok("message.send", conversation_id=first["id"], client_msg_id="c2", content="still here")
        log = await rest(service, "GET", f"/api/v1/conversations/{first['id']}/events")
        entered = next(e["created_at"] for e in log["items"] if e["to_state"] == "handoff")
        items = page.get_by_test_id("queue-item")

        async def lists_after_the_queue(route: Route) -> None:
            """The lists' REST copies (updated_at: the last message's time) land after queue.list's."""
            response = await route.fetch()
            await expect(items).to_have_count(2)
            await route.fulfill(response=response)

        await page.route(re.compile(r".*/api/v1/conversations\?.*"), lists_after_the_queue)
        user_id, password = await staff(service, "agent")
        console = Console(page, service.url)
        await console.login(user_id, password)
        await page.get_by_role("tab", name="All").click()
        await expect(console.item(first["id"])).to_be_visible()  # the lists are in
        await expect(items).to_have_count(2)
        await expect(console.queue_item(first["id"]).locator("time.wait")).to_be_visible()
        await expect(console.queue_item(second["id"]).locator("time.wait")).to_be_visible()
        order = await items.evaluate_all("nodes => nodes.map(n => n.dataset.conversationId)")
        assert order == [first["id"], second["id"]]
        since = await console.queue_item(first["id"]).locator("time.wait").get_attribute("datetime")
        assert since is not None and abs(parse(since) - parse(entered)) < 0.002  # not its last message's time
        await expect(console.queue_item(first["id"])).to_contain_text(re.compile(r"waiting \d+ s"))
    assert page_errors == []


def parse(iso: str) -> float:
    """An ISO 8601 timestamp in seconds."""
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


async def test_a_closed_conversation_does_not_ask_to_be_taken_over(service: Service, page: Page,
                                                                   new_page: Callable[..., Any]) -> None:
    async with customer(service) as (_, conversation):
        console = await claimed_by_new_agent(page, service, conversation["id"])
        # a colleague looking at it: no Take over button there either, so the words do not offer it
        colleague = Console(await new_page(), service.url)
        await colleague.login(*await staff(service))
        await colleague.page.get_by_role("tab", name="All").click()
        await colleague.item(conversation["id"]).click()
        await expect(colleague.state_badge).to_have_attribute("data-state", "human")
        await expect(colleague.claim_button).to_be_hidden()
        await expect(colleague.input).to_have_attribute(
            "placeholder", "Another agent has this conversation; notes are always possible")

        await console.close_button.click()
        await console.confirm()
        await expect(console.state_badge).to_have_attribute("data-state", "closed")
        await expect(console.claim_button).to_be_hidden()  # nothing to take over: the words must not say so
        await expect(console.input).to_have_attribute("placeholder",
                                                      "This conversation is closed; notes are always possible")
        await console.note_toggle.click()
        await expect(console.input).to_have_attribute("placeholder", "Private note, only agents see it (Enter adds it)")
        await console.write("closed, noted")
        await expect(console.by_text("closed, noted")).to_have_attribute("data-private", "true")


async def test_a_lost_connection_shows_the_banner_and_comes_back(service: Service, page: Page) -> None:
    """The network gone: closing the socket brings no close event; the unanswered ping (25 s + 10 s, the
    page's timers driven by Playwright's clock) must show the banner, and the network back must clear it."""
    await page.clock.install()
    console, _ = await signed_in(page, service)
    await expect(console.banner).to_be_hidden()
    await page.context.set_offline(True)
    await page.clock.run_for(36_000)
    await expect(console.banner).to_be_visible()
    await expect(console.banner).to_have_attribute("data-state", re.compile("offline|connecting"))
    await page.context.set_offline(False)
    await expect(console.banner).to_be_hidden()


async def test_customer_messages_count_as_unread_in_mine_after_a_reload(service: Service, page: Page) -> None:
    """A reload (or a sign-in) starts a socket subscribed to nothing: the agent's own conversations must be
    watched again, or their customers' messages go unnoticed until each is opened."""
    async with customer(service) as (first, one), customer(service) as (second, two):
        console, _ = await signed_in(page, service)
        await claimed(console, one["id"])
        await claimed(console, two["id"])
        await page.reload()
        await expect(console.item(two["id"])).to_have_attribute("data-state", "human")
        await expect(console.banner).to_be_hidden()

        await first.ok("message.send", conversation_id=one["id"], client_msg_id="c2", content="still there?")
        await second.ok("message.send", conversation_id=two["id"], client_msg_id="c2", content="hello?")
        await expect(console.item(one["id"]).get_by_test_id("unread-count")).to_have_text("1")
        await expect(console.item(two["id"]).get_by_test_id("unread-count")).to_have_text("1")


async def test_the_lists_read_again_watch_each_conversation_once_per_socket(service: Service, page: Page) -> None:
    """Mine's conversations are watched once after each connect, not again at every reading of the lists
    (every 15 s: each watch costs the service a checked read and a page of messages)."""
    watches: list[tuple[int, str]] = []  # (the socket, the conversation): a reconnect's socket watches again
    sockets: list[Any] = []

    def opened(ws: Any) -> None:
        sockets.append(ws)
        ws.on("framesent", lambda payload: sent(len(sockets), payload))

    def sent(socket: int, payload: str | bytes) -> None:
        frame = json.loads(payload)
        if frame.get("type") == "conversation.watch":
            watches.append((socket, frame["conversation_id"]))

    async with customer(service) as (_, one):
        await page.clock.install()
        console, _ = await signed_in(page, service)
        await claimed(console, one["id"])
        page.on("websocket", opened)
        await page.reload()
        await expect(console.item(one["id"])).to_have_attribute("data-state", "human")
        for _ in range(2):  # the second reading's answer comes after the first's watches went out
            async with page.expect_response(lambda r: "/api/v1/conversations?" in r.url and "agent_id" in r.url):
                await page.clock.run_for(16_000)
        mine = [socket for socket, conversation in watches if conversation == one["id"]]
        assert mine and len(mine) == len(set(mine)), watches  # watched, once per socket


async def test_the_all_list_shows_new_conversations_without_a_reload(service: Service, page: Page) -> None:
    """A conversation that starts with the AI sends agents no event: the lists are read again every 15 s
    (the page's timers driven by Playwright's clock)."""
    await page.clock.install()
    console, _ = await signed_in(page, service, "admin")
    await page.get_by_role("tab", name="All").click()
    async with customer(service, handoff=False) as (_, conversation):
        item = console.item(conversation["id"])
        await expect(item).to_have_count(0)  # started after the page read the list
        await page.clock.run_for(16_000)
        await expect(item).to_have_attribute("data-state", "ai")


async def test_a_fresh_load_asks_for_nothing_that_fails(service: Service, page: Page) -> None:
    """No 401 from a refresh without a cookie, no 404 for a favicon: the console's and the demo's first load."""
    failed: list[str] = []
    page.on("response", lambda r: failed.append(f"{r.status} {r.url}") if r.status >= 400 else None)
    await page.goto(service.url + "/console/")
    await expect(page.get_by_test_id("login-user")).to_be_visible()
    await page.goto(service.url + "/demo/")
    await expect(page.get_by_test_id("widget-launcher")).to_be_visible()
    for path in ("/console/", "/demo/"):
        await page.goto(service.url + path)
        icons = await page.locator("link[rel=icon]").evaluate_all("links => links.map(l => l.getAttribute('href'))")
        assert len(icons) == 1, f"{path} names no icon: a browser asks for /favicon.ico (404)"
        response = await page.request.get(service.url + icons[0])
        assert response.status == 200 and response.headers["content-type"].startswith("image/")
    assert failed == []

    # signed in once, a reload restores the session from the cookie as before
    user_id, password = await staff(service)
    console = Console(page, service.url)
    await console.login(user_id, password)
    await page.reload()
    await expect(page.get_by_test_id("current-user")).to_have_text(user_id)
