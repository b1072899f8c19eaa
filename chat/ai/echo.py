"""An offline stand-in for development and tests: it repeats the customer, it is not an AI."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from .base import AIError, StreamItem, ToolCall

LABEL = "[echo — offline provider, not an AI] "


class EchoProvider:
    """Deterministic replies with test switches in the last user message.

    "/fail": AIError("echo_failure") before any chunk; "/fail-mid": AIError("stream_error")
    after the first chunk; "/handoff": a transfer_to_human ToolCall instead of text.
    """

    name = "echo"

    def __init__(self, *, delay_s: float = 0.0) -> None:
        self._delay_s = delay_s
        self.health: dict[str, Any] = {"status": "ok"}

    def __repr__(self) -> str:
        return f"EchoProvider(delay_s={self._delay_s!r})"

    async def stream(
        self, messages: list[dict[str, Any]], *, tools: list[dict[str, Any]] | None = None
    ) -> AsyncIterator[StreamItem]:
        """Yield the label and the last user message in a few chunks."""
        said = _last_user_text(messages)
        if "/fail-mid" in said:
            yield LABEL
            await self._pause()
            raise AIError("stream_error", "echo: simulated failure mid-stream")
        if "/fail" in said:
            raise AIError("echo_failure", "echo: simulated failure")
        if "/handoff" in said:
            await self._pause()
            yield ToolCall("transfer_to_human", {"reason": "echo test"})
            return
        for chunk in _chunks(said):
            # Even with no delay, hand the loop over between chunks as a network stream would.
            await self._pause()
            yield chunk

    async def _pause(self) -> None:
        await asyncio.sleep(self._delay_s)


def _last_user_text(messages: list[dict[str, Any]]) -> str:
    for message in reversed(messages):
        if message.get("role") == "user":
            content = message.get("content")
            return content if isinstance(content, str) else str(content or "")
    return ""


def _chunks(said: str) -> list[str]:
    """The reply cut at word boundaries into at most five pieces after the label."""
    chunks = [LABEL, "You said: "]
    words = said.split(" ") if said else ["(nothing)"]
    per_chunk = max(1, -(-len(words) // 4))
    for start in range(0, len(words), per_chunk):
        piece = " ".join(words[start : start + per_chunk])
        chunks.append(piece if start + per_chunk >= len(words) else piece + " ")
    return chunks
