"""Every web.AppKey of the application, in one place."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Awaitable, Callable

from aiohttp import web

from chat.settings import Settings

if TYPE_CHECKING:
    from chat.ai_turn import AIRunner
    from chat.bus import Bus
    from chat.hub import Hub
    from chat.service import ChatService
    from chat.store import Store
    from chat.ws.registry import Registry
    from states.repository import ConversationRepository

SETTINGS = web.AppKey("settings", Settings)
INSTANCE_ID = web.AppKey("instance_id", str)  # this process's name in CLIENT LIST and logs
REDIS = web.AppKey("redis", Any)  # redis.asyncio.Redis (or the embedded fakeredis)
STORE = web.AppKey("store", "Store")
CONVERSATIONS = web.AppKey("conversations", "ConversationRepository")
HUB = web.AppKey("hub", "Hub")
BUS = web.AppKey("bus", "Bus")
SERVICE = web.AppKey("service", "ChatService")
HTTP_SESSION = web.AppKey("http_session", Any)  # aiohttp.ClientSession for the AI providers
AI_PROVIDER = web.AppKey("ai_provider", Any)
AI_RUNNER = web.AppKey("ai_runner", "AIRunner")
WS_REGISTRY = web.AppKey("ws_registry", "Registry")
PRESENCE = web.AppKey("presence", Any)  # chat.presence.Presence
ROUTER = web.AppKey("router", Any)  # chat.routing.Router
ON_AUTHENTICATED = web.AppKey("on_authenticated", Callable[[Any], Awaitable[None]])  # presence hooks (agents)
ON_CLOSED = web.AppKey("on_closed", Callable[[Any], Awaitable[None]])
