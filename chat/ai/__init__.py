"""AI providers behind one small interface: text chunks and tool calls out, AIError on failure."""

from .base import TRANSFER_TO_HUMAN_TOOL, AIError, Provider, StreamItem, ToolCall
from .dashscope import DashScopeProvider
from .echo import EchoProvider
from .factory import build_provider
from .openai import OpenAIProvider

__all__ = [
    "TRANSFER_TO_HUMAN_TOOL",
    "AIError",
    "DashScopeProvider",
    "EchoProvider",
    "OpenAIProvider",
    "Provider",
    "StreamItem",
    "ToolCall",
    "build_provider",
]
