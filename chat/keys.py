"""Every web.AppKey of the application, in one place."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web

from chat.settings import Settings

if TYPE_CHECKING:
    from chat.store import Store
    from states.repository import ConversationRepository

SETTINGS = web.AppKey("settings", Settings)
REDIS = web.AppKey("redis", Any)  # redis.asyncio.Redis (or the embedded fakeredis)
STORE = web.AppKey("store", "Store")
CONVERSATIONS = web.AppKey("conversations", "ConversationRepository")
HTTP_SESSION = web.AppKey("http_session", Any)  # aiohttp.ClientSession for the AI providers
AI_PROVIDER = web.AppKey("ai_provider", Any)
