"""Screenshots of the customer widget on the demo page, for docs/img/ (shown in the README and docs/web.md).

Starts `chat-api serve` on the embedded default (a temporary data dir, a free port), opens /demo/ in
Debian's chromium through Playwright (the `[test]` extra; `apt-get install chromium fonts-noto-cjk`),
talks as a customer through the widget and as an agent over the WebSocket, and writes PNGs:

    python scripts/screenshots.py [--out docs/img] [--chromium /usr/bin/chromium]

The agent console's screenshots are taken by its own script (the console's).
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
from playwright.async_api import Page, async_playwright, expect

from chat.auth import issue_token

ROOT = Path(__file__).resolve().parent.parent
START_TIMEOUT_S = 60


@contextmanager
def service() -> Iterator[tuple[str, str]]:
    """`chat-api serve` on the embedded default: its base URL and its JWT secret."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with tempfile.TemporaryDirectory(prefix="chat-screenshots-") as tmp:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "DATABASE_", "JWT_"))}
        env.update({"CHAT_DATA_DIR": tmp, "LOG_FORMAT": "text", "PYTHONUNBUFFERED": "1",
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


class Agent:
    """An agent on the WebSocket: commands with ids, the replies awaited."""

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


async def scene(page: Page, base: str, secret: str, texts: dict[str, str], out: Path) -> None:
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
        agent = Agent(ws)
        await agent.ok("auth", token=issue_token(secret, agent_id, "agent", name=agent_id))
        await agent.ok("conversation.claim", conversation_id=cid)
        await agent.ok("message.send", conversation_id=cid, client_msg_id="s1", content=texts["answer"])
        await expect(page.get_by_text(texts["answer"])).to_be_visible()
        await ws.send_json({"type": "typing", "conversation_id": cid, "on": True})
        await expect(page.get_by_test_id("widget-typing")).to_be_visible()
        await page.screenshot(path=out / texts["agent_png"])


SCENES = [
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


async def main_async(out: Path, chromium: str) -> list[Path]:
    """Every scene's PNGs, written into `out`."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    with service() as (base, secret):
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(executable_path=chromium, headless=True)
            for options, texts in SCENES:
                context = await browser.new_context(**options)  # type: ignore[arg-type]
                context.set_default_timeout(15000)
                await scene(await context.new_page(), base, secret, texts, out)
                await context.close()
                written += [out / texts["handoff_png"], out / texts["agent_png"]]
            await browser.close()
    return written


def main(argv: list[str] | None = None) -> int:
    """Write the widget's screenshots; print their paths."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "img", help="folder of the PNGs (docs/img)")
    parser.add_argument("--chromium", default="/usr/bin/chromium", help="the chromium binary (Debian's)")
    args = parser.parse_args(argv)
    for path in asyncio.run(main_async(args.out, args.chromium)):
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
