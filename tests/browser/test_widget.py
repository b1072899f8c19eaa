"""The customer widget in a real browser against a real `chat-api serve` (embedded default, echo AI):
the AI reply streams then is stored, handoff, a service restart, XSS as text, reload, the outbox."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable
from typing import Any

import aiohttp
from playwright.async_api import Page, expect

from chat.auth import issue_token
from tests.browser.conftest import UI_TIMEOUT_MS, Service, messages_of, unique
from tests.browser.widget_page import HOST_PATH, RECORD_STREAM, Widget, open_host
from tests.browser.wire import Wire
from tests.wsclient import WS


async def widget_for(page: Page, service: Service, user: str | None = None, **kwargs: object) -> Widget:
    """A host page embedding the widget with a minted customer token; the panel open and online."""
    await open_host(page, service.url, token=service.token(user or unique("cust")), **kwargs)
    widget = Widget(page)
    await widget.open()
    return widget


async def test_the_ai_reply_streams_then_is_stored(service: Service, page: Page, page_errors: list[str]) -> None:
    widget = await widget_for(page, service)
    await page.evaluate(RECORD_STREAM)

    await widget.write("hello from the browser")

    await expect(widget.by_text("hello from the browser", "customer")).to_have_attribute("data-seq", "1")
    reply = widget.message(2)
    await expect(reply).to_have_attribute("data-sender-type", "ai")
    await expect(reply).to_contain_text("You said: hello from the browser")
    stored = await reply.evaluate("n => n.lastChild.textContent")  # the content, without the sender line
    streamed = await page.evaluate("window.__streamed")
    assert streamed, "the reply was never shown while it streamed"
    assert all(stored.startswith(text) for text in streamed), (streamed, stored)  # growing prefixes of it
    await expect(widget.stream).to_be_hidden()  # the stored message replaced the stream
    assert await widget.seqs() == [1, 2]
    assert page_errors == []


async def test_a_human_is_asked_for_joins_types_and_replies(service: Service, page: Page,
                                                            page_errors: list[str]) -> None:
    customer = unique("cust")
    widget = await widget_for(page, service, customer)
    await widget.write("I have a question about my order")
    await expect(widget.message(2)).to_have_attribute("data-sender-type", "ai")
    await expect(widget.handoff).to_be_hidden()

    await page.get_by_test_id("widget-human").click()

    await expect(widget.handoff).to_be_visible()
    await expect(widget.handoff).not_to_have_attribute("data-seq", re.compile(".*"))  # a notice, not a message
    await expect(widget.message(3)).to_have_attribute("data-sender-type", "system")  # the stored notice
    conversation_id = (await widget.storage())["conversation_id"]
    async with aiohttp.ClientSession() as http, http.ws_connect(service.url + "/ws") as raw:
        agent = WS(raw)
        await agent.ok("auth", token=service.token(unique("agent"), "agent"))
        await agent.ok("conversation.claim", conversation_id=conversation_id)
        await expect(page.get_by_test_id("widget-agent")).to_be_visible()
        await expect(widget.handoff).to_be_hidden()
        await agent.send({"type": "typing", "conversation_id": conversation_id, "on": True})
        await expect(page.get_by_test_id("widget-typing")).to_be_visible()
        hello = "您好，我是客服小王"
        await agent.ok("message.send", conversation_id=conversation_id, client_msg_id="a1", content=hello)
        await expect(widget.by_text(hello, "agent")).to_have_count(1)
        await expect(page.get_by_test_id("widget-typing")).to_be_hidden()  # the message ends the typing
        await agent.ok("message.send", conversation_id=conversation_id, client_msg_id="n1", content="VIP customer",
                       private=True)
        await agent.ok("conversation.close", conversation_id=conversation_id)
    await expect(page.get_by_test_id("widget-closed")).to_be_visible()
    assert await widget.by_text("VIP customer").count() == 0  # a private note never reaches the widget
    seqs = await widget.seqs()
    assert seqs == sorted(set(seqs)) and 6 not in seqs  # seq 6 was the note
    assert page_errors == []


async def test_markup_in_a_message_is_shown_as_text_and_runs_nothing(service: Service, page: Page,
                                                                     page_errors: list[str]) -> None:
    widget = await widget_for(page, service)
    attack = "<img src=x onerror=alert(1)>"

    await widget.write(attack)

    mine = widget.message(1)
    await expect(mine).to_contain_text(attack)  # the characters themselves, not an element
    await expect(widget.message(2)).to_contain_text(attack)  # the echo reply holds it too
    images = await page.evaluate("document.querySelector('[data-chat-api-widget]').shadowRoot"
                                 ".querySelectorAll('img').length + document.querySelectorAll('img').length")
    assert images == 0
    assert page_errors == []  # no alert dialog, no error


async def test_a_reload_keeps_the_conversation(service: Service, page: Page, page_errors: list[str]) -> None:
    widget = await widget_for(page, service)
    await widget.write("first visit")
    await expect(widget.message(2)).to_have_attribute("data-sender-type", "ai")
    before = await widget.storage()

    await page.reload()

    await widget.online()  # it reconnects at once: it has a conversation
    await expect(widget.input).to_be_visible()  # the panel was left open
    await expect(widget.by_text("first visit", "customer")).to_have_attribute("data-seq", "1")
    await expect(widget.message(2)).to_be_visible()
    await widget.write("second visit")
    await expect(widget.message(4)).to_contain_text("second visit")
    assert (await widget.storage())["conversation_id"] == before["conversation_id"]
    assert await widget.seqs() == [1, 2, 3, 4]
    assert page_errors == []


async def test_a_restart_of_the_service_loses_and_doubles_nothing(make_service: Callable[..., Service], page: Page,
                                                                  page_errors: list[str]) -> None:
    service = make_service()
    widget = await widget_for(page, service)
    await widget.write("before the restart")
    await expect(widget.message(2)).to_have_attribute("data-sender-type", "ai")

    await asyncio.to_thread(service.stop)
    await expect(widget.status).to_have_attribute("data-state", "offline")
    await widget.write("written while the service is down")  # kept in the outbox, shown as pending
    await expect(page.get_by_test_id("widget-pending")).to_have_count(1)
    await asyncio.to_thread(service.start)

    await widget.online()  # by itself: nobody reloads or clicks
    await expect(widget.by_text("written while the service is down", "customer")).to_have_attribute("data-seq", "3")
    await expect(widget.message(4)).to_contain_text("written while the service is down")
    await expect(page.get_by_test_id("widget-pending")).to_have_count(0)
    assert await widget.seqs() == [1, 2, 3, 4]
    assert page_errors == []


async def test_an_unacknowledged_message_is_resent_once_and_stored_once(service: Service, page: Page,
                                                                        page_errors: list[str]) -> None:
    wire = Wire()
    await wire.install(page)
    widget = await widget_for(page, service)
    await widget.write("warm up")
    await expect(widget.message(2)).to_be_visible()
    # the service stores the next message, but neither its reply nor its event reaches the page
    wire.drop = lambda frame: frame.get("type") in ("result", "message.created", "ai.delta")

    await widget.write("is this stored once?")
    def the_send(frame: dict[str, Any]) -> bool:
        return frame["type"] == "message.send" and frame["content"] == "is this stored once?"

    await wire.sent_frames(the_send, 1)
    await expect(page.get_by_test_id("widget-pending")).to_have_count(1)
    assert (await widget.storage())["outbox"], "the unacknowledged message is kept for a reload"
    wire.drop = lambda frame: False
    await wire.cut()

    await expect(widget.by_text("is this stored once?", "customer")).to_have_attribute("data-seq", "3")
    resent = await wire.sent_frames(the_send, 2)
    assert len(resent) == 2 and resent[0]["client_msg_id"] == resent[1]["client_msg_id"]
    await expect(page.get_by_test_id("widget-pending")).to_have_count(0)
    # the resend's reply empties the outbox (the resume may have shown the message before it)
    await page.wait_for_function("() => Object.keys(localStorage).some(k => k.startsWith('chat-api-widget:')"
                                 " && JSON.parse(localStorage.getItem(k)).outbox.length === 0)")
    stored = await messages_of(service, (await widget.storage())["conversation_id"])
    assert [m["content"] for m in stored].count("is this stored once?") == 1
    assert page_errors == []


async def test_events_missed_while_disconnected_come_back_by_resume(service: Service, page: Page,
                                                                    page_errors: list[str]) -> None:
    wire = Wire()
    await wire.install(page)
    widget = await widget_for(page, service)
    wire.drop = lambda frame: frame.get("type") == "message.created" and frame["data"]["message"]["sender_type"] == "ai"

    await widget.write("answer me later")
    await expect(widget.message(1)).to_be_visible()  # from the reply to message.send
    await expect(widget.stream).to_contain_text("answer me later")  # the AI streamed; its message was lost
    wire.drop = lambda frame: False
    await wire.cut()

    await expect(widget.message(2)).to_contain_text("You said: answer me later")
    await expect(widget.stream).to_be_hidden()
    resumes = await wire.sent_frames(lambda frame: frame["type"] == "conversation.resume", 1)
    assert resumes[-1]["after_seq"] == 1  # the highest seq shown, not the whole history
    assert await widget.seqs() == [1, 2]
    assert page_errors == []


def losing(wire: Wire, lose: Callable[[dict[str, Any]], bool]) -> asyncio.Event:
    """Make the wire lose the first frame `lose` picks (as a bus hiccup would); the event is set once it did."""
    lost = asyncio.Event()

    def drop(frame: dict[str, Any]) -> bool:
        if not lost.is_set() and lose(frame):
            lost.set()
            return True
        return False

    wire.drop = drop
    return lost


async def test_a_message_whose_event_was_lost_is_fetched_once_the_next_one_shows_the_hole(
        service: Service, page: Page, page_errors: list[str]) -> None:
    wire = Wire()
    await wire.install(page)
    widget = await widget_for(page, service)
    lost = losing(wire, lambda f: f.get("type") == "message.created" and f["data"]["message"]["sender_type"] == "ai")
    await widget.write("first")
    await asyncio.wait_for(lost.wait(), UI_TIMEOUT_MS / 1000)  # the AI's reply is stored, its event lost
    await widget.write("second")
    await expect(widget.by_text("You said: second", "ai")).to_be_visible()
    await expect(widget.message(2)).to_contain_text("You said: first")  # fetched: no reload, no reconnect
    assert await widget.seqs() == [1, 2, 3, 4]
    assert len(wire.routes) == 1
    assert page_errors == []


async def test_another_user_on_the_same_page_never_sees_the_first_ones_messages(service: Service, page: Page,
                                                                                page_errors: list[str]) -> None:
    """A single-page site: one user signs out and another signs in; the token provider now gives the
    second one's tokens. The widget forgets the first one's conversation, on screen too."""
    first, second = unique("cust"), unique("cust")
    current = [first]
    await page.expose_function("whoeverIsSignedIn", lambda how: service.token(current[0]))
    wire = Wire()
    await wire.install(page)
    await open_host(page, service.url, token_provider="whoeverIsSignedIn")
    widget = Widget(page)
    await widget.open()
    await widget.write("from the first user")
    await expect(widget.message(2)).to_be_visible()
    wire.drop = lambda frame: (frame.get("data") or {}).get("message", {}).get("content") == "not acknowledged yet"
    await widget.write("not acknowledged yet")  # stored, but its acknowledgement is lost: still pending
    await expect(page.get_by_test_id("widget-pending")).to_have_count(1)
    wire.drop = lambda frame: False
    current[0] = second
    await wire.cut()  # the next connection asks the provider, and gets the second user's token
    await expect(widget.by_text("from the first user")).to_have_count(0)
    await widget.online()
    await expect(page.get_by_test_id("widget-pending")).to_have_count(0)  # not resent under the second user
    await widget.write("from the second user")
    await expect(widget.message(2)).to_contain_text("You said: from the second user")
    assert await widget.seqs() == [1, 2]
    await expect(widget.by_text("from the second user", "customer")).to_have_attribute("data-seq", "1")
    await expect(page.locator(".failed")).to_have_count(0)
    assert (await widget.storage())["outbox"] == []
    assert page_errors == []


async def test_the_page_sent_with_a_new_conversation_leaves_out_its_query_and_fragment(service: Service,
                                                                                      page: Page) -> None:
    """A host page's URL may carry the site's own secrets (a reset link's token, an OAuth fragment):
    agents and webhooks get the page without them."""
    await open_host(page, service.url, token=service.token(unique("cust")))
    await page.evaluate("history.replaceState(null, '', location.pathname + '?reset=s3cret#access_token=t0ken')")
    widget = Widget(page)
    await widget.open()
    await widget.write("hello")
    await expect(widget.message(2)).to_be_visible()
    conversation_id = (await widget.storage())["conversation_id"]
    headers = {"Authorization": f"Bearer {service.token(unique('admin'), 'admin')}"}
    async with aiohttp.ClientSession() as http, http.get(
            f"{service.url}/api/v1/conversations/{conversation_id}", headers=headers) as response:
        assert response.status == 200, await response.text()
        metadata = (await response.json())["metadata"]
    assert metadata["page"] == service.url + HOST_PATH


async def test_a_short_lived_token_is_renewed_on_the_open_socket(service: Service, page: Page,
                                                                 page_errors: list[str]) -> None:
    customer = unique("cust")
    asked: list[bool] = []
    enough = asyncio.Event()

    def fresh_token(how: dict[str, Any]) -> str:
        """The page's token provider (data-token-provider): a 4-second token each time."""
        asked.append(bool(how and how.get("refresh")))
        if len(asked) >= 5:  # the first token has expired by now: the socket lived on fresher ones
            enough.set()
        return service.token(customer, ttl_s=4)

    await page.expose_function("freshChatToken", fresh_token)
    sockets: list[object] = []
    page.on("websocket", lambda ws: sockets.append(ws))  # noqa: PLW0108  (Playwright cannot wrap a builtin method)
    await open_host(page, service.url, token_provider="freshChatToken")
    widget = Widget(page)
    await widget.open()
    await widget.write("still here?")
    await expect(widget.message(2)).to_be_visible()

    await asyncio.wait_for(enough.wait(), timeout=30)

    assert asked[0] is False and all(asked[1:])  # renewals, each sent as an auth frame on the open socket
    await widget.write("yes")
    await expect(widget.message(4)).to_contain_text("yes")
    assert len(sockets) == 1  # never closed at exp, never reconnected
    assert page_errors == []


async def test_a_kept_visitor_token_the_service_refuses_is_replaced(service: Service, page: Page) -> None:
    """A visitor token kept from an earlier visit, not expired but no longer accepted (the service's key
    was rotated): the widget takes a new visitor's token instead of offering the refused one again."""
    stale = issue_token("a-key-this-service-no-longer-has", "visitor-before-rotation", "customer")
    await open_host(page, service.url)
    await page.evaluate(
        "([key, record]) => localStorage.setItem(key, JSON.stringify(record))",
        [f"chat-api-widget:{service.url}", {"user_id": "visitor-before-rotation", "conversation_id": None,
                                              "visitor": {"token": stale, "exp": 4_102_444_800}}])
    await page.reload()
    widget = Widget(page)
    await widget.open()  # online only with an accepted token
    await widget.write("after the rotation")
    await expect(widget.by_text("after the rotation", "customer")).to_have_attribute("data-seq", "1")
    kept = await widget.storage()
    assert kept["visitor"]["token"] != stale  # type: ignore[index]
    assert kept["user_id"] != "visitor-before-rotation"


async def test_the_token_provider_is_told_when_its_token_was_refused(service: Service, page: Page) -> None:
    customer, asked = unique("cust"), []

    def provide(how: dict[str, Any]) -> str:
        """The page's provider: first a token the service refuses, then good ones."""
        asked.append(bool(how.get("refused")))
        if len(asked) == 1:
            return issue_token("a-key-this-service-no-longer-has", customer, "customer")
        return service.token(customer)

    await page.expose_function("chatTokenAfterRefusal", provide)
    await open_host(page, service.url, token_provider="chatTokenAfterRefusal")
    widget = Widget(page)
    await widget.open()
    assert asked[:2] == [False, True]  # the refused token is not asked for again


async def test_the_satisfaction_prompt_sends_csat_submit(service: Service, page: Page) -> None:
    wire = Wire()
    await wire.install(page)
    widget = await widget_for(page, service)
    await widget.write("thanks, bye")
    await expect(widget.message(2)).to_be_visible()
    conversation_id = (await widget.storage())["conversation_id"]
    await expect(widget.csat).to_be_hidden()

    # the service does not send csat.requested yet (PROTOCOL 3.6): the test plays it
    wire.routes[-1].send(json.dumps({"type": "csat.requested", "data": {"conversation_id": conversation_id}}))
    await expect(widget.csat).to_be_visible()
    await widget.csat.locator("button[data-score='4']").click()

    submits = await wire.sent_frames(lambda frame: frame["type"] == "csat.submit", 1)
    assert submits[0]["conversation_id"] == conversation_id and submits[0]["score"] == 4
    # this service refuses it (no csat.submit yet, or the conversation is not closed): the score may be given again
    await expect(widget.csat.locator("button[data-score='4']")).to_be_enabled()


async def test_on_a_phone_in_chinese_the_panel_fills_the_screen(service: Service,
                                                                new_page: Callable[..., Any]) -> None:
    page = await new_page(locale="zh-CN", viewport={"width": 390, "height": 780}, is_mobile=True, has_touch=True)
    widget = await widget_for(page, service)

    box = await page.locator("section.panel").bounding_box()
    assert box is not None and (box["x"], box["y"], box["width"], box["height"]) == (0, 0, 390, 780)
    await expect(widget.input).to_have_attribute("placeholder", "输入消息…")
    await expect(widget.status).to_have_text("在线")
    await widget.write("你好")
    await expect(widget.message(1)).to_contain_text("你好")
