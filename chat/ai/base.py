"""The provider interface: text chunks and tool calls out, AIError on failure."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable


@dataclass(frozen=True)
class ToolCall:
    """The model asked to call a function; yielded once its arguments are complete."""

    name: str
    # Parsed JSON arguments; {} when the model sent none or sent invalid JSON.
    arguments: dict[str, Any] = field(default_factory=dict)


class AIError(Exception):
    """A failed provider call: after its retries, or mid-stream (never retried)."""

    def __init__(
        self,
        code: str,
        message: str,
        *,
        status: int | None = None,
        retryable: bool = False,
        request_id: str | None = None,
    ) -> None:
        super().__init__(code, message)
        # Provider code ("InvalidApiKey", "Throttling.RateQuota") or one of ours:
        # "timeout", "connection", "stream_error", "bad_response", "http_<status>".
        self.code = code
        self.message = message
        self.status = status
        self.retryable = retryable
        # The provider's id for the call, worth quoting to its support.
        self.request_id = request_id

    def __str__(self) -> str:
        text = f"{self.code}: {self.message}"
        if self.status is not None:
            text += f" (HTTP {self.status})"
        if self.request_id:
            text += f" [request {self.request_id}]"
        return text

    def __repr__(self) -> str:
        return (
            f"AIError(code={self.code!r}, message={self.message!r}, status={self.status!r}, "
            f"retryable={self.retryable!r}, request_id={self.request_id!r})"
        )


StreamItem = str | ToolCall


@runtime_checkable
class Provider(Protocol):
    """An AI backend that streams a reply to a chat history."""

    name: str  # "dashscope", "openai", "echo"
    # {"status": "ok"}, or {"status": "degraded", "code": "InvalidApiKey"} after a 401
    # until the next successful reply. Replaced, never mutated, so readers may keep it.
    health: dict[str, Any]

    # Declared without `async`: implementations are async generators, and an
    # `async def` here would describe a coroutine that returns an iterator.
    def stream(
        self, messages: list[dict[str, Any]], *, tools: list[dict[str, Any]] | None = None
    ) -> AsyncIterator[StreamItem]:
        """Yield text deltas and complete ToolCalls as they arrive; raise AIError on failure."""
        ...


TRANSFER_TO_HUMAN_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "transfer_to_human",
        "description": (
            "Hand the conversation over to a human support agent. Call this when the "
            "customer asks for a person, or when you cannot help them yourself."
        ),
        "parameters": {
            "type": "object",
            "properties": {
                "reason": {
                    "type": "string",
                    "description": "Why the customer needs a human, in one short sentence.",
                }
            },
            "required": ["reason"],
        },
    },
}
