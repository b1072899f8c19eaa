"""An app on the real Redis (and SQLite or MariaDB), with tokens and a websocket helper."""

from __future__ import annotations

import pytest

from chat import keys
from chat.app import create_app
from chat.auth import issue_token
from tests.ws.support import WS, ScriptedProvider


class Harness:
    """One running app and ways to talk to it."""

    def __init__(self, client, app, provider):
        self.client = client
        self.app = app
        self.provider = provider
        self.settings = app[keys.SETTINGS]

    @property
    def ops(self):
        return self.app[keys.OPERATIONS]

    @property
    def repository(self):
        return self.app[keys.CONVERSATIONS]

    def token(self, sub: str, role: str = "customer", **kw) -> str:
        return issue_token(self.settings.jwt_secret_key, sub, role, **kw)

    async def connect(self, sub: str | None = None, role: str = "customer", **kw) -> WS:
        """A socket authenticated by URL token (or not at all when sub is None)."""
        url = "/ws" if sub is None else f"/ws?token={self.token(sub, role, **kw)}"
        return WS(await self.client.ws_connect(url, autoping=True))

    async def drain_ai(self) -> None:
        await self.app[keys.AI_RUNNER].drain()


@pytest.fixture
def provider():
    return ScriptedProvider()


@pytest.fixture
def harness_factory(aiohttp_client, make_settings, provider):
    async def make(database_url: str | None = None, provider_=provider, **overrides) -> Harness:
        """provider_=None builds the provider the settings name."""
        app = create_app(make_settings(database_url=database_url, **overrides), ai_provider=provider_)
        client = await aiohttp_client(app)
        await app[keys.BUS].subscribed.wait()
        return Harness(client, app, app[keys.AI_PROVIDER])

    return make


@pytest.fixture
async def harness(harness_factory) -> Harness:
    return await harness_factory()
