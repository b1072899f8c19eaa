"""The agent console in a real browser against a real `chat-api serve` (embedded default, echo AI):
sign-in with a password, presence, the queue, claim, reply, private notes, transfer, release, close,
a deactivated agent signed out, text never run as HTML, a reload keeping the session, admin pages."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from playwright.async_api import Page, expect

from tests.browser.conftest import UI_TIMEOUT_MS, Service, unique
from tests.browser.console_page import Console, rest, staff
from tests.browser.wire import Wire
from tests.wsclient import WS

XSS = "<img src=x onerror=alert(1)>"


@asynccontextmanager
async def customer(service: Service, *, handoff: bool = True, text: str = "I need help with my order",
                   metadata: dict[str, Any] | None = None) -> AsyncIterator[tuple[WS, dict[str, Any]]]:
    """A customer socket with a conversation (its first message sent; waiting for an agent by default)."""
    async with aiohttp.ClientSession() as http, http.ws_connect(service.url + "/ws") as raw:
        ws = WS(raw)
        await ws.ok("auth", token=service.token(unique("cust")))
        conversation = (await ws.ok("conversation.start", metadata=metadata or {}))["conversation"]
        await ws.ok("message.send", conversation_id=conversation["id"], client_msg_id="c1", content=text)
        if handoff:
            conversation = (await ws.ok("handoff.request", conversation_id=conversation["id"]))["conversation"]
        yield ws, conversation


async def signed_in(page: Page, service: Service, role: str = "agent", **fields: object) -> tuple[Console, str]:
    """A console signed in as a new account of that role (away: nothing is routed to it)."""
    user_id, password = await staff(service, role, **fields)
    console = Console(page, service.url)
    await console.login(user_id, password)
    return console, user_id


async def claimed(console: Console, conversation_id: str) -> None:
    """Open a waiting conversation from the queue and take it over."""
    await console.queue_item(conversation_id).click()
    await console.claim_button.click()
    await expect(console.item(conversation_id)).to_have_attribute("data-state", "human")


async def test_login_with_a_password_and_a_wrong_one(service: Service, page: Page, page_errors: list[str]) -> None:
    user_id, password = await staff(service)
    console = Console(page, service.url)
    await console.open()
    await console.user.fill(user_id)
    await console.password.fill(password + "x")
    await console.submit.click()
    await expect(console.login_error).to_have_text("Wrong user name or password.")
    await expect(console.presence).to_have_count(0)

    await console.password.fill(password)
    await console.submit.click()

    await expect(console.presence).to_have_attribute("data-status", "away")
    await expect(page.get_by_test_id("current-user")).to_have_text(user_id)
    await expect(console.banner).to_be_hidden()  # connected
    # the access token stays in memory, the refresh token in an HttpOnly cookie the page cannot read
    assert await page.evaluate("() => document.cookie") == ""
    # stored: only the mark that this browser signed in (no secret: the next load tries the cookie)
    assert await page.evaluate("() => ({...localStorage, ...sessionStorage})") == {"chat-console.session": "1"}
    assert page_errors == []


async def test_sign_out_ends_the_session(service: Service, page: Page) -> None:
    console, _ = await signed_in(page, service)
    async with page.expect_request(lambda r: r.url.endswith("/api/v1/auth/logout")) as logout:
        await page.get_by_test_id("logout-button").click()
    assert (await (await logout.value).response()).status == 204  # type: ignore[union-attr]
    await expect(console.submit).to_be_visible()
    await expect(console.login_error).to_have_text("")  # signing out is no error
    await page.reload()  # the cookie went with it: no silent sign-in
    await expect(console.submit).to_be_visible()


async def test_the_console_speaks_chinese_to_a_chinese_browser(service: Service,
                                                               new_page: Callable[..., Any]) -> None:
    page = await new_page(locale="zh-CN")
    console = Console(page, service.url)
    await console.open()
    await expect(console.submit).to_have_text("登录")
    user_id, password = await staff(service)
    await console.login(user_id, password)
    await expect(console.presence).to_have_text("离开")


async def test_presence_toggles_between_online_and_away(service: Service, page: Page) -> None:
    console, user_id = await signed_in(page, service)

    async def status() -> str:
        agents = await rest(service, "GET", "/api/v1/agents")
        return next(a["status"] for a in agents["items"] if a["agent_id"] == user_id)  # type: ignore[no-any-return]

    await console.go("online")
    assert await status() == "online"
    await console.go("away")
    assert await status() == "away"


async def test_claim_from_the_queue_reply_and_a_note_the_customer_never_gets(service: Service, page: Page,
                                                                            page_errors: list[str]) -> None:
    async with customer(service, text="where is my parcel?", metadata={"order": "A-1001"}) as (ws, conversation):
        cid = conversation["id"]
        console, user_id = await signed_in(page, service)
        item = console.queue_item(cid)
        await expect(item).to_contain_text("where is my parcel?")  # the customer's last message
        await expect(item).to_contain_text(re.compile(r"waiting \d+ s"))
        await item.click()
        await expect(console.by_text("where is my parcel?", "customer")).to_have_attribute("data-seq", "1")
        await expect(page.locator(".metadata")).to_contain_text("A-1001")  # the side panel

        await console.claim_button.click()

        await expect(console.item(cid)).to_have_attribute("data-state", "human")
        await expect(item).to_have_count(0)  # left the queue
        assigned = await ws.event("conversation.updated", lambda f: f["data"]["conversation"]["state"] == "human")
        assert assigned["data"]["conversation"]["agent_id"] == user_id

        # Enter sends, Shift+Enter breaks the line
        await console.input.fill("line one")
        await console.input.press("Shift+Enter")
        await console.input.press_sequentially("line two")
        await console.input.press("Enter")
        reply = await ws.event("message.created", lambda f: f["data"]["message"]["sender_type"] == "agent")
        assert reply["data"]["message"]["content"] == "line one\nline two"
        await expect(console.by_text("line two", "agent")).to_have_attribute("data-private", "false")

        await console.note_toggle.click()
        await expect(console.note_toggle).to_have_attribute("aria-pressed", "true")
        await console.write("VIP: be nice")
        note = console.by_text("VIP: be nice", "agent")
        await expect(note).to_have_attribute("data-private", "true")
        await expect(console.note_toggle).to_have_attribute("aria-pressed", "true")  # stays until toggled
        await console.note_toggle.click()
        await expect(console.note_toggle).to_have_attribute("aria-pressed", "false")
        await console.write("anything else?")
        last = await ws.event("message.created", lambda f: f["data"]["message"]["content"] == "anything else?")
        # the note was stored between the two replies, and the customer got neither it nor its seq
        assert last["data"]["message"]["seq"] == reply["data"]["message"]["seq"] + 2
        assert not [f for f in ws.events if "VIP" in str(f)]
        history = await ws.ok("conversation.resume", conversation_id=cid)
        assert "VIP" not in str(history["messages"])
    assert page_errors == []


async def test_a_message_whose_event_was_lost_is_fetched_once_the_next_one_shows_the_hole(
        service: Service, page: Page, page_errors: list[str]) -> None:
    wire = Wire()
    await wire.install(page)
    async with customer(service) as (ws, conversation):
        cid = conversation["id"]
        console, _ = await signed_in(page, service)
        await claimed(console, cid)
        lost = asyncio.Event()

        def lose_the_first(frame: dict[str, Any]) -> bool:  # as a bus hiccup would
            if not lost.is_set() and frame.get("type") == "message.created" \
                    and frame["data"]["message"]["content"] == "lost on the way":
                lost.set()
                return True
            return False

        wire.drop = lose_the_first
        await ws.ok("message.send", conversation_id=cid, client_msg_id="c2", content="lost on the way")
        await asyncio.wait_for(lost.wait(), UI_TIMEOUT_MS / 1000)
        await ws.ok("message.send", conversation_id=cid, client_msg_id="c3", content="and the next one")
        await expect(console.by_text("and the next one", "customer")).to_be_visible()
        await expect(console.by_text("lost on the way", "customer")).to_be_visible()  # no reload, no reconnect
        assert len(wire.routes) == 1
    assert page_errors == []


async def test_typing_shows_both_ways(service: Service, page: Page) -> None:
    async with customer(service) as (ws, conversation):
        cid = conversation["id"]
        console, _ = await signed_in(page, service)
        await claimed(console, cid)
        typing = page.locator(".typing")

        await ws.send({"type": "typing", "conversation_id": cid, "on": True})
        await expect(typing).to_have_text("The customer is typing…")
        await ws.send({"type": "typing", "conversation_id": cid, "on": False})
        await expect(typing).to_have_text("")

        await console.input.press_sequentially("Let me")
        on = await ws.event("typing", lambda f: f["data"]["on"] is True)
        assert on["data"] == {"conversation_id": cid, "sender_type": "agent", "on": True}
        await console.input.press("Enter")  # sending ends the typing
        await ws.event("typing", lambda f: f["data"]["on"] is False)


async def test_transfer_to_a_second_agent(service: Service, new_page: Callable[..., Any]) -> None:
    async with customer(service) as (ws, conversation):  # waiting before the agents sign in (away: no queue events)
        cid = conversation["id"]
        first, _ = await signed_in(await new_page(), service)
        # going online, second may also be routed what earlier tests left waiting: its load is not known
        second, second_id = await signed_in(await new_page(), service, max_chats=40)
        await claimed(first, cid)
        await second.go("online")  # after the claim, or routing would have given it to second
        await first.write("let me ask a colleague")

        await first.transfer_button.click()
        target = first.page.locator(f"[data-testid=transfer-target][data-agent-id='{second_id}']")
        await expect(target).to_contain_text(re.compile(r"\d+ / 40 chats"))  # the agent's load
        await expect(first.confirm_button).to_be_disabled()  # nothing chosen yet
        await target.click()
        await first.confirm()

        await expect(first.transfer_button).to_be_hidden()  # no longer first's conversation
        await expect(second.item(cid)).to_have_attribute("data-state", "human")  # assigned to second, live
        await second.item(cid).click()
        await expect(second.by_text("let me ask a colleague", "agent")).to_have_count(1)
        await second.write("hello, I take it from here")
        got = await ws.event("message.created", lambda f: f["data"]["message"]["sender_id"] == second_id)
        assert got["data"]["message"]["content"] == "hello, I take it from here"


async def test_transfer_to_a_team_puts_it_back_in_the_queue(service: Service, page: Page) -> None:
    team = await rest(service, "POST", "/api/v1/teams", body={"name": unique("billing")}, expect_status=201)
    async with customer(service) as (ws, conversation):
        cid = conversation["id"]
        console, _ = await signed_in(page, service)
        await claimed(console, cid)

        await console.transfer_button.click()
        await page.locator(f"[data-testid=transfer-target][data-team-id='{team['id']}']").click()
        await console.confirm()

        await expect(console.state_badge).to_have_attribute("data-state", "handoff")
        moved = await ws.event("conversation.updated", lambda f: f["data"]["reason"] == "transfer")
        assert (moved["data"]["conversation"]["state"], moved["data"]["conversation"]["team_id"]) == (
            "handoff", team["id"])
        await expect(console.queue_item(cid)).to_contain_text(team["name"])  # waiting again, for that team


async def test_release_hands_the_conversation_back_to_the_ai(service: Service, page: Page) -> None:
    async with customer(service) as (ws, conversation):
        cid = conversation["id"]
        console, _ = await signed_in(page, service)
        await claimed(console, cid)

        await console.release_button.click()
        await expect(console.item(cid)).to_have_attribute("data-state", "human")  # nothing until confirmed
        await console.confirm()

        await expect(console.state_badge).to_have_attribute("data-state", "ai")
        await expect(console.claim_button).to_be_visible()  # anyone may take it over again
        await ws.event("conversation.updated", lambda f: f["data"]["conversation"]["state"] == "ai")


async def test_close_keeps_the_conversation_listed_as_closed(service: Service, page: Page) -> None:
    async with customer(service) as (ws, conversation):
        cid = conversation["id"]
        console, _ = await signed_in(page, service)
        await claimed(console, cid)

        await console.close_button.click()
        await page.get_by_test_id("cancel-button").click()  # changed its mind: nothing happens
        await expect(console.item(cid)).to_have_attribute("data-state", "human")
        await console.close_button.click()
        await console.confirm()

        await expect(console.item(cid)).to_have_attribute("data-state", "closed")
        await ws.event("conversation.updated", lambda f: f["data"]["conversation"]["state"] == "closed")
        await page.reload()
        await expect(console.item(cid)).to_have_attribute("data-state", "closed")


async def test_a_deactivated_agent_is_signed_out_within_seconds(service: Service, page: Page) -> None:
    console, user_id = await signed_in(page, service)
    await console.go("online")

    await rest(service, "PATCH", f"/api/v1/users/{user_id}", body={"active": False})

    # PROTOCOL 2.1 says within 5 s; the UI wait allows for a loaded machine
    await expect(console.submit).to_be_visible()
    await expect(console.presence).to_have_count(0)
    await page.reload()  # the refresh cookie no longer works either
    await expect(console.submit).to_be_visible()


# Records each WebSocket the page opens and the close code of each (Playwright's own socket events
# have no close code).
RECORD_SOCKETS = """() => {
  window.__sockets = 0;
  window.__closes = [];
  const Native = window.WebSocket;
  window.WebSocket = class extends Native {
    constructor(...args) {
      super(...args);
      window.__sockets += 1;
      this.addEventListener("close", (event) => window.__closes.push(event.code));
    }
  };
}"""


async def test_a_role_change_rebuilds_the_workspace_without_a_new_sign_in(service: Service, page: Page,
                                                                          page_errors: list[str]) -> None:
    await page.add_init_script(script=f"({RECORD_SOCKETS})()")
    console, user_id = await signed_in(page, service, "admin")
    stats = page.get_by_test_id("nav-stats")
    await expect(stats).to_be_visible()
    await expect(page.get_by_test_id("nav-search")).to_be_visible()
    await expect(console.banner).to_be_hidden()
    assert await page.evaluate("window.__sockets") == 1

    # demoted by another admin: the socket is closed with 4401 and comes back as an agent's
    await rest(service, "PATCH", f"/api/v1/users/{user_id}", body={"role": "agent"})
    await page.wait_for_function("window.__closes.includes(4401)")
    await expect(stats).to_have_count(0)
    await expect(page.get_by_test_id("nav-search")).to_have_count(0)
    await expect(page.get_by_test_id("toast").filter(has_text="Your role is now agent")).to_have_count(1)
    await expect(console.banner).to_be_hidden()  # the rebuilt workspace is online
    await expect(page.get_by_test_id("current-user")).to_have_text(user_id)
    await expect(console.submit).to_have_count(0)  # never signed out
    # the refused socket was followed by one with a renewed token at once (not the refused one
    # again), whose role the workspace was not built for: it was replaced by the new workspace's
    await page.wait_for_function("window.__closes.length >= 2")
    assert await page.evaluate("window.__closes") == [4401, 1000]
    assert await page.evaluate("window.__sockets") == 3
    await console.go("online")  # the agent's socket works

    # promoted back: the admin pages come back the same way
    await rest(service, "PATCH", f"/api/v1/users/{user_id}", body={"role": "admin"})
    await expect(stats).to_be_visible()
    await expect(console.banner).to_be_hidden()
    await stats.click()
    await expect(page.get_by_test_id("stats-panel")).to_be_visible()
    await page.wait_for_function("window.__closes.length >= 4")
    assert await page.evaluate("window.__closes") == [4401, 1000, 4401, 1000]
    assert page_errors == []


async def test_message_text_is_shown_as_text_and_runs_nothing(service: Service, page: Page,
                                                              page_errors: list[str]) -> None:
    async with customer(service, text=XSS) as (_, conversation):
        console, _ = await signed_in(page, service)
        await console.queue_item(conversation["id"]).click()
        message = console.message(1)
        await expect(message.locator(".text")).to_have_text(XSS)
        assert await page.locator("[data-testid=message] img").count() == 0
        await expect(console.queue_item(conversation["id"]).locator(".preview")).to_have_text(XSS)
    assert page_errors == []  # no alert dialog, no error


async def test_a_reload_keeps_the_session_and_the_open_conversation_list(service: Service, page: Page) -> None:
    console, user_id = await signed_in(page, service, max_chats=40)  # room for what earlier tests left waiting
    await console.go("online")
    async with customer(service) as (_, conversation):
        cid = conversation["id"]
        await expect(console.item(cid)).to_have_attribute("data-state", "human")  # routed to this agent
        await console.item(cid).click()
        await expect(console.state_badge).to_have_attribute("data-state", "human")

        await page.reload()

        await expect(page.get_by_test_id("current-user")).to_have_text(user_id)  # no sign-in form
        await expect(console.presence).to_have_attribute("data-status", "online")
        await expect(console.item(cid)).to_have_attribute("data-state", "human")
        await console.item(cid).click()
        await console.write("still here after a reload")
        await expect(console.by_text("still here after a reload", "agent")).to_have_count(1)


async def test_an_assignment_rings_and_shows_up_in_mine(service: Service, page: Page) -> None:
    console, user_id = await signed_in(page, service, max_chats=40)  # room for what earlier tests left waiting
    await page.evaluate("""() => {
      window.__beeps = 0;
      const original = AudioContext.prototype.createOscillator;
      AudioContext.prototype.createOscillator = function () { window.__beeps++; return original.call(this); };
    }""")
    await console.presence.click()  # a click also unlocks the audio
    await expect(console.presence).to_have_attribute("data-status", "online")
    async with customer(service) as (ws, conversation):
        item = console.item(conversation["id"])
        # routed to this agent, the only one online (PROTOCOL 3.5: auto routing)
        await expect(item).to_have_attribute("data-state", "human")
        await expect(item).to_contain_text(user_id)
        await page.wait_for_function("() => window.__beeps > 0")

        # a message in a conversation that is not open counts as unread until it is opened
        await ws.ok("message.send", conversation_id=conversation["id"], client_msg_id="c2", content="are you there?")
        await expect(item.get_by_test_id("unread-count")).to_have_text("1")
        await item.click()
        await expect(console.by_text("are you there?", "customer")).to_have_count(1)
        await expect(item.get_by_test_id("unread-count")).to_have_count(0)


@pytest_asyncio.fixture(loop_scope="session")
async def busy(make_service: Callable[..., Service]) -> Service:
    """A private service where a customer may write fast and nothing is routed (the queue stays)."""
    return make_service(WS_RATE_LIMIT_COUNT="1000", ROUTING="manual")


async def test_history_loads_upward_in_pages_and_the_queue_moves_live(busy: Service, page: Page) -> None:
    console, _ = await signed_in(page, busy)
    await console.go("online")
    async with customer(busy, text="message 1") as (ws, conversation):
        cid = conversation["id"]
        await expect(console.queue_item(cid)).to_be_visible()  # a queue event, no reload
        for n in range(2, 81):
            sent = await ws.ok("message.send", conversation_id=cid, client_msg_id=f"c{n}", content=f"message {n}")
        await console.queue_item(cid).click()
        last_seq = sent["message"]["seq"]  # 80 messages, the handoff notice (and an AI reply that beat it)
        await expect(console.message(last_seq)).to_be_visible()
        assert len(await console.seqs()) < last_seq  # the newest page only

        for _ in range(10):  # each scroll to the top loads one more page
            if await console.message(1).count():
                break
            shown = await console.messages.count()
            await page.locator(".scroller").evaluate("node => node.scrollTop = 0")
            await page.wait_for_function("n => document.querySelectorAll('[data-testid=message]').length > n",
                                         arg=shown)
        await expect(console.message(1)).to_have_text(re.compile("message 1$"))
        assert await console.seqs() == list(range(1, last_seq + 1))  # each once, in order


@pytest.mark.parametrize("where", ["stats", "search"])
async def test_admin_pages(service: Service, page: Page, where: str) -> None:
    async with customer(service, text="searchable words") as (_, conversation):
        console, _ = await signed_in(page, service, "admin")
        await page.get_by_test_id(f"nav-{where}").click()
        if where == "stats":
            panel = page.get_by_test_id("stats-panel")
            await expect(panel.locator("[data-stat=started] .figure-value")).to_have_text(re.compile(r"^[1-9]\d*$"))
            await expect(panel.locator("svg.chart")).to_have_count(3)
            assert await panel.locator("svg.chart rect").count() > 0
        else:
            await page.locator("input[name=user_id]").fill(conversation["user_id"])
            await page.locator("input[name=q]").fill("searchable")
            await page.get_by_test_id("search-submit").click()
            row = page.locator(f"[data-testid=search-result][data-conversation-id='{conversation['id']}']")
            await expect(row).to_have_count(1)
            await row.click()
            await expect(console.by_text("searchable words", "customer")).to_have_count(1)


# Records every text the console's streaming element shows (the echo provider streams within milliseconds).
RECORD_STREAM = """() => {
  const stream = document.querySelector('[data-testid=ai-stream]');
  window.__streamed = [];
  new MutationObserver(() => {
    if (!stream.hidden && stream.textContent) window.__streamed.push(stream.lastChild.textContent);
  }).observe(stream, {childList: true, characterData: true, subtree: true, attributes: true});
}"""


async def test_the_agent_watches_the_ai_reply_stream_live(service: Service, page: Page) -> None:
    async with customer(service, handoff=False, text="first question") as (ws, conversation):
        console, _ = await signed_in(page, service)
        await page.get_by_role("tab", name="All").click()
        await console.item(conversation["id"]).click()
        await expect(console.message(2)).to_have_attribute("data-sender-type", "ai")  # the first answer
        await page.evaluate(RECORD_STREAM)

        await ws.ok("message.send", conversation_id=conversation["id"], client_msg_id="c2", content="second question")

        reply = console.message(4)
        await expect(reply).to_have_attribute("data-sender-type", "ai")
        stored = await reply.locator(".text").text_content()
        streamed = await page.evaluate("window.__streamed")
        assert streamed, "the reply was never shown while it streamed"
        assert all(stored and stored.startswith(text) for text in streamed), (streamed, stored)
        await expect(console.stream).to_be_hidden()
        assert await console.seqs() == [1, 2, 3, 4]


async def test_the_side_panel_labels_and_earlier_conversations(service: Service, page: Page) -> None:
    title = unique("vip")
    await rest(service, "POST", "/api/v1/labels", body={"title": title, "color": "#aa3377"}, expect_status=201)
    async with customer(service, handoff=False, text="my first visit") as (ws, first):
        await ws.ok("conversation.close", conversation_id=first["id"])
        second = (await ws.ok("conversation.start", metadata={"plan": "gold"}))["conversation"]
        await ws.ok("message.send", conversation_id=second["id"], client_msg_id="c1", content="me again")
        await ws.ok("handoff.request", conversation_id=second["id"])
        console, _ = await signed_in(page, service)
        await console.queue_item(second["id"]).click()
        await expect(page.locator(".metadata")).to_contain_text("gold")

        label = page.locator(f"[data-testid=label-toggle][data-label='{title}']")
        await label.click()
        await expect(label).to_have_attribute("aria-pressed", "true")
        assert (await rest(service, "GET", f"/api/v1/conversations/{second['id']}"))["labels"] == [title]

        earlier = page.locator(f"[data-testid=history-item][data-conversation-id='{first['id']}']")
        await earlier.click()
        await expect(console.by_text("my first visit", "customer")).to_have_count(1)
        await expect(console.state_badge).to_have_attribute("data-state", "closed")


async def test_a_short_lived_access_token_is_renewed_silently(make_service: Callable[..., Service],
                                                              page: Page) -> None:
    service = make_service(ACCESS_TOKEN_TTL_S="6")
    sockets: list[object] = []

    def opened(ws: object) -> None:  # Playwright cannot take a bound builtin such as list.append
        sockets.append(ws)

    page.on("websocket", opened)
    console, user_id = await signed_in(page, service)
    await console.go("online")
    for _ in range(2):  # past the first token's life
        async with page.expect_request(lambda r: r.url.endswith("/api/v1/auth/refresh")) as renewed:
            pass
        assert (await (await renewed.value).response()).status == 200  # type: ignore[union-attr]

    async with customer(service) as (ws, conversation):
        await expect(console.item(conversation["id"])).to_contain_text(user_id)  # routed: still online
        await console.item(conversation["id"]).click()
        await console.write("no sign-in needed")
        await ws.event("message.created", lambda f: f["data"]["message"]["content"] == "no sign-in needed")
    assert len(sockets) == 1  # the socket took the fresh tokens; it was never closed for an expired one
