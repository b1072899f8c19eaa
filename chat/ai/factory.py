"""The provider the settings name, built on the app's client session."""

from __future__ import annotations

import aiohttp

from chat.settings import Settings

from .base import Provider
from .dashscope import DashScopeProvider
from .echo import EchoProvider
from .openai import OpenAIProvider
from .streaming import CallLimits


def build_provider(settings: Settings, session: aiohttp.ClientSession) -> Provider:
    """DashScope, an OpenAI-compatible server or the offline echo, as AI_PROVIDER says."""
    limits = CallLimits(
        connect_timeout_s=settings.ai_connect_timeout_s,
        chunk_timeout_s=settings.ai_chunk_timeout_s,
        max_retries=settings.ai_max_retries,
        retry_base_s=settings.ai_retry_base_s,
    )
    if settings.ai_provider == "dashscope":
        return DashScopeProvider(
            session,
            api_key=settings.dashscope_api_key,
            model=settings.ai_model,
            base_url=settings.dashscope_base_url,
            **limits,
        )
    if settings.ai_provider == "openai":
        return OpenAIProvider(
            session, api_key=settings.ai_api_key, base_url=settings.ai_base_url, model=settings.ai_model, **limits
        )
    return EchoProvider()
