"""The provider interface: AIError and what every provider is."""

from __future__ import annotations

import pytest

from chat.ai import TRANSFER_TO_HUMAN_TOOL, AIError


async def test_ai_error_text():
    error = AIError("Throttling", "slow down", status=429, retryable=True, request_id="r-1")
    assert str(error) == "Throttling: slow down (HTTP 429) [request r-1]"


def test_ai_error_is_an_exception():
    with pytest.raises(AIError):
        raise AIError("echo_failure", "x")


def test_ai_error_text_without_status_or_request_and_its_repr():
    error = AIError("timeout", "no data for 30s")
    assert str(error) == "timeout: no data for 30s"
    assert repr(error) == (
        "AIError(code='timeout', message='no data for 30s', status=None, retryable=False, request_id=None)"
    )


def test_the_handoff_tool_requires_a_reason():
    function = TRANSFER_TO_HUMAN_TOOL["function"]
    assert function["name"] == "transfer_to_human"
    assert function["parameters"]["required"] == ["reason"]
