"""Every web.AppKey of the application, in one place."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web

from chat.settings import Settings

if TYPE_CHECKING:

    pass

SETTINGS = web.AppKey("settings", Settings)
INSTANCE_ID = web.AppKey("instance_id", str)  # this process's name in CLIENT LIST and logs
REDIS = web.AppKey("redis", Any)  # redis.asyncio.Redis (or the embedded fakeredis)
STORE = web.AppKey("store", "Store")
CONVERSATIONS = web.AppKey("conversations", "ConversationRepository")
EVENTS = web.AppKey("events", "Events")
OPERATIONS = web.AppKey("operations", "Operations")
HUB = web.AppKey("hub", "Hub")
BUS = web.AppKey("bus", "Bus")
HTTP_SESSION = web.AppKey("http_session", "aiohttp.ClientSession")  # for the AI providers
AI_PROVIDER = web.AppKey("ai_provider", "Provider")
AI_RUNNER = web.AppKey("ai_runner", "AIRunner")
WS_REGISTRY = web.AppKey("ws_registry", "Registry")
PRESENCE = web.AppKey("presence", "Presence")
ROUTER = web.AppKey("router", "Router")
