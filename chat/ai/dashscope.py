"""Alibaba DashScope's native text-generation API, streamed over SSE."""

from __future__ import annotations

from typing import Any, Unpack

import aiohttp

from chat.settings import DEFAULT_DASHSCOPE_BASE_URL

from .base import AIError, StreamItem
from .chunks import ToolCallAccumulator, load_json_object, text_of
from .errors import error_from_event, error_from_payload, incomplete_reply
from .sse import SSEEvent
from .streaming import CallLimits, HTTPStreamProvider

# The settings' default (DASHSCOPE_BASE_URL), declared there once.
DEFAULT_BASE_URL = DEFAULT_DASHSCOPE_BASE_URL
GENERATION_PATH = "/services/aigc/text-generation/generation"


class DashScopeProvider(HTTPStreamProvider):
    """Qwen models through DashScope's native API (not its OpenAI-compatible mode)."""

    name = "dashscope"
    endpoint_path = GENERATION_PATH

    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        api_key: str,
        model: str = "qwen-turbo",
        base_url: str = DEFAULT_BASE_URL,
        extra_parameters: dict[str, Any] | None = None,
        **limits: Unpack[CallLimits],
    ) -> None:
        # extra_parameters go into the request's "parameters" object.
        super().__init__(session, api_key=api_key, model=model, base_url=base_url, extra=extra_parameters, **limits)

    def _headers(self) -> dict[str, str]:
        return {
            "Authorization": f"Bearer {self._api_key}",
            "Accept": "text/event-stream",
            "X-DashScope-SSE": "enable",
        }

    def _body(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None) -> dict[str, Any]:
        parameters: dict[str, Any] = {"result_format": "message", "incremental_output": True}
        parameters.update(self._extra)
        if tools:
            parameters["tools"] = tools
        return {"model": self.model, "input": {"messages": messages}, "parameters": parameters}

    def _reply_parser(self) -> DashScopeReply:
        # the chunks are what the request asked for: incremental unless the parameters turned it off
        return DashScopeReply(cumulative=self._extra.get("incremental_output") is False)


class DashScopeReply:
    """One attempt's chunks, in the message or the old text format: each a new piece (incremental_output,
    as the service asks), or each the whole text so far (`cumulative`, when the parameters ask for that).
    Never guessed from the text: an incremental piece may well start with the text before it (哈, 哈哈)."""

    def __init__(self, *, cumulative: bool = False) -> None:
        self._sent = ""  # every character yielded so far
        self._cumulative = cumulative
        self._tool_calls = ToolCallAccumulator()
        self._finished = False

    def feed(self, event: SSEEvent) -> list[StreamItem]:
        """Items from one chunk; raise AIError for an error event or error body."""
        if event.event == "error":
            raise error_from_event(event)
        payload = load_json_object(event.data, "DashScope")
        output = payload.get("output")
        if not isinstance(output, dict):
            if payload.get("code"):
                raise error_from_payload(payload, status=event.http_status)
            return []
        if self._finished:
            return []
        choices = output.get("choices")
        if isinstance(choices, list) and choices and isinstance(choices[0], dict):
            choice = choices[0]
            message = choice.get("message") or {}
            if not isinstance(message, dict):
                message = {}
            text = text_of(message.get("content"))
            self._tool_calls.add(message.get("tool_calls"))
            finish_reason = choice.get("finish_reason")
        else:
            text = text_of(output.get("text"))
            finish_reason = output.get("finish_reason")

        items: list[StreamItem] = []
        new_text = self._new_text(text)
        if new_text:
            items.append(new_text)
        # Intermediate chunks say "null" as a string; some proxies send a real null.
        if finish_reason not in (None, "", "null"):
            self._finished = True
            if finish_reason == "tool_calls":
                items.extend(self._tool_calls.drain())
        return items

    @property
    def ended(self) -> bool:
        """A chunk gave the final finish_reason."""
        return self._finished

    def finish(self) -> list[StreamItem]:
        """Tool calls still pending at the end; raise AIError if no chunk finished the reply."""
        if not self._finished:
            raise incomplete_reply()
        return list(self._tool_calls.drain())

    def _new_text(self, text: str) -> str:
        if not text:
            return ""
        if self._cumulative:
            if text.startswith(self._sent):
                new = text[len(self._sent) :]
            elif self._sent.startswith(text):
                new = ""
            else:
                raise AIError("bad_response", "a non-incremental stream rewrote text it had sent")
        else:
            new = text
        self._sent += new
        return new
