"""The AI turn: context, streaming, the takeover guard, and the three automatic handoffs."""

import asyncio
import logging

import pytest

from chat import keys
from chat.ai import AIError, ToolCall
from chat.ai_memory import Histories, Memories, build_context
from chat.auth import Identity
from chat.store import DatabaseError
from chat.store.models import Message
from states import redis_keys
from tests.wsclient import RECV_TIMEOUT_S, ScriptedProvider


async def start(h, sub="cust-1"):
    ws = await h.connect(sub)
    cid = (await ws.ok("conversation.start"))["conversation"]["id"]
    return ws, cid


async def test_context_is_history_with_roles_after_a_system_prompt(harness):
    ws, cid = await start(harness)
    await ws.ok("message.send", conversation_id=cid, client_msg_id="1", content="first question")
    await harness.drain_ai()
    await ws.ok("message.send", conversation_id=cid, client_msg_id="2", content="second question")
    await harness.drain_ai()
    last_call = harness.provider.calls[-1]
    assert last_call[0]["role"] == "system" and last_call[0]["content"] == harness.settings.ai_system_prompt
    assert [(m["role"], m["content"]) for m in last_call[1:]] == [
        ("user", "first question"), ("assistant", "Hello, world"), ("user", "second question")]


def _hold_history_reads(harness, monkeypatch) -> asyncio.Event:
    """From now on a turn's history read waits for the returned event (the small newest-message read does not)."""
    store, release = harness.app[keys.STORE], asyncio.Event()
    recent = store.messages.recent

    async def held(conversation_id, limit):
        if limit > 1:
            await release.wait()
        return await recent(conversation_id, limit)

    monkeypatch.setattr(store.messages, "recent", held)
    return release


async def _ask_second_question_early(harness, monkeypatch, ws, cid) -> asyncio.Event:
    """Hold the turn's history reads, send the second question and wait until the provider was asked on it:
    the early request. The returned event lets the held reads go."""
    release = _hold_history_reads(harness, monkeypatch)
    harness.provider.started.clear()
    await ws.ok("message.send", conversation_id=cid, client_msg_id="2", content="second question")
    async with asyncio.timeout(RECV_TIMEOUT_S):
        await harness.provider.started.wait()
    return release


async def test_after_a_reply_the_next_question_is_asked_before_the_history_is_read(harness, monkeypatch):
    provider: ScriptedProvider = harness.provider
    ws, cid = await start(harness)
    await ws.ok("message.send", conversation_id=cid, client_msg_id="1", content="first question")
    await harness.drain_ai()
    # the request goes out while the turn's reads are held
    release = await _ask_second_question_early(harness, monkeypatch, ws, cid)
    assert [m["content"] for m in provider.calls[-1][1:]] == ["first question", "Hello, world", "second question"]
    release.set()
    await harness.drain_ai()
    assert len(provider.calls) == 2 and await stored_senders(harness, cid) == ["customer", "ai", "customer", "ai"]


async def test_a_question_sent_while_the_last_turn_still_ends_is_asked_early_too(harness, monkeypatch):
    """The customer may answer the reply before the turn that stored it gets on: the kept messages
    follow what is stored, not the turn's bookkeeping."""
    provider: ScriptedProvider = harness.provider
    messages, turn_goes_on = harness.app[keys.AI_RUNNER].messages, asyncio.Event()
    append = messages.append

    async def slow_to_return(conversation, **fields):
        stored = await append(conversation, **fields)
        if fields.get("sender_type") == "ai":
            await turn_goes_on.wait()
        return stored

    monkeypatch.setattr(messages, "append", slow_to_return)
    ws, cid = await start(harness)
    await ws.ok("message.send", conversation_id=cid, client_msg_id="1", content="first question")
    await ws.event("message.created", lambda f: f["data"]["message"]["sender_type"] == "ai")
    # asked while the first turn has not even ended
    release = await _ask_second_question_early(harness, monkeypatch, ws, cid)
    turn_goes_on.set()
    assert [m["content"] for m in provider.calls[-1][1:]] == ["first question", "Hello, world", "second question"]
    release.set()
    await harness.drain_ai()
    assert len(provider.calls) == 2 and await stored_senders(harness, cid) == ["customer", "ai", "customer", "ai"]


async def test_after_an_agents_private_note_the_next_question_is_still_asked_early(harness, monkeypatch):
    """A private note takes a seq but is not in the AI's context: the messages kept for the next turn
    still lead up to the customer's next question."""
    provider: ScriptedProvider = harness.provider
    ws, cid = await start(harness)
    await ws.ok("message.send", conversation_id=cid, client_msg_id="1", content="first question")
    await ws.event("message.created", lambda f: f["data"]["message"]["seq"] == 2)  # its reply
    await harness.drain_ai()
    agent = Identity("agent-1", "agent")
    await harness.ops.staff.remember(agent)
    note = await harness.ops.messages.send(agent, cid, content="a note", client_msg_id="n1", private=True)
    assert note.seq == 3
    release = await _ask_second_question_early(harness, monkeypatch, ws, cid)  # asked before the history read
    release.set()
    await ws.event("message.created", lambda f: f["data"]["message"]["seq"] == 5)
    await harness.drain_ai()
    assert len(provider.calls) == 2  # the turn took the reply asked early
    assert [m["content"] for m in provider.calls[-1][1:]] == ["first question", "Hello, world", "second question"]


async def test_an_early_question_is_dropped_unseen_when_another_instance_holds_the_turn(harness_factory):
    h = await harness_factory(ai_sweep_interval_s=0)
    provider: ScriptedProvider = h.provider
    runner, redis = h.app[keys.AI_RUNNER], h.app[keys.REDIS]
    ws, cid = await start(h)
    await ws.ok("message.send", conversation_id=cid, client_msg_id="1", content="first question")
    await h.drain_ai()
    await redis.set(redis_keys.ai_turn(cid), "another-instance", px=15_000)
    provider.started.clear()
    await ws.ok("message.send", conversation_id=cid, client_msg_id="2", content="second question")
    await h.drain_ai()
    assert provider.started.is_set() and await stored_senders(h, cid) == ["customer", "ai", "customer"]
    await redis.delete(redis_keys.ai_turn(cid))  # that instance went away: the sweep answers
    await runner.sweep()
    await h.drain_ai()
    await ws.event("message.created", lambda f: f["data"]["message"]["seq"] == 4)
    deltas = [f["data"]["delta"] for f in ws.events if f["type"] == "ai.delta"]
    assert "".join(deltas) == "Hello, world" * 2 and len(provider.calls) == 3  # the dropped one never shown


async def test_an_early_question_on_a_history_that_moved_on_is_dropped_unseen(harness, monkeypatch):
    provider: ScriptedProvider = harness.provider
    ws, cid = await start(harness)
    await ws.ok("message.send", conversation_id=cid, client_msg_id="1", content="first question")
    await harness.drain_ai()
    release = await _ask_second_question_early(harness, monkeypatch, ws, cid)
    # another instance stores one more question before this turn reads the history
    await harness.app[keys.STORE].messages.append(cid, sender_type="customer", sender_id="cust-1", content="third")
    release.set()
    await harness.drain_ai()
    assert len(provider.calls) == 3  # the early question, then the one on the history as read
    assert [m["content"] for m in provider.calls[-1][1:]] == [
        "first question", "Hello, world", "second question", "third"]
    await ws.event("message.created", lambda f: f["data"]["message"]["seq"] == 5)
    deltas = [f["data"]["delta"] for f in ws.events if f["type"] == "ai.delta"]
    assert "".join(deltas) == "Hello, world" * 2  # the first reply and the last: nothing of the dropped one
    assert await stored_senders(harness, cid) == ["customer", "ai", "customer", "customer", "ai"]


def _hold_message_commits(harness, monkeypatch) -> tuple[asyncio.Event, asyncio.Event]:
    """From now on the message writer's SQL writes wait: the event set when one waits, and the one that
    lets them go on."""
    messages, waiting, release = harness.app[keys.STORE].messages, asyncio.Event(), asyncio.Event()
    for name in ("append_batch", "append_draft"):
        write = getattr(messages, name)

        async def held(drafts, write=write):
            waiting.set()
            await release.wait()
            return await write(drafts)

        monkeypatch.setattr(messages, name, held)
    return waiting, release


async def _ask_while_it_commits(harness, monkeypatch, ws, cid) -> tuple[asyncio.Event, asyncio.Future]:
    """Hold the message commits, send the second question and wait until the provider was asked on it.
    Returns the event that lets the commits go on, and the pending message.send."""
    _, release = _hold_message_commits(harness, monkeypatch)
    harness.provider.started.clear()
    sending = asyncio.ensure_future(ws.ok("message.send", conversation_id=cid, client_msg_id="2",
                                          content="second question"))
    async with asyncio.timeout(RECV_TIMEOUT_S):
        await harness.provider.started.wait()
    return release, sending


def _asked_elsewhere_at_each_release(harness, monkeypatch) -> None:
    """From now on, as each turn ends, another instance has found its lock busy and left its flag: the
    turn looks again for unanswered messages (the small newest-message read) after releasing it."""
    locks, redis = harness.app[keys.AI_RUNNER].locks, harness.app[keys.REDIS]
    release = locks.release

    async def release_asked(conversation_id, token):
        await redis.set(redis_keys.ai_asked(conversation_id), "1", px=15_000)
        return await release(conversation_id, token)

    monkeypatch.setattr(locks, "release", release_asked)


def _hold_turn_ends(harness, monkeypatch) -> tuple[asyncio.Event, asyncio.Event]:
    """From now on a turn's lock release waits: returns the event set when one waits and the one that
    lets it go on."""
    locks, ending, go_on = harness.app[keys.AI_RUNNER].locks, asyncio.Event(), asyncio.Event()
    release = locks.release

    async def held(conversation_id, token):
        ending.set()
        await go_on.wait()
        return await release(conversation_id, token)

    monkeypatch.setattr(locks, "release", held)
    return ending, go_on


class ClosedCounting(ScriptedProvider):
    """Counts the reply streams that were closed (read to the end or abandoned)."""

    def __init__(self):
        super().__init__()
        self.closed = 0
        self.changed = asyncio.Event()

    async def stream(self, messages, *, tools=None):
        try:
            async for item in super().stream(messages, tools=tools):
                yield item
        finally:
            self.closed += 1
            self.changed.set()

    async def until_closed(self, n: int) -> None:
        async with asyncio.timeout(RECV_TIMEOUT_S):
            while self.closed < n:
                self.changed.clear()
                await self.changed.wait()


async def test_the_next_question_is_asked_while_it_commits_and_its_turn_takes_that_reply(harness, monkeypatch):
    provider: ScriptedProvider = harness.provider
    ws, cid = await start(harness)
    await ws.ok("message.send", conversation_id=cid, client_msg_id="1", content="first question")
    await harness.drain_ai()
    release, sending = await _ask_while_it_commits(harness, monkeypatch, ws, cid)
    assert not sending.done()  # asked before the message was stored and acknowledged
    assert [m["content"] for m in provider.calls[-1][1:]] == ["first question", "Hello, world", "second question"]
    assert await stored_senders(harness, cid) == ["customer", "ai"]  # not stored yet
    release.set()
    assert (await sending)["message"]["seq"] == 3
    await harness.drain_ai()
    assert len(provider.calls) == 2  # the turn took the reply asked while the message committed
    assert await stored_senders(harness, cid) == ["customer", "ai", "customer", "ai"]


async def test_a_question_asked_ahead_as_the_last_turn_ends_is_kept_for_its_own_turn(harness, monkeypatch):
    """The last turn's task ends (nothing more due: the question is not stored yet) after the question was
    asked ahead of its commit: that reply is kept for the question's turn, not dropped with the old task."""
    provider: ScriptedProvider = harness.provider
    ending, ends_go_on = _hold_turn_ends(harness, monkeypatch)
    ws, cid = await start(harness)
    await ws.ok("message.send", conversation_id=cid, client_msg_id="1", content="first question")
    async with asyncio.timeout(RECV_TIMEOUT_S):
        await ending.wait()
    commits_go_on, sending = await _ask_while_it_commits(harness, monkeypatch, ws, cid)
    ends_go_on.set()
    await harness.drain_ai()  # the last turn's task ended, with nothing newer announced
    commits_go_on.set()
    await sending
    await harness.drain_ai()
    assert len(provider.calls) == 2  # the question's turn took the reply asked ahead: none asked twice
    assert await stored_senders(harness, cid) == ["customer", "ai", "customer", "ai"]


async def test_a_question_whose_turn_took_its_early_reply_before_it_was_announced_is_not_asked_again(
        harness, monkeypatch):
    """The last turn's look for anything newer (another instance asked for a turn meanwhile) finds the
    question committed before its own handler announced it (CustomerWrote) and answers it with the reply
    asked while it committed: the announcement that follows asks the provider nothing more (a request
    nobody reads is a request paid for)."""
    provider: ScriptedProvider = harness.provider
    store, messages = harness.app[keys.STORE], harness.app[keys.AI_RUNNER].messages
    looked, looks_go_on, announce = asyncio.Event(), asyncio.Event(), asyncio.Event()
    recent, handoff_asked = store.messages.recent, messages.handoff_asked

    async def held_look(conversation_id, limit):
        if limit == 1 and not looks_go_on.is_set():  # the first turn's look for anything newer
            looked.set()
            await looks_go_on.wait()
        return await recent(conversation_id, limit)

    async def held_announcement(conversation, message, *, late=False):
        if not late:  # the customer's handler, between the commit and CustomerWrote
            await announce.wait()
        return await handoff_asked(conversation, message, late=late)

    monkeypatch.setattr(store.messages, "recent", held_look)
    monkeypatch.setattr(messages, "handoff_asked", held_announcement)
    _asked_elsewhere_at_each_release(harness, monkeypatch)
    ws, cid = await start(harness)
    announce.set()
    first = (await ws.ok("message.send", conversation_id=cid, client_msg_id="1", content="first question"))["message"]
    async with asyncio.timeout(RECV_TIMEOUT_S):
        await looked.wait()
    announce.clear()
    provider.started.clear()
    provider.gate = asyncio.Event()  # the second reply streams its first piece, then waits
    sending = asyncio.ensure_future(ws.ok("message.send", conversation_id=cid, client_msg_id="2",
                                          content="second question"))
    async with asyncio.timeout(RECV_TIMEOUT_S):
        await provider.started.wait()  # asked while it commits
        while await stored_senders(harness, cid) != ["customer", "ai", "customer"]:
            await asyncio.sleep(0)  # committed, its announcement held
    looks_go_on.set()  # the first turn's look finds it and streams the reply asked while it committed
    streams = harness.app[keys.AI_RUNNER].streams
    async with asyncio.timeout(RECV_TIMEOUT_S):
        while (live := (await streams.read(cid)).stream) is None or live.reply_to == first["id"] or live.index < 0:
            await asyncio.sleep(0)  # its first piece is out
    announce.set()  # announced while that reply streams
    await sending
    provider.gate.set()
    await harness.drain_ai()
    assert len(provider.calls) == 2  # one request per question
    assert await stored_senders(harness, cid) == ["customer", "ai", "customer", "ai"]


async def test_a_conversation_longer_than_the_context_is_asked_once_per_turn(harness_factory, monkeypatch):
    """Beyond AI_CONTEXT_MESSAGES the question is still asked early, on the same window as the turn's read
    (the oldest message drops out): the turn takes that reply, none is asked twice."""
    h = await harness_factory(ai_context_messages=3)
    provider: ScriptedProvider = h.provider
    ws, cid = await start(h)
    await ws.ok("message.send", conversation_id=cid, client_msg_id="1", content="question 1")
    await ws.event("message.created", lambda f: f["data"]["message"]["seq"] == 2)  # its reply
    await h.drain_ai()
    for n in range(2, 6):
        release = _hold_history_reads(h, monkeypatch)
        provider.started.clear()
        await ws.ok("message.send", conversation_id=cid, client_msg_id=str(n), content=f"question {n}")
        async with asyncio.timeout(RECV_TIMEOUT_S):
            await provider.started.wait()  # asked before the turn could read its history: early
        release.set()
        await ws.event("message.created", lambda f, n=n: f["data"]["message"]["seq"] == 2 * n)
        await h.drain_ai()
        monkeypatch.undo()
    assert len(provider.calls) == 5  # one request per turn: each turn took the reply asked early
    assert [m["content"] for m in provider.calls[-1][1:]] == ["question 4", "Hello, world", "question 5"]
    assert await stored_senders(h, cid) == ["customer", "ai"] * 5


async def test_a_resend_asked_ahead_is_dropped_unseen_when_it_turns_out_stored(harness_factory):
    provider = ClosedCounting()
    h = await harness_factory(provider_=provider)
    ws, cid = await start(h)
    await ws.ok("message.send", conversation_id=cid, client_msg_id="1", content="first question")
    await h.drain_ai()
    await ws.event("message.created", lambda f: f["data"]["message"]["sender_type"] == "ai")
    again = await ws.ok("message.send", conversation_id=cid, client_msg_id="1", content="first question")
    assert again["message"]["seq"] == 1  # the stored one
    await provider.until_closed(len(provider.calls))  # the request asked ahead of it closed too
    await h.drain_ai()
    assert len(provider.calls) == 2 and provider.closed == 2
    assert await stored_senders(h, cid) == ["customer", "ai"]  # no second reply
    assert [f for f in ws.events if f["type"] == "ai.delta" and f["data"]["reply_to"] != again["message"]["id"]] == []
    assert "".join(f["data"]["delta"] for f in ws.events if f["type"] == "ai.delta") == "Hello, world"


def test_context_is_bounded_by_characters():
    def msg(seq, sender, text, private=False):
        return Message(f"m{seq}", "c", seq, sender, None, text, private, None, 0)

    history = [msg(1, "customer", "a" * 50), msg(2, "agent", "note", private=True), msg(3, "ai", "b" * 30),
               msg(4, "system", "notice"), msg(5, "customer", "c" * 30)]
    ctx = build_context("SYS", history, max_chars=70)
    assert ctx == [{"role": "system", "content": "SYS"}, {"role": "assistant", "content": "b" * 30},
                   {"role": "user", "content": "c" * 30}]
    newest_only = build_context("SYS", [msg(1, "customer", "x" * 500)], max_chars=100)
    assert newest_only[1]["content"] == "x" * 100


async def test_takeover_while_generating_stores_no_ai_message(harness):
    provider: ScriptedProvider = harness.provider
    provider.gate = asyncio.Event()
    ws, cid = await start(harness)
    await ws.ok("message.send", conversation_id=cid, client_msg_id="1", content="hello?")
    await ws.event("ai.delta")  # the reply is streaming and now waits on the gate
    agent = Identity("agent-1", "agent")
    await harness.ops.staff.remember(agent)
    await harness.ops.assignment.claim(agent, cid)
    provider.gate.set()
    await harness.drain_ai()
    stored = await harness.app[keys.STORE].messages.list_of(cid)
    assert [m.sender_type for m in stored] == ["customer", "system"]  # no AI message after the assign
    assert (await harness.repository.get(cid)).state == "human"


async def test_guard_discards_a_reply_when_another_instance_moved_the_conversation(harness):
    """The version check at the write, not only the local cancel, keeps a stale reply out."""
    provider: ScriptedProvider = harness.provider
    provider.gate = asyncio.Event()
    ws, cid = await start(harness)
    await ws.ok("message.send", conversation_id=cid, client_msg_id="1", content="hello?")
    await ws.event("ai.delta")
    # another instance assigns the conversation: straight through the repository, no local cancel
    await harness.repository.fire(cid, "assign", agent_id="agent-elsewhere")
    provider.gate.set()
    await harness.drain_ai()
    runner = harness.app[keys.AI_RUNNER]
    assert runner.discarded == 1
    assert [m.sender_type for m in await harness.app[keys.STORE].messages.list_of(cid)] == ["customer"]


async def test_second_message_during_generation_gets_one_more_turn(harness):
    provider: ScriptedProvider = harness.provider
    provider.gate = asyncio.Event()
    ws, cid = await start(harness)
    await ws.ok("message.send", conversation_id=cid, client_msg_id="1", content="one")
    await ws.event("ai.delta")
    await ws.ok("message.send", conversation_id=cid, client_msg_id="2", content="two")
    await ws.ok("message.send", conversation_id=cid, client_msg_id="3", content="three")
    provider.gate.set()
    await harness.drain_ai()
    stored = await harness.app[keys.STORE].messages.list_of(cid)
    assert [m.sender_type for m in stored] == ["customer", "customer", "customer", "ai", "ai"]
    assert len(provider.calls) == 2
    assert [m["content"] for m in provider.calls[1] if m["role"] == "user"] == ["one", "two", "three"]


async def test_a_keyword_handoff_that_fails_after_the_message_is_stored_is_made_by_the_ai_sweep(harness,
                                                                                                 monkeypatch):
    """The message is stored and acknowledged (a retry would only find it stored); the conversation's next
    AI look hands it over instead of answering it."""
    from chat.store import DatabaseError

    ws, cid = await start(harness)
    conversations = harness.ops.conversations
    fire = conversations.fire_quietly

    async def database_gone(*args, **kwargs):
        raise DatabaseError("gone")

    monkeypatch.setattr(conversations, "fire_quietly", database_gone)
    await ws.ok("message.send", conversation_id=cid, client_msg_id="1", content="我要转人工")
    monkeypatch.setattr(conversations, "fire_quietly", fire)
    await harness.drain_ai()
    assert (await harness.repository.get(cid)).state == "ai"
    await harness.app[keys.AI_RUNNER].sweep()
    await harness.drain_ai()
    # everyone hears of the move the turn made (the turn is not cancelled by its own move halfway through it)
    updated = await ws.event("conversation.updated", lambda f: f["data"]["conversation"]["state"] == "handoff")
    assert updated["data"]["reason"] == "keyword"
    assert "system" in [m.sender_type for m in await harness.app[keys.STORE].messages.list_of(cid)]  # the notice
    assert harness.provider.calls == []  # never answered by the AI
    events = await harness.app[keys.STORE].events.list_of(cid)
    assert [(e.trigger, e.reason, e.actor_type) for e in events] == [("request_handoff", "keyword", "customer")]


async def test_a_keyword_message_handed_over_and_given_back_is_answered_by_the_ai(harness):
    """Handed over for its phrase, then released to the AI with that message still the newest: the AI
    answers it (the handoff it asked for happened), it does not hand over again."""
    ws, cid = await start(harness)
    await ws.ok("message.send", conversation_id=cid, client_msg_id="1", content="我要转人工")
    agent = Identity("agent-1", "agent")
    await harness.ops.staff.remember(agent)
    await harness.ops.assignment.claim(agent, cid)
    await harness.ops.assignment.release(agent, cid)
    await harness.app[keys.STORE].db.execute(  # no notice after it: the phrase is the newest public message
        f"DELETE FROM {harness.app[keys.STORE].db.tables.messages} WHERE conversation_id = %s AND sender_type = %s",
        (cid, "system"))
    await harness.app[keys.AI_RUNNER].sweep()
    await harness.drain_ai()
    assert (await harness.repository.get(cid)).state == "ai"
    assert len(harness.provider.calls) == 1  # answered


@pytest.mark.parametrize("phrase", ["我要转人工", "Can I TALK TO A HUMAN please", "人工客服在吗"])
async def test_keyword_handoff(harness, phrase):
    ws, cid = await start(harness)
    await ws.ok("message.send", conversation_id=cid, client_msg_id="1", content=phrase)
    upd = await ws.event("conversation.updated")
    assert upd["data"]["conversation"]["state"] == "handoff" and upd["data"]["reason"] == "keyword"
    await harness.drain_ai()
    assert harness.provider.calls == []  # no AI turn for a handoff phrase
    events = await harness.app[keys.STORE].events.list_of(cid)
    assert [(e.trigger, e.reason) for e in events] == [("request_handoff", "keyword")]


@pytest.mark.parametrize("text", ["human", "I am human", "人工", "agent"])
async def test_common_words_do_not_hand_off(harness, text):
    ws, cid = await start(harness)
    await ws.ok("message.send", conversation_id=cid, client_msg_id="1", content=text)
    await harness.drain_ai()
    assert (await harness.repository.get(cid)).state == "ai"


async def test_tool_call_handoff(harness_factory):
    h = await harness_factory(provider_=ScriptedProvider([ToolCall("transfer_to_human", {"reason": "refund dispute"})]))
    ws, cid = await start(h)
    await ws.ok("message.send", conversation_id=cid, client_msg_id="1", content="I want my money back")
    upd = await ws.event("conversation.updated")
    assert upd["data"]["conversation"]["state"] == "handoff"
    assert upd["data"]["reason"] == "ai_decision: refund dispute"
    await h.drain_ai()
    events = await h.app[keys.STORE].events.list_of(cid)
    assert [(e.trigger, e.actor_type, e.reason) for e in events] == [
        ("request_handoff", "ai", "ai_decision: refund dispute")]


@pytest.mark.parametrize(
    "chunks",
    [
        [AIError("Throttling.RateQuota", "retries exhausted", status=429)],
        ["partial answer", AIError("stream_error", "connection reset mid-stream")],
    ],
)
async def test_failed_turn_stores_nothing_and_hands_off(harness_factory, chunks):
    h = await harness_factory(provider_=ScriptedProvider(chunks))
    ws, cid = await start(h)
    await ws.ok("message.send", conversation_id=cid, client_msg_id="1", content="hi")
    upd = await ws.event("conversation.updated")
    assert upd["data"]["reason"] == "ai_failure" and upd["data"]["conversation"]["state"] == "handoff"
    await h.drain_ai()
    stored = await h.app[keys.STORE].messages.list_of(cid)
    assert [m.sender_type for m in stored] == ["customer", "system"]


async def test_failures_before_handoff_is_a_setting(harness_factory):
    h = await harness_factory(
        provider_=ScriptedProvider([AIError("http_500", "boom", status=500)]), ai_failures_before_handoff=2
    )
    ws, cid = await start(h)
    sent = (await ws.ok("message.send", conversation_id=cid, client_msg_id="1", content="hi"))["message"]
    await h.drain_ai()
    assert (await h.repository.get(cid)).state == "ai"
    failed = await ws.event("ai.failed")
    assert failed["data"] == {"conversation_id": cid, "reply_to": sent["id"], "code": "http_500"}
    await ws.ok("message.send", conversation_id=cid, client_msg_id="2", content="hello?")
    await h.drain_ai()
    assert (await h.repository.get(cid)).state == "handoff"


async def test_end_to_end_with_a_fake_dashscope_over_http(aiohttp_server, harness_factory):
    from tests.ai.fake_dashscope import FakeDashScope

    fake = FakeDashScope()
    server = await aiohttp_server(fake.app())
    h = await harness_factory(
        provider_=None, ai_provider="dashscope", dashscope_api_key=fake.api_key,
        dashscope_base_url=str(server.make_url("/api/v1")),
    )
    assert h.app[keys.AI_PROVIDER].name == "dashscope"  # built from the settings
    ws, cid = await start(h)
    await ws.ok("message.send", conversation_id=cid, client_msg_id="1", content="你好")
    created = await ws.event("message.created", lambda f: f["data"]["message"]["sender_type"] == "ai")
    assert created["data"]["message"]["content"] == "你好！我是通义千问。"
    assert fake.requests[-1]["json"]["input"]["messages"][-1] == {"role": "user", "content": "你好"}
    fake.release()


# --- recovery: short renewed locks, the sweep, bounded bookkeeping (issue 10.7) -------------------

async def stored_senders(h, cid):
    return [m.sender_type for m in await h.app[keys.STORE].messages.list_of(cid)]


async def test_a_killed_instances_lock_runs_out_and_the_sweep_answers_once(harness_factory):
    h = await harness_factory(ai_sweep_interval_s=0)
    runner, redis = h.app[keys.AI_RUNNER], h.app[keys.REDIS]
    ws, cid = await start(h)
    lock = redis_keys.ai_turn(cid)
    # an instance was killed mid-turn: its lock outlives it, but only by the short TTL
    await redis.set(lock, "killed-instance", px=int(h.settings.ai_turn_lock_s * 1000))
    await ws.ok("message.send", conversation_id=cid, client_msg_id="1", content="anyone there?")
    await h.drain_ai()
    await runner.sweep()
    await h.drain_ai()
    assert h.provider.calls == [] and await stored_senders(h, cid) == ["customer"]  # the lock still runs
    assert 0 < await redis.pttl(lock) <= 15_000

    await redis.delete(lock)  # the lock ran out
    await runner.sweep()
    await h.drain_ai()
    assert await stored_senders(h, cid) == ["customer", "ai"]
    await runner.sweep()  # answered: nothing more to do
    await h.drain_ai()
    assert len(h.provider.calls) == 1 and await stored_senders(h, cid) == ["customer", "ai"]
    assert runner.tracked() == 0


async def test_the_periodic_sweep_answers_without_being_called(harness_factory):
    h = await harness_factory(ai_sweep_interval_s=0.05)
    redis = h.app[keys.REDIS]
    ws, cid = await start(h)
    await redis.set(redis_keys.ai_turn(cid), "killed-instance", px=15_000)
    await ws.ok("message.send", conversation_id=cid, client_msg_id="1", content="still there?")
    await h.drain_ai()
    await redis.delete(redis_keys.ai_turn(cid))
    created = await ws.event("message.created", lambda f: f["data"]["message"]["sender_type"] == "ai")
    assert created["data"]["conversation_id"] == cid


async def test_two_instances_sweeping_at_once_answer_once(harness_factory, tmp_path):
    # one database of this test alone (the sweep walks every conversation in `ai`)
    url = f"sqlite:///{tmp_path}/shared.db"
    a = await harness_factory(database_url=url, provider_=ScriptedProvider(["from A"]), ai_sweep_interval_s=0)
    b = await harness_factory(database_url=url, provider_=ScriptedProvider(["from B"]), ai_sweep_interval_s=0)
    redis = a.app[keys.REDIS]
    ws, cid = await start(a)
    await redis.set(redis_keys.ai_turn(cid), "killed-instance", px=15_000)
    await ws.ok("message.send", conversation_id=cid, client_msg_id="1", content="hello?")
    await a.drain_ai()
    await redis.delete(redis_keys.ai_turn(cid))
    for _ in range(3):
        await asyncio.gather(a.app[keys.AI_RUNNER].sweep(), b.app[keys.AI_RUNNER].sweep())
        await asyncio.gather(a.drain_ai(), b.drain_ai())
    assert await stored_senders(a, cid) == ["customer", "ai"]
    assert len(a.provider.calls) + len(b.provider.calls) == 1


async def test_a_message_another_instance_stored_before_the_unlock_is_answered_after_it(harness_factory, tmp_path,
                                                                                        monkeypatch):
    """The other instance finds the lock busy, leaves the message and flags the lock; the holder's release
    finds the flag, and it looks again (the small newest-message read finds the message)."""
    url = f"sqlite:///{tmp_path}/shared.db"
    a = await harness_factory(database_url=url, provider_=ScriptedProvider(["from A"]), ai_sweep_interval_s=0)
    b = await harness_factory(database_url=url, provider_=ScriptedProvider(["from B"]), ai_sweep_interval_s=0)
    ws_a, cid = await start(a)
    ws_b = await b.connect("cust-1")
    locks = a.app[keys.AI_RUNNER].locks
    release = locks.release

    async def release_after_a_message_on_b(conversation_id, token):
        monkeypatch.setattr(locks, "release", release)
        await ws_b.ok("message.send", conversation_id=cid, client_msg_id="2", content="and another thing")
        await b.drain_ai()  # b's turn found the lock busy
        return await release(conversation_id, token)

    monkeypatch.setattr(locks, "release", release_after_a_message_on_b)
    await ws_a.ok("message.send", conversation_id=cid, client_msg_id="1", content="hello?")
    await a.drain_ai()
    assert await stored_senders(a, cid) == ["customer", "ai", "customer", "ai"]
    assert (len(a.provider.calls), len(b.provider.calls)) == (2, 0)


async def test_a_question_announced_while_the_turn_looks_for_more_is_answered(harness, monkeypatch):
    """The turn's last look (another instance asked for a turn meanwhile) read before the question was
    stored; its announcement came while the read was on its way back: the next turn answers it, not a later
    sweep."""
    store, looked, go_on = harness.app[keys.STORE], asyncio.Event(), asyncio.Event()
    recent = store.messages.recent

    async def small_read_back_late(conversation_id, limit):
        rows = await recent(conversation_id, limit)
        if limit == 1 and not go_on.is_set():
            looked.set()
            await go_on.wait()
        return rows

    monkeypatch.setattr(store.messages, "recent", small_read_back_late)
    _asked_elsewhere_at_each_release(harness, monkeypatch)
    ws, cid = await start(harness)
    await ws.ok("message.send", conversation_id=cid, client_msg_id="1", content="first question")
    async with asyncio.timeout(RECV_TIMEOUT_S):
        await looked.wait()  # the reply is stored; the turn's look for more has read
    await ws.ok("message.send", conversation_id=cid, client_msg_id="2", content="second question")
    go_on.set()
    await harness.drain_ai()
    assert await stored_senders(harness, cid) == ["customer", "ai", "customer", "ai"]


async def test_a_question_announced_as_the_turn_ends_gets_its_own_turn(harness, monkeypatch):
    """Between a turn's end and its task's removal, an announced question starts a turn (it was
    left pending on the finished one, for the sweep)."""
    runner, store = harness.app[keys.AI_RUNNER], harness.app[keys.STORE]
    release = runner.locks.release

    async def nothing_asked_then_a_question(conversation_id, token):
        monkeypatch.setattr(runner.locks, "release", release)
        asked = await release(conversation_id, token)
        await store.messages.append(conversation_id, sender_type="customer", sender_id="cust-1", content="one more")
        asyncio.get_running_loop().call_soon(runner.schedule, conversation_id)  # runs right after the turn ends
        return asked

    monkeypatch.setattr(runner.locks, "release", nothing_asked_then_a_question)
    ws, cid = await start(harness)
    await ws.ok("message.send", conversation_id=cid, client_msg_id="1", content="first question")
    await harness.drain_ai()
    assert await stored_senders(harness, cid) == ["customer", "ai", "customer", "ai"]


async def test_the_turn_lock_is_short_and_renewed_while_the_turn_runs(harness_factory):
    provider = ScriptedProvider()
    provider.gate = asyncio.Event()
    h = await harness_factory(provider_=provider, ai_turn_lock_s=6, ai_sweep_interval_s=0)
    runner, redis = h.app[keys.AI_RUNNER], h.app[keys.REDIS]
    ws, cid = await start(h)
    lock = redis_keys.ai_turn(cid)
    await ws.ok("message.send", conversation_id=cid, client_msg_id="1", content="hi")
    await ws.event("ai.delta")  # the turn holds the lock and waits on the gate
    assert 0 < await redis.pttl(lock) <= 6_000
    await redis.pexpire(lock, 500)  # nearly run out
    await runner.locks.renew()
    assert await redis.pttl(lock) > 5_000
    await redis.set(lock, "another-instance", px=6_000)  # lost meanwhile: the turn stops
    await runner.locks.renew()
    await h.drain_ai()
    provider.gate.set()
    assert await stored_senders(h, cid) == ["customer"]
    assert await redis.get(lock) == b"another-instance"  # not ours to release
    assert runner.tracked() == 0


async def test_a_busy_lock_asks_its_holder_to_look_again_and_a_release_tells_it(harness):
    """Another instance that finds the lock busy leaves the flag; the release says so (and clears it),
    says nothing when none was left, and says "look" when the lock was no longer this turn's."""
    from chat.ai_locks import TurnLocks

    redis = harness.app[keys.REDIS]
    here, elsewhere = TurnLocks(redis, 15, lambda _: None), TurnLocks(redis, 15, lambda _: None)
    token = await here.take("c1")
    assert token and await here.release("c1", token) is False  # nobody asked
    token = await here.take("c1")
    assert await elsewhere.take("c1") is None  # busy: asks
    assert await redis.exists(redis_keys.ai_asked("c1"))
    assert await here.release("c1", token) is True
    assert not await redis.exists(redis_keys.ai_asked("c1"), redis_keys.ai_turn("c1"))
    token = await here.take("c1")
    await redis.set(redis_keys.ai_turn("c1"), "taken-meanwhile")
    lost: list[str] = []
    here._lost = lost.append
    await here.renew()
    await here.renew()
    assert lost == ["c1"]  # reported once: a second cancel would cut the turn's end short
    assert await here.release("c1", token) is True  # not ours any more: another turn may have run
    await redis.delete(redis_keys.ai_turn("c1"))
    await redis.set(redis_keys.ai_asked("c1"), "1")  # left by an asker whose holder was lost
    token = await here.take("c1")  # this turn reads every message: the old flag goes
    assert token and await here.release("c1", token) is False
    token = await here.take("c1")  # a turn longer than the lock's time: the flag lasts as long as the lock
    assert await elsewhere.take("c1") is None
    await redis.pexpire(redis_keys.ai_asked("c1"), 500)
    await here.renew()
    assert await redis.pttl(redis_keys.ai_asked("c1")) > 5_000
    assert await here.release("c1", token) is True
    await here.close()
    await elsewhere.close()


async def test_a_turn_that_stored_its_reply_with_nobody_asking_reads_nothing_more(harness, monkeypatch):
    """Messages announced here are pending, another instance's are flagged by its busy take: after a
    stored reply with neither, the turn's task ends without another read (one history read a question)."""
    store = harness.app[keys.STORE]
    recent, reads = store.messages.recent, []

    async def counted(conversation_id, limit):
        reads.append(limit)
        return await recent(conversation_id, limit)

    monkeypatch.setattr(store.messages, "recent", counted)
    ws, cid = await start(harness)
    for n in ("1", "2"):
        await ws.ok("message.send", conversation_id=cid, client_msg_id=n, content=f"question {n}")
        await harness.drain_ai()
    assert reads == [harness.settings.ai_context_messages] * 2
    assert await stored_senders(harness, cid) == ["customer", "ai", "customer", "ai"]


async def test_a_reply_stored_after_a_message_nobody_announced_here_looks_again(harness):
    """A message stored during the turn by an instance that left no flag (an older version's busy take):
    the reply did not directly follow its question, so the turn looks again and answers it."""
    provider: ScriptedProvider = harness.provider
    provider.gate = asyncio.Event()
    ws, cid = await start(harness)
    await ws.ok("message.send", conversation_id=cid, client_msg_id="1", content="hello?")
    await ws.event("ai.delta")
    await harness.app[keys.STORE].messages.append(cid, sender_type="customer", sender_id="cust-1", content="and?")
    provider.gate.set()
    await harness.drain_ai()
    assert await stored_senders(harness, cid) == ["customer", "customer", "ai", "ai"]
    assert len(provider.calls) == 2


async def test_bookkeeping_is_empty_after_the_turns_end(harness):
    provider: ScriptedProvider = harness.provider
    runner = harness.app[keys.AI_RUNNER]
    for i in range(5):
        ws, cid = await start(harness, sub=f"cust-{i}")
        await ws.ok("message.send", conversation_id=cid, client_msg_id="1", content="one")
        await harness.drain_ai()
    provider.gate = asyncio.Event()  # a reply stored after a newer question: the order is remembered, then not
    two = (await ws.ok("message.send", conversation_id=cid, client_msg_id="2", content="two"))["message"]
    # the delta of this turn (the first exchange's deltas are still buffered: they would not show it started)
    await ws.event("ai.delta", lambda f: f["data"]["reply_to"] == two["id"])
    await ws.ok("message.send", conversation_id=cid, client_msg_id="3", content="three")
    provider.gate.set()
    await harness.drain_ai()
    assert await stored_senders(harness, cid) == ["customer", "ai", "customer", "customer", "ai", "ai"]
    assert runner.tracked() == 0


async def test_a_failed_turn_is_not_retried_by_this_instances_sweep(harness_factory):
    h = await harness_factory(provider_=ScriptedProvider([AIError("http_500", "boom", status=500)]),
                              ai_failures_before_handoff=2, ai_sweep_interval_s=0)
    runner = h.app[keys.AI_RUNNER]
    ws, cid = await start(h)
    await ws.ok("message.send", conversation_id=cid, client_msg_id="1", content="hi")
    await h.drain_ai()
    await ws.event("ai.failed")
    await runner.sweep()
    await h.drain_ai()
    assert len(h.provider.calls) == 1  # the customer resends, as after any ai.failed
    assert runner.tracked() == 1  # the failure counts towards the handoff


def test_kept_histories_follow_the_seqs_and_are_bounded_by_characters():
    def msg(seq, text="x", sender="customer"):
        return Message(f"m{seq}", "c", seq, sender, None, text, False, None, 0)

    kept = Histories(messages=3, max_chars=10)
    kept.keep("a", [msg(1), msg(2, sender="ai")])
    kept.extend("a", msg(3))
    kept.extend("a", msg(4))
    upcoming = kept.then("a", "next")  # a message about to be stored: the window the next turn reads
    assert [(m.seq, m.content) for m in upcoming] == [(3, "x"), (4, "x"), (5, "next")]
    assert [m.seq for m in kept.take("a")] == [2, 3, 4]  # the newest three, left in place by then(), handed over once
    assert kept.take("a") is None
    kept.keep("a", [msg(1)])
    kept.extend("a", msg(3))  # seq 2 was stored elsewhere: what is kept here is behind
    assert kept.take("a") is None
    kept.keep("a", [msg(1), msg(2, sender="ai")])
    kept.extend("a", Message("m3", "c", 3, "agent", "agent-1", "a private note", True, None, 0))
    assert [(m.seq, m.content) for m in kept.then("a", "next")] == [(1, "x"), (2, "x"), (4, "next")]  # not the note
    kept.extend("a", msg(4))  # the next after the note's seq
    assert [m.seq for m in kept.take("a")] == [1, 2, 4]
    kept.keep("a", [msg(1, "x" * 6)])
    kept.keep("b", [msg(1, "y" * 6)])  # 12 characters: the least recently kept goes
    assert kept.take("a") is None and len(kept) == 1


def test_memories_are_bounded():
    memories = Memories(max_entries=2)
    for cid in ("a", "b", "c"):
        memories.touch(cid).failures = 1
    memories.touch("b")
    memories.touch("d")
    assert len(memories) == 2 and memories.peek("a").failures == 0 and memories.peek("b").failures == 1
    memories.touch("b").failures = 0
    memories.settle("b")
    assert len(memories) == 1


async def test_a_turn_cancelled_at_shutdown_is_logged_as_cancelled(harness, monkeypatch, caplog):
    """The shutdown waits WRITE_WAIT_S for the reply's write (here stuck for good), then cancels it too."""
    from chat import ai_reply

    monkeypatch.setattr(ai_reply, "WRITE_WAIT_S", 0.05)
    runner = harness.app[keys.AI_RUNNER]
    writing = asyncio.Event()

    real = harness.ops.messages.append

    async def stuck_write(conversation, **kwargs):
        if kwargs["sender_type"] != "ai":
            return await real(conversation, **kwargs)
        writing.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:  # what a driver cancelled mid-query may raise instead
            raise DatabaseError("Cancelled during execution") from None

    monkeypatch.setattr(harness.ops.messages, "append", stuck_write)
    ws, cid = await start(harness)
    await ws.ok("message.send", conversation_id=cid, client_msg_id="1", content="hi")
    await writing.wait()
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="chat.ai_turn"):
        await runner.close()
    assert [r.levelno for r in caplog.records] == [logging.INFO]
    assert "cancelled: the instance is shutting down" in caplog.records[0].getMessage()


async def test_a_stale_live_record_saying_ai_does_not_stream_into_a_conversation_a_human_holds(harness):
    """Redis restored from an older snapshot says `ai`; SQL says an agent holds the conversation: the
    turn reads the record checked against SQL, so no reply is streamed (fault suite, item 1)."""
    ws, cid = await start(harness)
    redis, key = harness.app[keys.REDIS], redis_keys.session(cid)
    snapshot = await redis.get(key)
    agent = Identity("agent-1", "agent")
    await harness.ops.staff.remember(agent)
    await harness.ops.assignment.claim(agent, cid)
    await redis.set(key, snapshot)
    # a customer message stored by an instance that read the stale record; the turn runs here
    await harness.app[keys.STORE].messages.append(cid, sender_type="customer", sender_id="cust-1",
                                                  content="still there?")
    harness.app[keys.AI_RUNNER].schedule(cid)
    await harness.drain_ai()
    assert harness.provider.calls == []
    assert (await harness.repository.get(cid)).state == "human"  # and the turn's read repaired the record


async def test_a_reply_discarded_because_the_conversation_moved_and_came_back_is_written_again(harness):
    """The conversation went to `handoff` and back to `ai` during the turn: the reply is discarded (it
    answered another version) and the message is taken on once more, not left unanswered."""
    provider: ScriptedProvider = harness.provider
    provider.gate = asyncio.Event()
    ws, cid = await start(harness)
    await ws.ok("message.send", conversation_id=cid, client_msg_id="1", content="hello?")
    await ws.event("ai.delta")
    await harness.repository.fire(cid, "request_handoff")  # straight through: no local cancel
    await harness.repository.fire(cid, "release")
    provider.gate.set()
    await harness.drain_ai()
    assert harness.app[keys.AI_RUNNER].discarded == 1
    senders = [m.sender_type for m in await harness.app[keys.STORE].messages.list_of(cid)]
    assert senders == ["customer", "ai"] and len(provider.calls) == 2


class FailsOnce(ScriptedProvider):
    """A dependency going away mid-turn (not an AI error): the first turn breaks, later ones work."""

    def __init__(self) -> None:
        super().__init__()
        self.broken = False

    async def stream(self, messages, *, tools=None):
        if not self.broken:
            self.broken = True
            raise ConnectionError("Redis went away while publishing a delta")
        async for item in super().stream(messages, tools=tools):
            yield item


async def test_a_turn_broken_by_a_dependency_is_taken_on_again_by_the_sweep(harness_factory):
    h = await harness_factory(provider_=FailsOnce())
    ws, cid = await start(h)
    await ws.ok("message.send", conversation_id=cid, client_msg_id="1", content="hello?")
    await h.drain_ai()
    assert [m.sender_type for m in await h.app[keys.STORE].messages.list_of(cid)] == ["customer"]
    runner = h.app[keys.AI_RUNNER]
    assert await runner.sweep() == 1
    await h.drain_ai()
    assert [m.sender_type for m in await h.app[keys.STORE].messages.list_of(cid)] == ["customer", "ai"]


async def test_a_lock_that_cannot_be_released_runs_out_and_the_turn_ends_cleanly(harness, monkeypatch, caplog):
    """Redis went away after the reply was stored: the release failed out of the turn's task ('Task
    exception was never retrieved'); it is logged now, and the lock runs out by itself."""
    from redis.exceptions import ConnectionError as RedisConnectionError

    locks = harness.app[keys.AI_RUNNER].locks

    async def redis_away(**kwargs):
        raise RedisConnectionError("Connection refused")

    monkeypatch.setattr(locks, "_unlock", redis_away)
    ws, cid = await start(harness)
    with caplog.at_level(logging.WARNING, logger="chat.ai_locks"):
        await ws.ok("message.send", conversation_id=cid, client_msg_id="1", content="hi")
        await harness.drain_ai()
    assert await stored_senders(harness, cid) == ["customer", "ai"]
    assert any("could not release the AI turn lock" in r.getMessage() for r in caplog.records)
    assert locks.held == set()


async def test_a_stream_emptied_from_redis_mid_reply_is_told_and_the_message_answered_again(harness):
    """Redis emptied while the AI streamed (nothing moved the conversation): the turn stopped with no
    ai.interrupted and left the message marked tried, so no sweep answered it: the customer waited for ever."""
    provider: ScriptedProvider = harness.provider
    provider.gate = asyncio.Event()
    ws, cid = await start(harness)
    await ws.ok("message.send", conversation_id=cid, client_msg_id="1", content="hello?")
    first = await ws.event("ai.delta")  # streaming, waiting on the gate
    await harness.app[keys.REDIS].delete(harness.app[keys.AI_RUNNER].streams.key(cid))  # what FLUSHALL does to it
    provider.gate.set()
    await harness.drain_ai()
    ended = await ws.event("ai.interrupted")
    assert ended["data"] == {"conversation_id": cid, "turn_id": first["data"]["turn_id"], "reason": "superseded"}
    assert await stored_senders(harness, cid) == ["customer", "ai"]  # answered by the next turn
    assert len(provider.calls) == 2


async def test_a_stream_emptied_from_redis_as_the_reply_ends_is_told_and_the_message_answered_again(harness,
                                                                                                     monkeypatch):
    """Redis emptied after the last delta, before the turn ended its stream: the reply is not stored, and
    the subscribers are told (they had streamed text that no message.created would replace)."""
    provider: ScriptedProvider = harness.provider
    streams = harness.app[keys.AI_RUNNER].streams
    end = streams.end

    async def emptied_first(conversation, turn_id, reason):
        monkeypatch.setattr(streams, "end", end)
        await harness.app[keys.REDIS].delete(streams.key(conversation.id))  # what FLUSHALL does to it
        return await end(conversation, turn_id, reason)

    monkeypatch.setattr(streams, "end", emptied_first)
    ws, cid = await start(harness)
    await ws.ok("message.send", conversation_id=cid, client_msg_id="1", content="hello?")
    first = await ws.event("ai.delta")
    await harness.drain_ai()
    ended = await ws.event("ai.interrupted")
    assert ended["data"] == {"conversation_id": cid, "turn_id": first["data"]["turn_id"], "reason": "superseded"}
    assert await stored_senders(harness, cid) == ["customer", "ai"]  # answered by the next turn
    assert len(provider.calls) == 2


async def test_a_streamed_reply_the_database_cannot_store_is_told_interrupted(harness, monkeypatch):
    """The database away after the stream ended: the subscribers had the whole reply and never heard that
    it would not be stored (a later turn then streamed a second one)."""
    from chat.store import DatabaseError

    messages = harness.ops.messages
    append = messages.append

    async def database_away_for_the_ai(conversation, **kwargs):
        if kwargs.get("sender_type") == "ai":
            raise DatabaseError("the database is away")
        return await append(conversation, **kwargs)

    monkeypatch.setattr(messages, "append", database_away_for_the_ai)
    ws, cid = await start(harness)
    await ws.ok("message.send", conversation_id=cid, client_msg_id="1", content="hello?")
    await harness.drain_ai()
    delta = await ws.event("ai.delta")
    ended = await ws.event("ai.interrupted")
    assert ended["data"] == {"conversation_id": cid, "turn_id": delta["data"]["turn_id"], "reason": "superseded"}
    assert await stored_senders(harness, cid) == ["customer"]


async def test_a_reply_to_a_question_another_turn_answered_meanwhile_is_not_stored(harness):
    """This turn's lock ran out while it streamed (a stalled link) and another instance's turn answered the
    question: the version is the same, but the reply is refused, not stored a second time."""
    provider: ScriptedProvider = harness.provider
    provider.gate = asyncio.Event()
    ws, cid = await start(harness)
    await ws.ok("message.send", conversation_id=cid, client_msg_id="1", content="hello?")
    first = await ws.event("ai.delta")
    # the other instance's reply, stored as its turn stores one (the conversation's version unchanged)
    await harness.app[keys.STORE].messages.append(cid, sender_type="ai", content="from the other instance")
    provider.gate.set()
    await harness.drain_ai()
    stored = await harness.app[keys.STORE].messages.list_of(cid)
    assert [(m.sender_type, m.content) for m in stored] == [("customer", "hello?"), ("ai", "from the other instance")]
    ended = await ws.event("ai.interrupted")
    assert ended["data"] == {"conversation_id": cid, "turn_id": first["data"]["turn_id"], "reason": "superseded"}
    assert len(provider.calls) == 1  # answered: no turn after it


async def test_a_turn_cancelled_while_its_reply_is_written_still_announces_it(harness, monkeypatch):
    """The cancel (here a lost lock; a takeover or a shutdown the same) came while the reply's commit was
    on its way: the reply was stored, and its message.created must still reach the subscribers, whose
    stream had ended with no other word."""
    ws, cid = await start(harness)
    await ws.ok("message.send", conversation_id=cid, client_msg_id="1", content="hello?")
    writing, go_on = _hold_message_commits(harness, monkeypatch)  # from now on: the AI's reply
    async with asyncio.timeout(RECV_TIMEOUT_S):
        await writing.wait()
    runner = harness.app[keys.AI_RUNNER]
    runner._lock_lost(cid)  # the turn is cancelled
    go_on.set()
    created = await ws.event("message.created", lambda f: f["data"]["message"]["sender_type"] == "ai")
    assert created["data"]["message"]["content"] == "Hello, world"
    await harness.drain_ai()
    assert await stored_senders(harness, cid) == ["customer", "ai"]


async def test_a_reply_committed_whose_answer_was_lost_is_announced_not_told_interrupted(harness, monkeypatch):
    """The commit went through and the connection died before its answer came back: the reply is stored,
    so the subscribers get its message.created (before: `superseded`, and nobody answered again)."""
    from chat.store import DatabaseError

    messages = harness.app[keys.STORE].messages
    ws, cid = await start(harness)
    await ws.ok("message.send", conversation_id=cid, client_msg_id="1", content="hello?")
    for name in ("append_batch", "append_draft"):  # from now on: the AI's reply
        write = getattr(messages, name)

        async def committed_then_lost(drafts, write=write):
            await write(drafts)
            raise DatabaseError("(2006, 'MySQL server has gone away')")

        monkeypatch.setattr(messages, name, committed_then_lost)
    created = await ws.event("message.created", lambda f: f["data"]["message"]["sender_type"] == "ai")
    assert created["data"]["message"]["content"] == "Hello, world"
    await harness.drain_ai()
    assert [f for f in ws.events if f["type"] == "ai.interrupted"] == []
    assert await stored_senders(harness, cid) == ["customer", "ai"]
    assert len(harness.provider.calls) == 1


async def test_a_turn_cancelled_while_it_ends_its_stream_still_stores_and_announces_the_reply(harness, monkeypatch):
    """The cancel came while the stream's end was on its way to Redis (before: the stream ended, nothing
    stored, nobody told)."""
    streams, ending, go_on = harness.app[keys.AI_RUNNER].streams, asyncio.Event(), asyncio.Event()
    end = streams.end

    async def slow_end(conversation, turn_id, reason):
        if reason is None:
            ending.set()
            await go_on.wait()
        return await end(conversation, turn_id, reason)

    monkeypatch.setattr(streams, "end", slow_end)
    ws, cid = await start(harness)
    await ws.ok("message.send", conversation_id=cid, client_msg_id="1", content="hello?")
    async with asyncio.timeout(RECV_TIMEOUT_S):
        await ending.wait()
    harness.app[keys.AI_RUNNER]._lock_lost(cid)  # the turn is cancelled
    go_on.set()
    created = await ws.event("message.created", lambda f: f["data"]["message"]["sender_type"] == "ai")
    assert created["data"]["message"]["content"] == "Hello, world"
    await harness.drain_ai()
    assert await stored_senders(harness, cid) == ["customer", "ai"]


async def test_a_cancelled_turn_holds_its_lock_until_its_reply_is_written_whatever_cancels_come(harness, monkeypatch):
    """Shutdown (runner.close) and a second cancel while the reply's write waits on the database: the turn
    keeps its lock and close() waits, until the write is done and announced."""
    runner, redis = harness.app[keys.AI_RUNNER], harness.app[keys.REDIS]
    ws, cid = await start(harness)
    await ws.ok("message.send", conversation_id=cid, client_msg_id="1", content="hello?")
    writing, go_on = _hold_message_commits(harness, monkeypatch)  # from now on: the AI's reply
    async with asyncio.timeout(RECV_TIMEOUT_S):
        await writing.wait()
    turn = runner._tasks[cid]
    closing = asyncio.ensure_future(runner.close())
    for _ in range(5):
        await asyncio.sleep(0)
    turn.cancel()  # a second cancel
    for _ in range(5):
        await asyncio.sleep(0)
    assert not closing.done() and await redis.exists(redis_keys.ai_turn(cid))
    go_on.set()
    await closing
    created = await ws.event("message.created", lambda f: f["data"]["message"]["sender_type"] == "ai")
    assert created["data"]["message"]["content"] == "Hello, world"
    assert not await redis.exists(redis_keys.ai_turn(cid))


async def test_a_failed_write_does_not_adopt_another_turns_identical_reply(harness, monkeypatch):
    """The write failed (nothing committed) and another turn's reply with the same text is stored after the
    history this turn read: it is not taken for this one (looked up by the id it was written with)."""
    from chat.store import DatabaseError

    provider: ScriptedProvider = harness.provider
    provider.gate = asyncio.Event()
    store = harness.app[keys.STORE]
    ws, cid = await start(harness)
    await ws.ok("message.send", conversation_id=cid, client_msg_id="1", content="hello?")
    first = await ws.event("ai.delta")  # streaming, waiting on the gate
    await store.messages.append(cid, sender_type="ai", content="Hello, world")  # the other turn's

    async def away(drafts):
        raise DatabaseError("(2006, 'MySQL server has gone away')")

    for name in ("append_batch", "append_draft"):
        monkeypatch.setattr(store.messages, name, away)
    provider.gate.set()
    await harness.drain_ai()
    ended = await ws.event("ai.interrupted")
    assert ended["data"] == {"conversation_id": cid, "turn_id": first["data"]["turn_id"], "reason": "superseded"}
    created = [f for f in ws.events if f["type"] == "message.created"]
    assert [f["data"]["message"]["sender_type"] for f in created] == ["customer"]  # the other turn's is not ours
