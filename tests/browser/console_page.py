"""Driving the agent console (`/console/`) in a page: staff accounts made over REST, sign-in with a
password, and locators for PROTOCOL 9's console data-testids."""

from __future__ import annotations

import secrets
from typing import Any

import aiohttp
from playwright.async_api import Locator, Page, expect

from tests.browser.conftest import Service, unique


async def rest(service: Service, method: str, path: str, *, token: str | None = None,
               body: object = None, expect_status: int | None = None) -> Any:
    """A REST call as an admin (a minted admin token unless another is given); the JSON reply."""
    token = token or service.token(unique("admin"), "admin")
    async with aiohttp.ClientSession() as http, http.request(
            method, service.url + path, json=body, headers={"Authorization": f"Bearer {token}"}) as response:
        data = await response.json() if response.status != 204 else None
        if expect_status is not None:
            assert response.status == expect_status, (response.status, data)
        else:
            assert response.status < 300, (response.status, data)
        return data


async def staff(service: Service, role: str = "agent", prefix: str | None = None, **fields: object) -> tuple[str, str]:
    """A new staff account with a password (POST /api/v1/users): (user id, password)."""
    user_id = unique(prefix or role)
    password = secrets.token_urlsafe(12)
    await rest(service, "POST", "/api/v1/users",
               body={"id": user_id, "role": role, "name": user_id, "password": password, **fields},
               expect_status=201)
    return user_id, password


class Console:
    """The console in one page."""

    def __init__(self, page: Page, base_url: str):
        self.page = page
        self.base_url = base_url
        self.user = page.get_by_test_id("login-user")
        self.password = page.get_by_test_id("login-password")
        self.submit = page.get_by_test_id("login-submit")
        self.login_error = page.get_by_test_id("login-error")
        self.presence = page.get_by_test_id("presence-toggle")
        self.banner = page.get_by_test_id("connection-banner")
        self.input = page.get_by_test_id("message-input")
        self.send_button = page.get_by_test_id("send-button")
        self.note_toggle = page.get_by_test_id("note-toggle")
        self.claim_button = page.get_by_test_id("claim-button")
        self.release_button = page.get_by_test_id("release-button")
        self.close_button = page.get_by_test_id("close-button")
        self.transfer_button = page.get_by_test_id("transfer-button")
        self.confirm_button = page.get_by_test_id("confirm-button")
        self.messages = page.get_by_test_id("message")
        self.stream = page.get_by_test_id("ai-stream")
        self.state_badge = page.get_by_test_id("conversation-state")

    async def open(self) -> None:
        """Load /console/."""
        await self.page.goto(self.base_url + "/console/")

    async def login(self, user_id: str, password: str) -> None:
        """Sign in with the form and wait for the workspace."""
        await self.open()
        await self.user.fill(user_id)
        await self.password.fill(password)
        await self.submit.click()
        await expect(self.presence).to_be_visible()

    async def go(self, status: str) -> None:
        """Set presence to online / away with the toggle."""
        if await self.presence.get_attribute("data-status") != status:
            await self.presence.click()
        await expect(self.presence).to_have_attribute("data-status", status)

    def queue_item(self, conversation_id: str) -> Locator:
        return self.page.locator(f"[data-testid=queue-item][data-conversation-id='{conversation_id}']")

    def item(self, conversation_id: str) -> Locator:
        """The conversation's entry in the shown list (mine / all)."""
        return self.page.locator(f"[data-testid=conversation-item][data-conversation-id='{conversation_id}']")

    def message(self, seq: int) -> Locator:
        return self.page.locator(f"[data-testid=message][data-seq='{seq}']")

    def by_text(self, text: str, sender_type: str | None = None) -> Locator:
        """Stored messages holding the text (of that sender type)."""
        where = f"[data-sender-type='{sender_type}']" if sender_type else ""
        return self.page.locator(f"[data-testid=message]{where}").filter(has_text=text)

    async def write(self, text: str) -> None:
        """Type into the composer and press Enter."""
        await self.input.fill(text)
        await self.input.press("Enter")

    async def confirm(self) -> None:
        """Confirm the in-page dialog."""
        await self.confirm_button.click()
        await expect(self.confirm_button).to_have_count(0)

    async def seqs(self) -> list[int]:
        """The data-seq of every shown message, in page order."""
        values = await self.messages.evaluate_all("nodes => nodes.map(n => n.getAttribute('data-seq'))")
        return [int(v) for v in values]
