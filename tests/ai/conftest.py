"""Fixtures of the AI provider tests: a client session, an HTTP mock, a local fake DashScope."""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Iterator
from types import SimpleNamespace
from typing import Any

import aiohttp
import pytest
from aioresponses import aioresponses

from .fake_dashscope import FakeDashScope


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


@pytest.fixture
async def fake() -> AsyncIterator[FakeDashScope]:
    """A scriptable fake DashScope; stalled handlers are let go at teardown."""
    fake = FakeDashScope()
    yield fake
    fake.release()


@pytest.fixture
async def fake_base_url(aiohttp_server: Any, fake: FakeDashScope) -> str:
    """The base URL of `fake`, served on 127.0.0.1."""
    server = await aiohttp_server(fake.app(), host="127.0.0.1")
    return str(server.make_url("/api/v1"))
