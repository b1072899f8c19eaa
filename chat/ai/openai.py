"""Any OpenAI-compatible chat-completions endpoint, streamed over SSE."""

from __future__ import annotations

from typing import Any, Unpack

import aiohttp

from .base import StreamItem
from .chunks import ToolCallAccumulator, load_json_object, text_of
from .errors import error_from_event, error_from_payload, incomplete_reply
from .sse import SSEEvent
from .streaming import CallLimits, HTTPStreamProvider


class OpenAIProvider(HTTPStreamProvider):
    """POST {base_url}/chat/completions with "stream": true (OpenAI, DashScope compatible mode, vLLM, Ollama)."""

    name = "openai"
    endpoint_path = "/chat/completions"

    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        api_key: str,
        base_url: str,
        model: str,
        extra_body: dict[str, Any] | None = None,
        **limits: Unpack[CallLimits],
    ) -> None:
        if not base_url:
            raise ValueError("base_url is required, e.g. https://api.openai.com/v1")
        # extra_body goes into the top level of the request body.
        super().__init__(session, api_key=api_key, model=model, base_url=base_url, extra=extra_body, **limits)

    def _headers(self) -> dict[str, str]:
        headers = {"Accept": "text/event-stream"}
        # Local servers (Ollama, vLLM) run without a key.
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        return headers

    def _body(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None) -> dict[str, Any]:
        body: dict[str, Any] = {"model": self.model, "messages": messages}
        body.update(self._extra)
        body["stream"] = True
        if tools:
            body["tools"] = tools
        return body

    def _reply_parser(self) -> OpenAIReply:
        return OpenAIReply()


class OpenAIReply:
    """One attempt's chunks: `delta`s ending with [DONE], or one non-streamed `message`."""

    def __init__(self) -> None:
        self._tool_calls = ToolCallAccumulator()
        self._finished = False
        self._done = False

    def feed(self, event: SSEEvent) -> list[StreamItem]:
        """Items from one chunk; raise AIError for an error event or error object."""
        if event.data.strip() == "[DONE]":
            self._done = True
            return []
        if event.event == "error":
            raise error_from_event(event)
        payload = load_json_object(event.data, "the OpenAI-compatible server")
        if payload.get("error"):
            raise error_from_payload(payload, status=None)
        choices = payload.get("choices")
        # A usage-only chunk has no choices.
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            return []
        choice = choices[0]
        part = choice.get("delta") or choice.get("message") or {}
        if not isinstance(part, dict):
            part = {}
        items: list[StreamItem] = []
        # reasoning_content (a thinking model's notes) is deliberately not shown.
        text = text_of(part.get("content"))
        if text:
            items.append(text)
        self._tool_calls.add(part.get("tool_calls"))
        finish_reason = choice.get("finish_reason")
        if finish_reason:
            self._finished = True
            if finish_reason == "tool_calls":
                items.extend(self._tool_calls.drain())
        return items

    @property
    def ended(self) -> bool:
        """[DONE], or a chunk with a finish_reason (a usage chunk may follow: not waited for)."""
        return self._done or self._finished

    def finish(self) -> list[StreamItem]:
        """Tool calls still pending at the end; raise AIError if neither [DONE] nor a finish came."""
        if not (self._done or self._finished):
            raise incomplete_reply()
        return list(self._tool_calls.drain())
