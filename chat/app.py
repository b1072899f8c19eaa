"""The application factory: every resource has one cleanup_ctx generator."""

from __future__ import annotations

import logging
from typing import AsyncIterator

from aiohttp import web

from chat import keys
from chat.api import health
from chat.redis_client import create_redis
from chat.settings import Settings
from chat.store import Store, connect
from states.repository import ConversationRepository

log = logging.getLogger(__name__)


async def _redis_ctx(app: web.Application) -> AsyncIterator[None]:
    client = create_redis(app[keys.SETTINGS])
    app[keys.REDIS] = client
    yield
    await client.aclose()


async def _store_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[keys.SETTINGS]
    db = await connect(settings.database, pool_size=settings.db_pool_size)
    store = Store(db)
    await store.upgrade()
    app[keys.STORE] = store
    yield
    await db.close()


async def _conversations_ctx(app: web.Application) -> AsyncIterator[None]:
    app[keys.CONVERSATIONS] = ConversationRepository(app[keys.REDIS], app[keys.STORE])
    yield


def create_app(settings: Settings) -> web.Application:
    """Build the service; tests build it with the same factory."""
    app = web.Application(client_max_size=1024 * 1024)
    app[keys.SETTINGS] = settings
    app.cleanup_ctx.extend([_redis_ctx, _store_ctx, _conversations_ctx])
    health.register(app)
    return app
