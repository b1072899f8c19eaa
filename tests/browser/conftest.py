"""Browser tests: a real `chat-api serve` subprocess on the embedded default and Debian's chromium
driven by Playwright (async API, launched by path: no browser download).

- `service`: one service for the whole session (temp CHAT_DATA_DIR, a free port); tests keep apart
  by using their own customer and agent ids. `make_service()`: a private one a test may restart on
  the same port and data dir (`restart()`), for the reconnect tests.
- `browser`: one headless chromium for the session; `page` / `new_page()`: fresh contexts per test
  (their own localStorage), closed after it. Every page's console errors and uncaught exceptions are
  collected in `page_errors`, and a native dialog fails the test (the pages never open one).

Every test here runs on the session's event loop, since the browser outlives a test.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from playwright.async_api import Browser, BrowserContext, Dialog, Page, async_playwright, expect

from chat.auth import issue_token
from tests.faults.servers import Process, free_port

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
START_TIMEOUT_S = 60.0
UI_TIMEOUT_MS = 15000  # a UI step waits at most this long for what it expects (a restart included)
expect.set_options(timeout=UI_TIMEOUT_MS)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Run every async test of this folder on the session loop (the browser fixture lives there)."""
    here = Path(__file__).parent
    session_loop = pytest.mark.asyncio(loop_scope="session")
    for item in items:
        if Path(str(item.fspath)).is_relative_to(here) and pytest_asyncio.is_async_test(item):
            item.add_marker(session_loop, append=False)


class Service:
    """`python -m chat serve` on the embedded default, on its own port and data dir."""

    def __init__(self, workdir: Path, env: dict[str, str] | None = None):
        self.dir = workdir
        self.data_dir = workdir / "data"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        child_env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "DATABASE_", "JWT_"))}
        child_env.update({"CHAT_DATA_DIR": str(self.data_dir), "LOG_FORMAT": "text", "PYTHONUNBUFFERED": "1",
                          "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])})
        child_env.update(env or {})
        argv = [sys.executable, "-m", "chat", "--env-file", os.devnull, "serve",
                "--host", "127.0.0.1", "--port", str(self.port)]
        # ready when aiohttp prints its "Running on" line: the socket listens from then on
        self.process = Process("chat-api", argv, workdir / "service.log", f"Running on {self.url}", env=child_env)

    def start(self) -> None:
        """Start and wait until it listens."""
        self.process.start(START_TIMEOUT_S)

    def stop(self) -> None:
        """SIGTERM (the service drains and closes its sockets with 1001) and wait."""
        self.process.terminate()

    def restart(self) -> None:
        """Stop, then start again on the same port and data dir (SQLite keeps everything)."""
        self.stop()
        self.start()

    def token(self, sub: str, role: str = "customer", **claims: object) -> str:
        """A token signed with the embedded mode's secret (kept in the data dir)."""
        secret = (self.data_dir / "jwt-secret").read_text().strip()
        return issue_token(secret, sub, role, **claims)  # type: ignore[arg-type]

    def log(self) -> str:
        """The service's output so far (for failure messages)."""
        return self.process.tail(80)


@pytest.fixture(scope="session")
def chromium_path() -> str:
    """Debian's chromium; `./dev test` installs it when missing."""
    found = shutil.which(CHROMIUM) or (CHROMIUM if Path(CHROMIUM).exists() else None)
    if not found:
        pytest.fail(f"no chromium at {CHROMIUM}: `apt-get install chromium` (./dev test does it)")
    return found


@pytest.fixture(scope="session")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """One embedded service for the session."""
    svc = Service(tmp_path_factory.mktemp("service"))
    svc.start()
    yield svc
    svc.stop()


@pytest.fixture
def make_service(tmp_path: Path) -> Iterator[Callable[..., Service]]:
    """Private services (started), stopped after the test."""
    made: list[Service] = []

    def make(**env: str) -> Service:
        svc = Service(tmp_path / f"service-{len(made)}", env)
        made.append(svc)
        svc.start()
        return svc

    yield make
    for svc in made:
        svc.process.kill()


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def browser(chromium_path: str) -> AsyncIterator[Browser]:
    """Headless chromium for the whole session."""
    async with async_playwright() as playwright:
        # Local Network Access: a page the test serves by interception has no address, so chromium counts
        # it as public and blocks its WebSocket to 127.0.0.1; a real site and a real chat server are
        # both public, so that check is not what these tests are about
        launched = await playwright.chromium.launch(executable_path=chromium_path, headless=True,
                                                    args=["--disable-features=LocalNetworkAccessChecks"])
        yield launched
        await launched.close()


class PageErrors(list[str]):
    """Console errors, uncaught exceptions and dialogs of the test's pages."""


@pytest.fixture
def page_errors() -> PageErrors:
    """What went wrong in the pages, as text (a test asserts it is empty where it matters)."""
    return PageErrors()


# what chromium logs by itself for failures the pages handle: a refused reconnect while a test has the
# service stopped, an HTTP error answer (a wrong password's 401); a page's own console.error still counts
IGNORED_CONSOLE = re.compile(r"WebSocket connection to .* failed|Failed to load resource|ERR_CONNECTION_REFUSED")


@pytest_asyncio.fixture(loop_scope="session")
async def new_page(browser: Browser, page_errors: PageErrors) -> AsyncIterator[Callable[..., object]]:
    """new_page(locale="en-US") -> a Page in a fresh context (its own storage); closed after the test."""
    contexts: list[BrowserContext] = []

    async def make(locale: str = "en-US", **options: object) -> Page:
        context = await browser.new_context(locale=locale, **options)  # type: ignore[arg-type]
        context.set_default_timeout(UI_TIMEOUT_MS)
        contexts.append(context)
        page = await context.new_page()

        def on_console(message: object) -> None:
            text = message.text  # type: ignore[attr-defined]
            if message.type == "error" and not IGNORED_CONSOLE.search(text):  # type: ignore[attr-defined]
                page_errors.append(f"console: {text}")

        async def on_dialog(dialog: Dialog) -> None:
            page_errors.append(f"dialog {dialog.type}: {dialog.message}")
            await dialog.dismiss()

        page.on("console", on_console)
        page.on("pageerror", lambda exc: page_errors.append(f"pageerror: {exc}"))
        page.on("dialog", on_dialog)
        return page

    yield make
    for context in contexts:
        await context.close()


@pytest_asyncio.fixture(loop_scope="session")
async def page(new_page: Callable[..., object]) -> Page:
    """A fresh page (English)."""
    return await new_page()  # type: ignore[no-any-return,misc]


def unique(prefix: str) -> str:
    """An id no other test uses (tests share the session's service)."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


async def messages_of(service: Service, conversation_id: str) -> list[dict[str, Any]]:
    """Every stored message of the conversation (REST, as an admin)."""
    headers = {"Authorization": f"Bearer {service.token(unique('admin'), 'admin')}"}
    async with aiohttp.ClientSession() as http, http.get(
            f"{service.url}/api/v1/conversations/{conversation_id}/messages", headers=headers) as response:
        assert response.status == 200, await response.text()
        return (await response.json())["items"]  # type: ignore[no-any-return]
