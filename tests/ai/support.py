"""Fixtures and helpers shared by the AI provider tests (imported, not a conftest)."""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Iterator
from types import SimpleNamespace
from typing import Any

import aiohttp
import pytest
from aioresponses import aioresponses
from yarl import URL

from chat.ai import AIError, Provider, StreamItem

USER_HI = [
    {"role": "system", "content": "You are a support assistant."},
    {"role": "user", "content": "你好"},
]


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    """A real client session; aioresponses intercepts its requests where a test mocks them."""
    async with aiohttp.ClientSession() as client:
        yield client


class _CompatResponse(aiohttp.ClientResponse):
    """aioresponses 0.7.9 does not pass aiohttp 3.14's new `stream_writer` argument.

    Known upstream (pnuckowski/aioresponses#289); drop this once a fixed release is out.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        if "stream_writer" in _RESPONSE_PARAMETERS:
            # aioresponses passes writer=None, so only output_size is read.
            kwargs.setdefault("stream_writer", SimpleNamespace(output_size=0))
        super().__init__(*args, **kwargs)


_RESPONSE_PARAMETERS = inspect.signature(aiohttp.ClientResponse.__init__).parameters


class _Mock(aioresponses):
    def add(self, url: Any, method: str = "GET", *args: Any, **kwargs: Any) -> None:
        kwargs["response_class"] = kwargs.get("response_class") or _CompatResponse
        super().add(url, method, *args, **kwargs)


@pytest.fixture
def mocked() -> Iterator[aioresponses]:
    """Intercept every HTTP request; an unmocked one fails the test."""
    with _Mock() as mock:
        yield mock


async def collect(provider: Provider, messages=USER_HI, **kwargs) -> list[StreamItem]:
    """All items of one reply."""
    return [item async for item in provider.stream(messages, **kwargs)]


async def collect_until_error(provider: Provider, messages=USER_HI, **kwargs) -> tuple[list[StreamItem], AIError]:
    """The items yielded before the reply failed, and its error."""
    items: list[StreamItem] = []
    with pytest.raises(AIError) as raised:
        async for item in provider.stream(messages, **kwargs):
            items.append(item)
    return items, raised.value


def calls(mock: aioresponses, url: str) -> list:
    """Requests made to url, in order."""
    return mock.requests.get(("POST", URL(url)), [])
