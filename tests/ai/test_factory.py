"""build_provider: the provider AI_PROVIDER names, with the settings' key, model, URL and limits."""

from __future__ import annotations

import pytest

from chat.ai import DashScopeProvider, EchoProvider, OpenAIProvider, Provider, build_provider
from chat.ai.dashscope import DEFAULT_BASE_URL
from chat.settings import Settings

from . import streams
from .support import calls, collect, collect_until_error

LIMITS = {"ai_connect_timeout_s": 1.5, "ai_chunk_timeout_s": 2.5, "ai_max_retries": 1, "ai_retry_base_s": 0.0}


async def test_echo_by_default(session):
    provider = build_provider(Settings(), session)
    assert isinstance(provider, EchoProvider)
    assert isinstance(provider, Provider)


async def test_dashscope_gets_its_key_model_url_and_limits(session, mocked):
    settings = Settings(
        ai_provider="dashscope",
        dashscope_api_key="sk-dash",
        ai_model="qwen-plus",
        dashscope_base_url="https://ds.test/api/v1",
        ai_api_key="sk-not-this-one",
        **LIMITS,
    )
    url = "https://ds.test/api/v1/services/aigc/text-generation/generation"
    for _ in range(2):
        mocked.post(url, status=503, body=streams.DASHSCOPE_500.encode(), content_type="application/json")

    provider = build_provider(settings, session)
    _, error = await collect_until_error(provider)

    assert isinstance(provider, DashScopeProvider)
    assert repr(provider) == "DashScopeProvider(model='qwen-plus', base_url='https://ds.test/api/v1')"
    assert error.code == "InternalError"
    first, second = calls(mocked, url)  # ai_max_retries=1: one retry
    assert first.kwargs["headers"]["Authorization"] == "Bearer sk-dash"
    assert first.kwargs["json"]["model"] == "qwen-plus"
    timeout = first.kwargs["timeout"]
    assert (timeout.connect, timeout.sock_read) == (1.5, 2.5)


async def test_openai_gets_its_key_model_url_and_limits(session, mocked):
    settings = Settings(
        ai_provider="openai",
        ai_api_key="sk-open",
        ai_base_url="https://llm.test/v1",
        ai_model="gpt-4o-mini",
        dashscope_api_key="sk-not-this-one",
        **LIMITS,
    )
    url = "https://llm.test/v1/chat/completions"
    mocked.post(url, body=streams.OPENAI_STREAM.encode(), content_type="text/event-stream")

    provider = build_provider(settings, session)

    assert isinstance(provider, OpenAIProvider)
    assert await collect(provider) == streams.OPENAI_DELTAS
    (call,) = calls(mocked, url)
    assert call.kwargs["headers"]["Authorization"] == "Bearer sk-open"
    assert call.kwargs["json"]["model"] == "gpt-4o-mini"
    timeout = call.kwargs["timeout"]
    assert (timeout.connect, timeout.sock_read) == (1.5, 2.5)


async def test_openai_without_a_base_url_is_refused(session):
    with pytest.raises(ValueError):
        build_provider(Settings(ai_provider="openai", ai_model="m"), session)


def test_the_settings_default_dashscope_url_is_the_providers():
    assert Settings().dashscope_base_url == DEFAULT_BASE_URL
