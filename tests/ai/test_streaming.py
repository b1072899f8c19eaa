"""What HTTPStreamProvider gives every HTTP provider: setup, endpoint URL, limits, repr."""

from __future__ import annotations

import pytest

from chat.ai import DashScopeProvider, OpenAIProvider
from chat.ai.streaming import HTTPStreamProvider

from . import streams
from .support import calls, collect

API_KEY = "sk-never-shown"


def dashscope(session, **kwargs) -> DashScopeProvider:
    return DashScopeProvider(session, api_key=API_KEY, model="qwen-max", **kwargs)


def openai(session, **kwargs) -> OpenAIProvider:
    kwargs.setdefault("base_url", "https://llm.test/v1")
    return OpenAIProvider(session, api_key=API_KEY, model="gpt-4o", **kwargs)


@pytest.mark.parametrize("make", [dashscope, openai])
async def test_repr_names_the_class_model_and_url_never_the_key(session, make):
    provider = make(session)
    assert isinstance(provider, HTTPStreamProvider)
    assert repr(provider) == f"{type(provider).__name__}(model={provider.model!r}, base_url={provider.base_url!r})"
    assert API_KEY not in repr(provider)


async def test_dashscope_defaults_to_the_public_endpoint(session, mocked):
    url = "https://dashscope.aliyuncs.com/api/v1/services/aigc/text-generation/generation"
    mocked.post(url, body=streams.DASHSCOPE_INCREMENTAL.encode(), content_type="text/event-stream")
    assert await collect(dashscope(session)) == streams.DASHSCOPE_DELTAS
    assert len(calls(mocked, url)) == 1


@pytest.mark.parametrize("base_url", ["https://ds.test/api/v1", "https://ds.test/api/v1/"])
async def test_endpoint_is_below_the_base_url_with_or_without_its_slash(session, mocked, base_url):
    url = "https://ds.test/api/v1/services/aigc/text-generation/generation"
    mocked.post(url, body=streams.DASHSCOPE_INCREMENTAL.encode(), content_type="text/event-stream")
    provider = dashscope(session, base_url=base_url)
    assert await collect(provider) == streams.DASHSCOPE_DELTAS
    assert provider.base_url == base_url
    assert len(calls(mocked, url)) == 1


@pytest.mark.parametrize("make", [dashscope, openai])
async def test_limits_reach_the_request(session, mocked, make):
    provider = make(session, connect_timeout_s=0.5, chunk_timeout_s=7.0)
    url = provider.base_url.rstrip("/") + type(provider).endpoint_path
    body = streams.DASHSCOPE_INCREMENTAL if make is dashscope else streams.OPENAI_STREAM
    mocked.post(url, body=body.encode(), content_type="text/event-stream")
    await collect(provider)
    timeout = calls(mocked, url)[0].kwargs["timeout"]
    assert (timeout.total, timeout.connect, timeout.sock_read) == (None, 0.5, 7.0)


async def test_extras_are_copied_at_construction(session, mocked):
    extra = {"temperature": 0.1}
    provider = openai(session, extra_body=extra)
    extra["temperature"] = 0.9
    url = "https://llm.test/v1/chat/completions"
    mocked.post(url, body=streams.OPENAI_STREAM.encode(), content_type="text/event-stream")
    await collect(provider)
    assert calls(mocked, url)[0].kwargs["json"]["temperature"] == 0.1


@pytest.mark.parametrize("make", [dashscope, openai])
@pytest.mark.parametrize(
    "limits",
    [{"connect_timeout_s": 0}, {"chunk_timeout_s": -1.0}, {"max_retries": -1}, {"retry_base_s": -0.1}],
)
async def test_nonsense_limits_are_refused(session, make, limits):
    with pytest.raises(ValueError):
        make(session, **limits)
