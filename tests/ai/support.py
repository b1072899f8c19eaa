"""Plain helpers of the AI provider tests (the fixtures are in conftest.py)."""

from __future__ import annotations

from typing import Any

import pytest
from aioresponses import aioresponses
from yarl import URL

from chat.ai import AIError, Provider, StreamItem

USER_HI = [
    {"role": "system", "content": "You are a support assistant."},
    {"role": "user", "content": "你好"},
]


async def collect(provider: Provider, messages: list[dict[str, Any]] = USER_HI, **kwargs: Any) -> list[StreamItem]:
    """All items of one reply."""
    return [item async for item in provider.stream(messages, **kwargs)]


async def collect_until_error(
    provider: Provider, messages: list[dict[str, Any]] = USER_HI, **kwargs: Any
) -> tuple[list[StreamItem], AIError]:
    """The items yielded before the reply failed, and its error."""
    items: list[StreamItem] = []
    with pytest.raises(AIError) as raised:
        async for item in provider.stream(messages, **kwargs):
            items.append(item)
    return items, raised.value


def calls(mock: aioresponses, url: str) -> list[Any]:
    """Requests made to url, in order."""
    return list(mock.requests.get(("POST", URL(url)), []))
