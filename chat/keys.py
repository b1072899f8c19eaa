"""Every web.AppKey of the application, in one place."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from chat.settings import Settings

if TYPE_CHECKING:
    import aiohttp
    from redis.asyncio import Redis

    from chat.ai import Provider
    from chat.ai_turn import AIRunner
    from chat.bus import Bus
    from chat.conversations import Operations
    from chat.desk import Desk
    from chat.erasure import Eraser
    from chat.events import Events
    from chat.hub import Hub
    from chat.login import Login
    from chat.presence import Presence
    from chat.revocation import AccountGuard, Revocation
    from chat.routing import Router
    from chat.store import Store
    from chat.timers import Timers
    from chat.webhooks import Deliverer
    from chat.ws.registry import Registry
    from chat.ws.session import Services
    from states.repository import ConversationRepository

# the value types are named in the annotations only: the modules that define them import this one
SETTINGS = web.AppKey("settings", Settings)
INSTANCE_ID = web.AppKey("instance_id", str)  # this process's name in CLIENT LIST and logs
REDIS: web.AppKey[Redis] = web.AppKey("redis")  # redis.asyncio.Redis (or the embedded one, or a ServiceRedisCluster)
STORE: web.AppKey[Store] = web.AppKey("store")
CONVERSATIONS: web.AppKey[ConversationRepository] = web.AppKey("conversations")
EVENTS: web.AppKey[Events] = web.AppKey("events")
OPERATIONS: web.AppKey[Operations] = web.AppKey("operations")
HUB: web.AppKey[Hub] = web.AppKey("hub")
BUS: web.AppKey[Bus] = web.AppKey("bus")
HTTP_SESSION: web.AppKey[aiohttp.ClientSession] = web.AppKey("http_session")  # for the AI providers
AI_PROVIDER: web.AppKey[Provider] = web.AppKey("ai_provider")
AI_RUNNER: web.AppKey[AIRunner] = web.AppKey("ai_runner")
WS_REGISTRY: web.AppKey[Registry] = web.AppKey("ws_registry")
WS_SERVICES: web.AppKey[Services] = web.AppKey("ws_services")  # what each socket's phases use
PRESENCE: web.AppKey[Presence] = web.AppKey("presence")
ROUTER: web.AppKey[Router] = web.AppKey("router")
ACCOUNTS: web.AppKey[AccountGuard] = web.AppKey("accounts")  # refuses what `users` no longer admits, closes its sockets
REVOCATION: web.AppKey[Revocation] = web.AppKey("revocation")  # what an account change calls after its commit
LOGIN: web.AppKey[Login] = web.AppKey("login")  # staff login, refresh and logout (chat/login.py)
TIMERS: web.AppKey[Timers] = web.AppKey("timers")  # the state timers (PROTOCOL 4.1)
DESK: web.AppKey[Desk] = web.AppKey("desk")  # the gauges /metrics reads from the roster and the database
WEBHOOKS: web.AppKey[Deliverer] = web.AppKey("webhooks")  # the outbox delivery loop (chat/webhooks.py)
ERASER: web.AppKey[Eraser] = web.AppKey("eraser")  # customer erasure and the retention purge (chat/erasure.py)
