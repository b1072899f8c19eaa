"""Fixtures of the REST tests: an app on the real servers with a client (MariaDB and SQLite)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from chat import keys
from chat.app import create_app
from chat.auth import issue_token
from tests.api.support import LISTER, Api

Get = Callable[..., Awaitable[tuple[int, Any]]]


@pytest.fixture
async def api(aiohttp_client, make_settings, database_url) -> Api:
    """An app and a client that calls it as any identity."""
    app = create_app(make_settings(database_url=database_url))
    return Api(app, await aiohttp_client(app))


@pytest.fixture
async def lister(aiohttp_client, make_settings, database_url) -> tuple[Any, Any, Get]:
    """(app, client, get): `get(path, **params)` calls as the admin LISTER."""
    app = create_app(make_settings(database_url=database_url))
    client = await aiohttp_client(app)
    headers = {"Authorization": "Bearer " + issue_token(app[keys.SETTINGS].jwt_secret_key, LISTER.user_id, "admin")}

    async def get(path: str, **params: Any) -> tuple[int, Any]:
        resp = await client.get(path, params=params, headers=headers)
        return resp.status, await resp.json()

    return app, client, get
