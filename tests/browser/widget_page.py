"""Driving the customer widget in a page: a host page on the service's origin that embeds
`/widget.js` (with a token or without), and locators for PROTOCOL 9's data-testids.

Playwright's locators pierce open shadow roots, so `page.get_by_test_id("widget-input")` finds the
widget's elements inside its shadow DOM.
"""

from __future__ import annotations

import html

from playwright.async_api import Locator, Page, Route, expect

# Records every text the streaming element shows (a MutationObserver in the widget's shadow root), so
# a test sees the stream even when the offline echo provider finishes it within milliseconds.
RECORD_STREAM = """() => {
  const root = document.querySelector('[data-chat-api-widget]').shadowRoot;
  const stream = root.querySelector('[data-testid=widget-ai-stream]');
  window.__streamed = [];
  new MutationObserver(() => {
    if (!stream.hidden && stream.textContent) window.__streamed.push(stream.textContent);
  }).observe(stream, {childList: true, characterData: true, subtree: true, attributes: true});
}"""

HOST_PATH = "/test-shop/"  # not a route of the service: the test's own page, served by interception


def host_page(*, src: str = "/widget.js", token: str | None = None, token_provider: str | None = None,
              server: str | None = None, lang: str | None = None) -> str:
    """A plain page embedding the widget with one script tag."""
    attrs = [f'{name}="{html.escape(value)}"' for name, value in
             (("data-token", token), ("data-token-provider", token_provider), ("data-server", server),
              ("data-lang", lang)) if value]
    return ("<!doctype html><html><head><meta charset='utf-8'><title>Test shop</title>"
            "<meta name='viewport' content='width=device-width, initial-scale=1'>"
            f"<script src='{html.escape(src)}' {' '.join(attrs)} async></script></head>"
            "<body><h1>Test shop</h1><p>Products...</p></body></html>")


async def open_host(page: Page, base_url: str, *, origin: str | None = None, **kwargs: object) -> None:
    """Open a host page (its HTML from the test, the widget from the service at `base_url`) on the
    service's own origin, or on `origin` (another site: the script tag names the service)."""
    origin = origin or base_url
    body = host_page(src=f"{base_url}/widget.js" if origin != base_url else "/widget.js", **kwargs)  # type: ignore[arg-type]
    service = "'self'" if origin == base_url else f"{base_url} {base_url.replace('http', 'ws', 1)}"
    headers = {"Content-Type": "text/html; charset=utf-8",
               # as strict as the service's own pages (docs/web.md's advice for a site's CSP): the widget
               # must work without inline script or style
               "Content-Security-Policy": f"default-src 'self'; script-src 'self' {service}; style-src 'self'; "
                                          f"connect-src 'self' {service}"}

    async def fulfil(route: Route) -> None:
        await route.fulfill(status=200, headers=headers, body=body)

    await page.route(origin + HOST_PATH, fulfil)
    await page.goto(origin + HOST_PATH)


class Widget:
    """The widget in one page."""

    def __init__(self, page: Page):
        self.page = page
        self.launcher = page.get_by_test_id("widget-launcher")
        self.input = page.get_by_test_id("widget-input")
        self.send_button = page.get_by_test_id("widget-send")
        self.status = page.get_by_test_id("widget-status")
        self.stream = page.get_by_test_id("widget-ai-stream")
        self.handoff = page.get_by_test_id("widget-handoff")
        self.csat = page.get_by_test_id("widget-csat")
        self.messages = page.get_by_test_id("widget-message")

    async def open(self) -> None:
        """Open the panel and wait until the widget is online."""
        await self.launcher.click()
        await expect(self.input).to_be_visible()
        await self.online()

    async def online(self) -> None:
        await expect(self.status).to_have_attribute("data-state", "online")

    async def write(self, text: str) -> None:
        """Type a message and press Enter."""
        await self.input.fill(text)
        await self.input.press("Enter")

    def message(self, seq: int) -> Locator:
        """The message of that seq."""
        return self.page.locator(f"[data-testid=widget-message][data-seq='{seq}']")

    def by_text(self, text: str, sender_type: str | None = None) -> Locator:
        """Stored messages holding the text (of that sender type)."""
        where = f"[data-sender-type='{sender_type}']" if sender_type else ""
        return self.page.locator(f"[data-testid=widget-message]{where}").filter(has_text=text)

    async def seqs(self) -> list[int]:
        """The data-seq of every shown message, in page order."""
        values = await self.page.locator("[data-testid=widget-message]").evaluate_all(
            "nodes => nodes.map(n => n.getAttribute('data-seq'))")
        return [int(v) for v in values]

    async def storage(self) -> dict[str, object]:
        """The widget's localStorage record."""
        return await self.page.evaluate(  # type: ignore[no-any-return]
            "() => { for (const k of Object.keys(localStorage)) if (k.startsWith('chat-api-widget:'))"
            " return JSON.parse(localStorage.getItem(k)); return {}; }")
