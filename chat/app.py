"""The application factory: every resource has one cleanup_ctx generator."""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import AsyncIterator

import aiohttp
from aiohttp import web

from chat import keys
from chat.ai_turn import AIRunner, build_provider
from chat.api import health, routes
from chat.bus import Bus
from chat.hub import Hub
from chat.presence import Presence, run_every
from chat.redis_client import create_redis
from chat.routing import Router
from chat.service import ChatService
from chat.settings import Settings
from chat.store import Store, connect
from chat.ws import transport
from chat.ws.registry import default_registry
from states.repository import ConversationRepository

log = logging.getLogger(__name__)


async def _redis_ctx(app: web.Application) -> AsyncIterator[None]:
    client = create_redis(app[keys.SETTINGS], client_name=f"chat-api-{app[keys.INSTANCE_ID]}")
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


async def _bus_ctx(app: web.Application) -> AsyncIterator[None]:
    hub = Hub()
    bus = Bus(app[keys.REDIS], hub, app[keys.SETTINGS].bus_channel)
    app[keys.HUB] = hub
    app[keys.BUS] = bus
    await bus.start()
    yield
    await bus.stop()


async def _service_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[keys.SETTINGS]
    conversations = ConversationRepository(app[keys.REDIS], app[keys.STORE])
    app[keys.CONVERSATIONS] = conversations
    app[keys.SERVICE] = ChatService(settings, conversations, app[keys.STORE], app[keys.BUS])
    yield


async def _agents_ctx(app: web.Application) -> AsyncIterator[None]:
    """Presence, routing and their background loops (heartbeat, sweeper)."""
    settings = app[keys.SETTINGS]
    service = app[keys.SERVICE]
    presence = Presence(app[keys.REDIS], app[keys.STORE], app[keys.BUS], settings)
    router = Router(service, presence, settings)
    service.presence, service.router = presence, router
    app[keys.PRESENCE], app[keys.ROUTER] = presence, router
    try:
        app[keys.HUB].online_agents.update(await presence.online_teams())
    except Exception as exc:  # Redis down at start: /health says so; presence fills in as agents act
        log.warning("could not load online agents: %s", type(exc).__name__)

    async def opened(conn) -> None:
        if conn.identity.is_agent:
            await service.remember(conn.identity)
            await presence.socket_opened(conn.identity)

    async def closed(conn) -> None:
        if conn.identity.is_agent:
            await presence.socket_closed(conn.identity)

    app[keys.ON_AUTHENTICATED], app[keys.ON_CLOSED] = opened, closed
    loops = [
        asyncio.create_task(run_every(settings.presence_ttl_s / 3, presence.heartbeat, "presence heartbeat")),
        asyncio.create_task(run_every(max(settings.presence_grace_s / 4, 0.05), router.sweep, "presence sweeper")),
    ]
    router.kick()  # conversations may have waited while no instance ran
    yield
    for task in loops:
        task.cancel()
    await asyncio.gather(*loops, return_exceptions=True)
    await router.close()


async def _ai_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[keys.SETTINGS]
    # one pooled connection per streaming reply: room for many concurrent AI turns
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=200, limit_per_host=200))
    provider = app.get(keys.AI_PROVIDER) or build_provider(settings, session)
    app[keys.HTTP_SESSION] = session
    app[keys.AI_PROVIDER] = provider
    runner = AIRunner(app[keys.SERVICE], provider, settings)
    app[keys.AI_RUNNER] = runner
    app[keys.SERVICE].ai = runner
    yield
    await runner.close()
    await session.close()


def create_app(settings: Settings, *, ai_provider=None) -> web.Application:
    """Build the service; tests build it with the same factory (and may pass a provider)."""
    app = web.Application(client_max_size=1024 * 1024)
    app[keys.SETTINGS] = settings
    app[keys.INSTANCE_ID] = uuid.uuid4().hex[:12]
    if ai_provider is not None:
        app[keys.AI_PROVIDER] = ai_provider
    app[keys.WS_REGISTRY] = default_registry()
    app.cleanup_ctx.extend([_redis_ctx, _store_ctx, _bus_ctx, _service_ctx, _agents_ctx, _ai_ctx])
    health.register(app)
    routes.register(app)
    transport.register(app)
    return app
