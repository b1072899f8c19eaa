"""The reply parsers' helpers: chunk JSON, message text, tool calls from pieces."""

from __future__ import annotations

import pytest

from chat.ai import AIError, ToolCall
from chat.ai.chunks import ToolCallAccumulator, load_json_object, text_of


def test_tool_calls_without_index_or_name_or_with_object_arguments():
    calls = ToolCallAccumulator()
    calls.add([{"function": {"name": "a", "arguments": {"k": 1}}}, {"function": {"arguments": "{}"}}])
    calls.add("not a list")
    assert calls.drain() == [ToolCall("a", {"k": 1})]
    assert calls.drain() == []


def test_tool_call_arguments_sent_whole_each_time_are_read_from_the_latest_piece():
    calls = ToolCallAccumulator()
    calls.add([{"index": 0, "function": {"name": "f", "arguments": '{"a": '}}])
    calls.add([{"index": 0, "function": {"arguments": '{"a": 1}'}}])
    assert calls.drain() == [ToolCall("f", {"a": 1})]


@pytest.mark.parametrize(
    ("content", "expected"),
    [("plain", "plain"), ([{"text": "a"}, {"image": "x"}, {"text": "b"}, "c"], "ab"), (None, ""), (3, "")],
)
def test_text_of_a_string_or_a_list_of_parts(content, expected):
    assert text_of(content) == expected


def test_a_chunk_must_be_a_json_object():
    assert load_json_object('{"a": 1}', "P") == {"a": 1}
    for data in ("{oops", "[1, 2]"):
        with pytest.raises(AIError) as raised:
            load_json_object(data, "P")
        assert raised.value.code == "bad_response"
        assert raised.value.message.startswith("P sent a chunk")
