"""Screenshots of the customer widget and the agent console, for docs/img/ (shown in the README,
docs/web.md and docs/console.md).

Starts `chat-api serve` on the embedded default (a temporary data dir, a free port, manual routing
so the queue stays visible) and drives Debian's chromium through Playwright (the `[test]` extra;
`apt-get install chromium fonts-noto-cjk`):
- the widget on /demo/: a customer asks, the (echo) AI answers, a handoff, an agent joins and replies;
- the console: staff accounts with passwords and a few customer conversations made over the REST API
  and the WebSocket, then sign-in through the console's form, a conversation, a transfer, statistics.

    python scripts/screenshots.py [--only widget|console] [--out docs/img] [--chromium /usr/bin/chromium]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from itertools import count
from pathlib import Path
from typing import Any

import aiohttp
from playwright.async_api import Browser, Page, async_playwright, expect

from chat.auth import issue_token

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "screenshots-only-password"


@contextmanager
def service() -> Iterator[tuple[str, str]]:
    """`chat-api serve` on the embedded default with manual routing: its base URL and JWT secret."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with tempfile.TemporaryDirectory(prefix="chat-screenshots-") as tmp:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "DATABASE_", "JWT_"))}
        env.update({"CHAT_DATA_DIR": tmp, "LOG_FORMAT": "text", "PYTHONUNBUFFERED": "1", "ROUTING": "manual",
                    "PYTHONPATH": os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])})
        argv = [sys.executable, "-m", "chat", "--env-file", os.devnull, "serve", "--host", "127.0.0.1",
                "--port", str(port)]
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True)
        try:
            assert proc.stdout is not None
            for line in proc.stdout:  # the service prints this line once it listens
                if f"Running on http://127.0.0.1:{port}" in line:
                    break
            else:
                raise SystemExit(f"chat-api serve exited with {proc.wait()}")
            yield f"http://127.0.0.1:{port}", (Path(tmp) / "jwt-secret").read_text().strip()
        finally:
            proc.terminate()
            proc.wait(30)


class Peer:
    """A WebSocket client (a customer or an agent): commands with ids, the replies awaited."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse):
        self.ws = ws
        self.ids = count(1)

    async def ok(self, type_: str, **fields: Any) -> dict[str, Any]:
        frame_id = next(self.ids)
        await self.ws.send_json({"type": type_, "id": frame_id, **fields})
        while True:
            frame = json.loads((await self.ws.receive(timeout=10)).data)
            if frame.get("id") == frame_id:
                if frame["type"] != "result":
                    raise RuntimeError(f"{type_}: {frame}")
                return frame["data"]  # type: ignore[no-any-return]


class Seeder:
    """Accounts, labels and conversations, made as a real client would."""

    def __init__(self, http: aiohttp.ClientSession, base: str, secret: str):
        self.http, self.base, self.secret = http, base, secret
        self.admin = issue_token(secret, "admin", "admin", name="Admin")
        self.peers: list[aiohttp.ClientWebSocketResponse] = []

    async def rest(self, method: str, path: str, body: object) -> Any:
        async with self.http.request(method, self.base + path, json=body,
                                     headers={"Authorization": f"Bearer {self.admin}"}) as response:
            if response.status >= 300:
                raise RuntimeError(f"{method} {path}: {response.status} {await response.text()}")
            return await response.json()

    async def peer(self, sub: str, role: str, name: str | None = None) -> Peer:
        ws = await self.http.ws_connect(self.base.replace("http", "ws") + "/ws")
        self.peers.append(ws)
        peer = Peer(ws)
        await peer.ok("auth", token=issue_token(self.secret, sub, role, name=name or sub))
        return peer

    async def staff(self, user_id: str, name: str, role: str = "agent") -> None:
        await self.rest("POST", "/api/v1/users", {"id": user_id, "role": role, "name": name, "password": PASSWORD})

    async def waiting(self, customer: str, texts: list[str], metadata: dict[str, Any]) -> tuple[Peer, str]:
        """A customer who asked for a human and wrote: (their socket, the conversation id)."""
        peer = await self.peer(customer, "customer")
        cid = (await peer.ok("conversation.start", metadata=metadata))["conversation"]["id"]
        await peer.ok("handoff.request", conversation_id=cid)  # before writing: no AI reply to show
        for n, text in enumerate(texts):
            await peer.ok("message.send", conversation_id=cid, client_msg_id=f"m{n}", content=text)
        return peer, cid

    async def close(self) -> None:
        for ws in self.peers:
            await ws.close()


async def seed(seeder: Seeder, lang: str, texts: dict[str, Any]) -> str:
    """The agent's conversation (with an earlier one, labels and a note), two waiting in the queue."""
    agent_id = texts["agent"]
    await seeder.staff(agent_id, texts["agent_name"])
    for title, color in texts["labels"]:
        await seeder.rest("POST", "/api/v1/labels", {"title": title, "color": color})
    customer = texts["customer"]
    old_peer, old = await seeder.waiting(customer, [texts["earlier"]], texts["metadata"])
    await old_peer.ok("conversation.close", conversation_id=old)
    peer, cid = await seeder.waiting(customer, texts["customer_says"], texts["metadata"])
    agent = await seeder.peer(agent_id, "agent", texts["agent_name"])
    await agent.ok("conversation.claim", conversation_id=cid)
    await agent.ok("message.send", conversation_id=cid, client_msg_id=f"{lang}-a1", content=texts["agent_says"])
    await agent.ok("message.send", conversation_id=cid, client_msg_id=f"{lang}-n1", content=texts["note"],
                   private=True)
    await peer.ok("message.send", conversation_id=cid, client_msg_id="m9", content=texts["customer_again"])
    await seeder.rest("PUT", f"/api/v1/conversations/{cid}/labels", {"labels": [texts["labels"][0][0]]})
    for n, (who, says) in enumerate(texts["queue"]):
        await seeder.waiting(f"{who}-{lang}", [says], {"page": f"/shop/{n}"})
    return cid


async def sign_in(browser: Browser, base: str, user: str, options: dict[str, Any]) -> Page:
    context = await browser.new_context(**options)
    context.set_default_timeout(15000)
    page = await context.new_page()
    await page.goto(base + "/console/")
    await page.get_by_test_id("login-user").fill(user)
    await page.get_by_test_id("login-password").fill(PASSWORD)
    await page.get_by_test_id("login-submit").click()
    await expect(page.get_by_test_id("presence-toggle")).to_be_visible()
    return page


async def console_scenes(browser: Browser, base: str, seeder: Seeder, out: Path) -> list[Path]:
    """Sign-in, conversation (en, zh), transfer dialog, statistics."""
    written: list[Path] = []

    async def shot(page: Page, name: str) -> None:
        await page.screenshot(path=out / name)
        written.append(out / name)

    for lang, options, texts in CONSOLE_SCENES:
        cid = await seed(seeder, lang, texts)
        login = await (await browser.new_context(**options)).new_page()
        await login.goto(base + "/console/")
        await expect(login.get_by_test_id("login-submit")).to_be_visible()
        await shot(login, f"console-login-{lang}.png")
        page = await sign_in(browser, base, texts["agent"], options)
        await page.get_by_test_id("presence-toggle").click()
        await expect(page.get_by_test_id("presence-toggle")).to_have_attribute("data-status", "online")
        await page.locator(f"[data-testid=conversation-item][data-conversation-id='{cid}']").click()
        await expect(page.get_by_test_id("message").filter(has_text=texts["customer_again"])).to_be_visible()
        await expect(page.get_by_test_id("history-item")).to_have_count(1)
        await page.get_by_test_id("message-input").fill(texts["draft"])
        await shot(page, f"console-conversation-{lang}.png")
        if lang == "en":
            await seeder.staff("maria", "Maria")
            for team in ("Tea experts", "Billing"):
                await seeder.rest("POST", "/api/v1/teams", {"name": team})
            other = await sign_in(browser, base, "maria", options)
            await other.get_by_test_id("presence-toggle").click()
            await page.get_by_test_id("transfer-button").click()
            await page.locator("[data-testid=transfer-target][data-agent-id=maria]").click()
            await shot(page, "console-transfer-en.png")
    await seeder.staff("ada", "Ada", role="admin")
    admin = await sign_in(browser, base, "ada", CONSOLE_SCENES[0][1])
    await admin.get_by_test_id("nav-stats").click()
    await expect(admin.locator("svg.chart")).to_have_count(3)
    await shot(admin, "console-stats-en.png")
    return written


CONSOLE_SCENES: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
    ("en", {"locale": "en-US", "viewport": {"width": 1360, "height": 820}}, {
        "agent": "lina", "agent_name": "Lina", "customer": "alice",
        "metadata": {"name": "Alice Chen", "email": "alice@example.com", "plan": "Gold", "page": "/checkout"},
        "labels": [("VIP", "#b45309"), ("shipping", "#2563eb"), ("refund", "#be123c")],
        "earlier": "Do you ship to Hangzhou?",
        "customer_says": ["Hi, my order #1042 hasn't arrived yet.", "It was due on Monday."],
        "agent_says": "Hello Alice, I'm Lina. Let me look up order #1042 for you.",
        "note": "Second late parcel this month: offer free shipping on the next order.",
        "customer_again": "Thank you! The tracking page says 'in transit' since Friday.",
        "draft": "I found it: the parcel is at the Shanghai depot and will be delivered tomorrow.",
        "queue": [("ben", "Can I change the delivery address of my order?"),
                  ("chloe", "Do you have Longjing tea in 250 g tins?")]}),
    ("zh", {"locale": "zh-CN", "viewport": {"width": 1360, "height": 820}}, {
        "agent": "wang", "agent_name": "王芳", "customer": "zhang-wei",
        "metadata": {"name": "张伟", "电话": "138-0000-0000", "会员": "金卡", "页面": "/checkout"},
        "labels": [("重要客户", "#b45309"), ("物流", "#2563eb")],
        "earlier": "可以寄到杭州吗？",
        "customer_says": ["你好，我的订单 1042 还没到。", "本来周一应该送到的。"],
        "agent_says": "张先生您好，我是客服王芳，我来帮您查一下订单 1042。",
        "note": "本月第二次延迟，下次订单免运费。",
        "customer_again": "谢谢！物流页面从周五起一直显示“运输中”。",
        "draft": "查到了：包裹在上海中转站，明天送达。",
        "queue": [("li-na", "可以修改收货地址吗？"), ("chen-jie", "龙井茶有 250 克罐装的吗？")]}),
]


async def conversation_id(page: Page) -> str:
    """The widget's conversation, from its localStorage record."""
    return await page.evaluate(  # type: ignore[no-any-return]
        "() => { for (const k of Object.keys(localStorage)) if (k.startsWith('chat-api-widget:'))"
        " return JSON.parse(localStorage.getItem(k)).conversation_id; }")


async def customer_writes(page: Page, text: str, seq: int) -> None:
    """Type into the widget, press Enter, wait for the stored message of that seq."""
    await page.get_by_test_id("widget-input").fill(text)
    await page.get_by_test_id("widget-input").press("Enter")
    await expect(page.locator(f"[data-testid=widget-message][data-seq='{seq}']")).to_be_visible()


async def widget_scene(page: Page, base: str, secret: str, texts: dict[str, str], out: Path) -> None:
    """The demo page; a question answered by the (echo) AI; a handoff; an agent joins and replies."""
    await page.goto(base + "/demo/")
    await page.get_by_test_id("widget-launcher").click()
    await expect(page.get_by_test_id("widget-status")).to_have_attribute("data-state", "online")
    await customer_writes(page, texts["question"], 1)
    await expect(page.locator("[data-testid=widget-message][data-seq='2']")).to_be_visible()  # the AI's reply
    await page.get_by_test_id("widget-human").click()
    await expect(page.get_by_test_id("widget-handoff")).to_be_visible()
    await page.screenshot(path=out / texts["handoff_png"])
    cid = await conversation_id(page)
    agent_id = texts["agent"]
    async with aiohttp.ClientSession() as http, http.ws_connect(base.replace("http", "ws") + "/ws") as ws:
        agent = Peer(ws)
        await agent.ok("auth", token=issue_token(secret, agent_id, "agent", name=agent_id))
        await agent.ok("conversation.claim", conversation_id=cid)
        await agent.ok("message.send", conversation_id=cid, client_msg_id="s1", content=texts["answer"])
        await expect(page.get_by_text(texts["answer"])).to_be_visible()
        await ws.send_json({"type": "typing", "conversation_id": cid, "on": True})
        await expect(page.get_by_test_id("widget-typing")).to_be_visible()
        await page.screenshot(path=out / texts["agent_png"])


WIDGET_SCENES = [
    ({"locale": "en-US", "viewport": {"width": 1280, "height": 800}}, {
        "question": "Do you ship Longjing tea to Shanghai?", "agent": "Lina",
        "answer": "Yes! Orders placed before 3 pm ship the same day; Shanghai is usually next-day delivery.",
        "handoff_png": "widget-handoff-en.png", "agent_png": "widget-agent-en.png"}),
    ({"locale": "zh-CN", "viewport": {"width": 390, "height": 780}, "device_scale_factor": 2, "is_mobile": True,
      "has_touch": True}, {
        "question": "龙井茶可以寄到上海吗？", "agent": "小王",
        "answer": "可以的！下午三点前下单当天发货，上海一般次日送达。",
        "handoff_png": "widget-handoff-zh-mobile.png", "agent_png": "widget-agent-zh-mobile.png"}),
]


async def main_async(out: Path, chromium: str, only: str | None = None) -> list[Path]:
    """Every scene's PNGs (the widget's, the console's, or both), written into `out`."""
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    with service() as (base, secret):
        async with aiohttp.ClientSession() as http, async_playwright() as playwright:
            browser = await playwright.chromium.launch(executable_path=chromium, headless=True)
            seeder = Seeder(http, base, secret)
            try:
                if only in (None, "widget"):
                    for options, texts in WIDGET_SCENES:
                        context = await browser.new_context(**options)  # type: ignore[arg-type]
                        context.set_default_timeout(15000)
                        await widget_scene(await context.new_page(), base, secret, texts, out)
                        await context.close()
                        written += [out / texts["handoff_png"], out / texts["agent_png"]]
                if only in (None, "console"):
                    written += await console_scenes(browser, base, seeder, out)
            finally:
                await browser.close()
                await seeder.close()
    return written


def main(argv: list[str] | None = None) -> int:
    """Write the screenshots; print their paths."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--only", choices=("widget", "console"), help="one page's screenshots (default: both)")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "img", help="folder of the PNGs (docs/img)")
    parser.add_argument("--chromium", default="/usr/bin/chromium", help="the chromium binary (Debian's)")
    args = parser.parse_args(argv)
    for path in asyncio.run(main_async(args.out, args.chromium, args.only)):
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
