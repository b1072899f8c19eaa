"""A page's WebSocket through a Playwright route, for tests that lose frames or the connection."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable
from typing import Any

from playwright.async_api import Page, WebSocketRoute

from tests.browser.conftest import UI_TIMEOUT_MS


class Wire:
    """The page's WebSocket through a Playwright route: every frame is forwarded and recorded,
    except what `drop` says to lose; `cut()` closes the page's side (as a network drop would)."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []  # page -> service
        self.drop: Callable[[dict[str, Any]], bool] = lambda frame: False
        self.routes: list[WebSocketRoute] = []
        self._recorded = asyncio.Condition()

    async def install(self, page: Page) -> None:
        await page.route_web_socket(re.compile(r".*/ws$"), self._route)

    def _route(self, ws: WebSocketRoute) -> None:
        server = ws.connect_to_server()
        self.routes.append(ws)

        async def to_server(message: str | bytes) -> None:
            server.send(message)
            async with self._recorded:
                self.sent.append(json.loads(message))
                self._recorded.notify_all()

        def to_page(message: str | bytes) -> None:
            if not self.drop(json.loads(message)):
                ws.send(message)

        ws.on_message(to_server)
        server.on_message(to_page)

    async def sent_frames(self, predicate: Callable[[dict[str, Any]], bool], count: int) -> list[dict[str, Any]]:
        """The frames the page sent that match, once there are `count` of them."""
        def matching() -> list[dict[str, Any]]:
            return [frame for frame in self.sent if predicate(frame)]

        async with self._recorded:
            await asyncio.wait_for(self._recorded.wait_for(lambda: len(matching()) >= count), UI_TIMEOUT_MS / 1000)
        return matching()

    async def cut(self) -> None:
        await self.routes[-1].close(code=4000, reason="test: connection lost")
