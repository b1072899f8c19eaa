"""EchoProvider: offline, deterministic, and labelled as not an AI."""

from __future__ import annotations

from chat.ai import EchoProvider, Provider, ToolCall

from .support import collect, collect_until_error


def history(last_user: str) -> list[dict]:
    return [
        {"role": "system", "content": "You are a support assistant."},
        {"role": "user", "content": "an earlier question"},
        {"role": "assistant", "content": "an earlier answer"},
        {"role": "user", "content": last_user},
        {"role": "assistant", "content": "not the last user message"},
    ]


async def test_echoes_the_last_user_message_in_a_few_labelled_chunks():
    provider = EchoProvider()
    items = await collect(provider, history("where is my order 42 please"))
    assert "".join(items) == "[echo — offline provider, not an AI] You said: where is my order 42 please"
    assert 3 <= len(items) <= 6
    assert all(isinstance(item, str) and item for item in items)
    assert await collect(provider, history("where is my order 42 please")) == items


async def test_no_user_message():
    items = await collect(EchoProvider(), [{"role": "system", "content": "x"}])
    assert "".join(items).endswith("You said: (nothing)")


async def test_fail_raises_before_any_chunk():
    items, error = await collect_until_error(EchoProvider(), history("please /fail now"))
    assert items == []
    assert error.code == "echo_failure"


async def test_fail_mid_raises_after_the_first_chunk():
    items, error = await collect_until_error(EchoProvider(), history("/fail-mid"))
    assert len(items) == 1
    assert error.code == "stream_error"


async def test_handoff_yields_the_tool_call():
    items = await collect(EchoProvider(delay_s=0.001), history("I want a person /handoff"))
    assert items == [ToolCall("transfer_to_human", {"reason": "echo test"})]


async def test_is_a_provider():
    provider = EchoProvider()
    assert isinstance(provider, Provider)
    assert (provider.name, provider.health) == ("echo", {"status": "ok"})

