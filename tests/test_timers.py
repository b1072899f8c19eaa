"""State timers (PROTOCOL 4.1) in simulated time: the table, the atomic claim, each timer's effect,
the peers' bugs (an SLA clock that outlives the conversation or restarts on a system message, a
conversation the bot could not hand off left waiting forever) and two instances sharing one index."""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from redis.exceptions import BusyLoadingError

from chat import keys
from chat.auth import Identity
from chat.conversations import texts
from chat.events import SlaBreached
from states import redis_keys
from states.business_hours import parse_hours
from states.machine import State
from states.timers import TIMERS, Armed, TimerIndex, timers_of
from tests.wsclient import AIError, ScriptedProvider

CUSTOMER = Identity("cust-1", "customer")
AGENT = Identity("agent-1", "agent")
NO_IDLE = {"ai_idle_nudge_s": 0, "ai_idle_close_s": 0, "human_idle_close_s": 0}


def test_the_table_has_one_row_per_timeout_and_members_round_trip():
    assert [(r.name, r.state.value, r.setting) for r in TIMERS] == [
        ("ai_idle_nudge", "ai", "ai_idle_nudge_s"),
        ("ai_idle_close", "ai", "ai_idle_close_s"),
        ("handoff_wait", "handoff", "handoff_wait_timeout_s"),
        ("sla_first_response", "human", "sla_first_response_s"),
        ("human_idle_close", "human", "human_idle_close_s"),
    ]
    assert timers_of(State.CLOSED) == ()
    armed = Armed(TIMERS[3], "c-1|x", 7)
    assert armed.member == "sla_first_response|7|c-1|x"
    assert Armed.parse(armed.member.encode()) == armed
    assert Armed.parse("unknown|1|c") is None and Armed.parse("handoff_wait|x|c") is None


@pytest.fixture(params=["redis", "embedded"])
async def any_redis(request, redis):
    """The real Redis, and the embedded mode's in-process one (its Lua runs the claim too)."""
    if request.param == "redis":
        yield redis
        return
    from chat.embedded_redis import EmbeddedRedis

    client = EmbeddedRedis()
    yield client
    await client.aclose()


async def test_a_due_timer_is_handed_to_one_claimer_only(any_redis):
    redis = any_redis
    await redis.delete(redis_keys.TIMERS_DUE)
    assert redis_keys.TIMERS_DUE == "timers:{timers}:due"
    index_a, index_b = TimerIndex(redis), TimerIndex(redis)
    await index_a.arm({Armed(TIMERS[0], f"c{i}", 0): 1000 + i for i in range(60)})
    await index_a.arm({Armed(TIMERS[0], "later", 0): 5000})
    got_a, got_b = await asyncio.gather(index_a.claim(2000, 7, 60_000), index_b.claim(2000, 100, 60_000))
    rest = await index_a.claim(2000, 100, 60_000)
    ids = [a.conversation_id for a, _ in got_a + got_b + rest]
    assert sorted(ids) == sorted(f"c{i}" for i in range(60))  # each once
    assert await index_a.next_due_ms() == 5000
    await redis.delete(redis_keys.TIMERS_DUE)


async def test_a_claimed_timer_is_claimed_again_when_its_lease_runs_out_unless_released(any_redis):
    """Its instance died while applying it: another takes it when the lease ends. One applied (released)
    is gone; one armed again meanwhile (another due time) stays armed."""
    redis = any_redis
    await redis.delete(redis_keys.TIMERS_DUE)
    index = TimerIndex(redis)
    died, applied, rearmed = (Armed(TIMERS[1], cid, 0) for cid in ("died", "applied", "rearmed"))
    await index.arm({died: 1000, applied: 1000, rearmed: 1000})
    assert {a for a, _ in await index.claim(2000, 100, 62_000)} == {died, applied, rearmed}
    assert await index.claim(61_999, 100, 122_000) == []  # leased: nobody else gets them
    await index.arm({rearmed: 90_000})
    assert await index.release([applied, rearmed], 62_000) == 1
    assert await index.due_of(applied) is None and await index.due_of(rearmed) == 90_000
    assert await index.claim(62_000, 100, 122_000) == [(died, 62_000)]  # the dead instance's, again
    await redis.delete(redis_keys.TIMERS_DUE)


async def messages(h, cid):
    return await h.app[keys.STORE].messages.list_of(cid, include_private=True)


async def events(h, cid):
    return await h.app[keys.STORE].events.list_of(cid)


async def test_ai_idle_nudges_once_then_closes_for_inactivity(harness_factory, sim_clock):
    h = await harness_factory()
    c = await h.ops.conversations.start(CUSTOMER)
    await h.ops.messages.send(CUSTOMER, c.id, content="hello", client_msg_id="m1")
    await h.drain_ai()
    sim_clock.advance(599)
    await h.timers.drain()
    assert [m.content for m in await messages(h, c.id) if m.sender_type == "system"] == []
    sim_clock.advance(2)
    await h.timers.drain()
    await h.timers.drain()
    assert [m.content for m in await messages(h, c.id) if m.sender_type == "system"] == [texts.IDLE_NUDGE]
    sim_clock.advance(1200)
    await h.timers.drain()
    closed = (await events(h, c.id))[-1]
    assert (closed.trigger, closed.actor_type, closed.reason) == ("close", "system", "inactivity")
    assert (await h.repository.get(c.id)).state == "closed"
    assert h.timers.fired == {"ai_idle_nudge": 1, "ai_idle_close": 1}


async def test_an_idle_close_claimed_by_an_instance_that_died_is_applied_after_its_lease(harness_factory):
    """Another instance claimed the close and was killed before it applied it: the close is not lost.
    (Simulated times passed to run_due: the harness's own loop, on the unmoved clock, sees nothing due.)"""
    from chat.timers import CLAIM_LEASE_MS

    h = await harness_factory(ai_idle_nudge_s=0, ai_idle_close_s=60)
    c = await h.ops.conversations.start(CUSTOMER)
    later = h.timers.clock() + 61_000
    claimed = await h.timers.index.claim(later, 100, later + CLAIM_LEASE_MS)
    assert [a.timer.name for a, _ in claimed] == ["ai_idle_close"]
    assert await h.timers.run_due(later + CLAIM_LEASE_MS - 1) == 0  # leased to the dead one
    assert (await h.repository.get(c.id)).state == "ai"
    assert await h.timers.run_due(later + CLAIM_LEASE_MS) == 1
    assert (await h.repository.get(c.id)).state == "closed"
    assert await h.timers.index.next_due_ms() is None  # applied: released


async def test_each_claim_of_a_long_pass_leases_from_its_own_time(harness_factory, sim_clock, monkeypatch):
    """A pass that takes long (a backlog, a stalled apply): a later batch's lease counts from its claim, not
    from the pass's start, or it would have run out before it was applied."""
    from chat import timers as timers_module

    h = await harness_factory(ai_idle_nudge_s=0, ai_idle_close_s=60)
    h.timers.close()  # this test runs the passes itself
    for _ in range(3):
        await asyncio.sleep(0)
    for _ in range(2):
        await h.ops.conversations.start(CUSTOMER)
    monkeypatch.setattr(timers_module, "CLAIM_BATCH", 1)
    claim, leases = h.timers.index.claim, []

    async def recorded(now_ms, limit, lease_until_ms):
        leases.append(lease_until_ms)
        return await claim(now_ms, limit, lease_until_ms)

    async def slow_apply(armed, due, now):
        sim_clock.advance(200)
        return False

    monkeypatch.setattr(h.timers.index, "claim", recorded)
    monkeypatch.setattr(h.timers, "_apply", slow_apply)
    sim_clock.advance(61)
    await h.timers.run_due()
    assert len(leases) == 3 and leases[1] - leases[0] == leases[2] - leases[1] == 200_000


async def test_a_shutdown_while_a_timer_is_applied_hands_it_back_due_at_once(harness_factory, monkeypatch):
    h = await harness_factory(ai_idle_nudge_s=0, ai_idle_close_s=60)
    c = await h.ops.conversations.start(CUSTOMER)
    close = Armed(timers_of(State.AI)[1], c.id, 0)
    armed_for = await h.timers.index.due_of(close)
    later = h.timers.clock() + 61_000
    applying, apply = asyncio.Event(), h.timers._apply

    async def stuck(armed, due, now):
        applying.set()
        await asyncio.Event().wait()  # the database stalls; the instance shuts down meanwhile

    monkeypatch.setattr(h.timers, "_apply", stuck)
    running = asyncio.ensure_future(h.timers.run_due(later))
    await applying.wait()
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running
    assert await h.timers.index.due_of(close) == armed_for  # due again at once, for any instance
    monkeypatch.setattr(h.timers, "_apply", apply)
    assert await h.timers.run_due(later) == 1
    assert (await h.repository.get(c.id)).state == "closed"


async def test_a_customer_message_counts_idle_time_again(harness_factory, sim_clock):
    h = await harness_factory(ai_idle_close_s=0)
    c = await h.ops.conversations.start(CUSTOMER)
    await h.ops.messages.send(CUSTOMER, c.id, content="one", client_msg_id="m1")
    sim_clock.advance(500)
    await h.ops.messages.send(CUSTOMER, c.id, content="two", client_msg_id="m2")
    await h.drain_ai()
    sim_clock.advance(101)  # 601 s after the first message, 101 s after the second
    await h.timers.drain()
    assert h.timers.fired == {}
    sim_clock.advance(500)
    await h.timers.drain()
    assert h.timers.fired == {"ai_idle_nudge": 1}


async def test_messages_close_together_re_arm_once_and_the_early_timer_counts_from_the_last(
        harness_factory, sim_clock, monkeypatch):
    from chat.timers import REARM_EVERY_MS

    h = await harness_factory(ai_idle_close_s=0)
    c = await h.ops.conversations.start(CUSTOMER)
    nudge, arms = Armed(TIMERS[0], c.id, 0), []
    arm = h.timers.index.arm

    async def counted(due):
        arms.append(due)
        await arm(due)

    monkeypatch.setattr(h.timers.index, "arm", counted)
    first = sim_clock()
    await h.ops.messages.send(CUSTOMER, c.id, content="one", client_msg_id="m1")
    sim_clock.advance(REARM_EVERY_MS / 1000 - 1)
    await h.ops.messages.send(CUSTOMER, c.id, content="two", client_msg_id="m2")  # no Redis write for this one
    await h.drain_ai()
    assert arms == [{nudge: first + 600_000}]
    sim_clock.advance(600 - REARM_EVERY_MS / 1000 + 1)  # the timer armed from the first message is due
    await h.timers.drain()
    assert h.timers.fired == {}  # it found the second message and counts from it
    assert await h.timers.index.due_of(nudge) == first + REARM_EVERY_MS - 1000 + 600_000
    sim_clock.advance(REARM_EVERY_MS / 1000)
    await h.timers.drain()
    assert h.timers.fired == {"ai_idle_nudge": 1}


async def test_a_lost_re_arm_is_caught_by_the_check_before_acting(harness_factory, sim_clock):
    h = await harness_factory(ai_idle_close_s=0)
    c = await h.ops.conversations.start(CUSTOMER)
    index = h.timers.index
    await index.disarm([Armed(TIMERS[0], c.id, 0)])
    await index.arm({Armed(TIMERS[0], c.id, 0): sim_clock() + 600_000})  # armed at the start
    sim_clock.advance(500)
    await h.ops.messages.send(CUSTOMER, c.id, content="x", client_msg_id="m1")
    await index.arm({Armed(TIMERS[0], c.id, 0): sim_clock() + 100_000})  # as if the re-arm got lost
    sim_clock.advance(101)
    await h.timers.drain()
    assert h.timers.fired == {}  # the customer wrote 101 s ago: armed again from that message
    assert await index.due_of(Armed(TIMERS[0], c.id, 0)) == sim_clock() - 101_000 + 600_000


async def test_a_timer_of_a_version_that_moved_on_does_nothing(harness_factory, sim_clock):
    h = await harness_factory(sla_first_response_s=0, human_idle_close_s=0)
    c = await h.ops.conversations.start(CUSTOMER)
    stale = Armed(TIMERS[1], c.id, 0)
    await h.ops.assignment.claim(AGENT, c.id)  # version 1: the `ai` timers are disarmed...
    assert await h.timers.index.due_of(stale) is None
    await h.timers.index.arm({stale: sim_clock()})  # ...and one that lingers anyway is ignored
    sim_clock.advance(1)
    await h.timers.drain()
    assert (await h.repository.get(c.id)).state == "human" and h.timers.fired == {}


async def test_a_silent_customer_with_an_agent_is_closed_for_inactivity(harness_factory, sim_clock):
    h = await harness_factory(sla_first_response_s=0, presence_grace_s=10**6)
    c = await h.ops.conversations.start(CUSTOMER)
    await h.ops.assignment.claim(AGENT, c.id)
    sim_clock.advance(1800)  # the AI's idle timers belonged to version 0
    await h.timers.drain()
    await h.ops.messages.send(CUSTOMER, c.id, content="still here", client_msg_id="m1")
    sim_clock.advance(3599)
    await h.timers.drain()
    assert (await h.repository.get(c.id)).state == "human"
    sim_clock.advance(2)
    await h.timers.drain()
    last = (await events(h, c.id))[-1]
    assert (last.trigger, last.from_state, last.actor_type, last.reason) == ("close", "human", "system", "inactivity")
    assert (await messages(h, c.id))[-1].content == texts.INACTIVITY
    assert h.timers.fired == {"human_idle_close": 1}


async def test_zero_disables_a_timer(harness_factory, sim_clock):
    h = await harness_factory(**NO_IDLE)
    c = await h.ops.conversations.start(CUSTOMER)
    await h.ops.messages.send(CUSTOMER, c.id, content="hello", client_msg_id="m1")
    members = await h.app[keys.REDIS].zrange(redis_keys.TIMERS_DUE, 0, -1)
    assert [m for m in members if c.id.encode() in m] == []


# --- the SLA of the first human response ---------------------------------------------------------


def breaches(h):
    seen: list[SlaBreached] = []
    h.app[keys.EVENTS].subscribe(SlaBreached, seen.append)
    return seen


async def marks(h, cid):
    return [(m.kind, m.state, m.agent_id) for m in await h.app[keys.STORE].timers.marks_of([cid])]


async def test_no_first_reply_in_time_logs_one_sla_breach_and_moves_nothing(harness_factory, sim_clock):
    h = await harness_factory(**NO_IDLE, presence_grace_s=10**6)
    seen = breaches(h)
    c = await h.ops.conversations.start(CUSTOMER)
    await h.ops.conversations.request_handoff(CUSTOMER, c.id)
    await h.ops.assignment.claim(AGENT, c.id)
    sim_clock.advance(119)
    await h.timers.drain()
    assert await marks(h, c.id) == []
    sim_clock.advance(2)
    await h.timers.drain()
    assert await marks(h, c.id) == [("sla_breached", "human", "agent-1")]
    assert [(e.conversation.id, e.agent_id) for e in seen] == [(c.id, "agent-1")]
    after = await h.repository.get(c.id)
    assert (after.state, after.version) == ("human", 2)  # a log entry, not a transition
    token = h.token("admin-1", "admin")
    resp = await h.client.get(f"/api/v1/conversations/{c.id}/events", headers={"Authorization": f"Bearer {token}"})
    log = (await resp.json())["items"]
    assert [(e["version"], e["trigger"], e["from_state"], e["to_state"], e["actor_type"]) for e in log] == [
        (1, "request_handoff", "ai", "handoff", "customer"), (2, "assign", "handoff", "human", "agent"),
        (2, "sla_breached", "human", "human", "system")]


async def test_an_sla_breach_claimed_again_after_a_lease_says_when_it_was_due(harness_factory):
    """Its first claimer died: the breach comes after the lease, and tells the SLA's due time, not the lease's end."""
    from chat.timers import CLAIM_LEASE_MS

    h = await harness_factory(**NO_IDLE, presence_grace_s=10**6)
    seen = breaches(h)
    c = await h.ops.conversations.start(CUSTOMER)
    await h.ops.conversations.request_handoff(CUSTOMER, c.id)
    await h.ops.assignment.claim(AGENT, c.id)
    later = h.timers.clock() + 121_000
    assert len(await h.timers.index.claim(later, 100, later + CLAIM_LEASE_MS)) == 1  # then killed
    assert await h.timers.run_due(later + CLAIM_LEASE_MS) == 1
    assert [(e.due_ms - e.entered_ms) for e in seen] == [120_000]


async def test_a_reply_in_time_meets_the_sla(harness_factory, sim_clock):
    h = await harness_factory(**NO_IDLE)
    c = await h.ops.conversations.start(CUSTOMER)
    await h.ops.assignment.claim(AGENT, c.id)
    sim_clock.advance(60)
    await h.ops.messages.send(AGENT, c.id, content="private first", client_msg_id="n1", private=True)
    assert await h.timers.index.due_of(Armed(TIMERS[3], c.id, 1)) is not None  # a note is no reply
    await h.ops.messages.send(AGENT, c.id, content="hi, how can I help?", client_msg_id="a1")
    assert await h.timers.index.due_of(Armed(TIMERS[3], c.id, 1)) is None
    await h.timers.index.arm({Armed(TIMERS[3], c.id, 1): sim_clock()})  # even if it were still armed
    sim_clock.advance(120)
    await h.timers.drain()
    assert await marks(h, c.id) == []


async def test_the_sla_clock_stops_when_the_conversation_is_closed(harness_factory, sim_clock):
    """Chatwoot #10178: the SLA went on counting (and breaching) after the conversation was resolved."""
    h = await harness_factory(**NO_IDLE)
    c = await h.ops.conversations.start(CUSTOMER)
    await h.ops.assignment.claim(AGENT, c.id)
    sim_clock.advance(30)
    await h.ops.conversations.close(AGENT, c.id)
    sim_clock.advance(3600)
    await h.timers.drain()
    assert await marks(h, c.id) == [] and h.timers.fired == {}


async def test_system_messages_at_the_handoff_do_not_restart_the_sla(harness_factory, sim_clock):
    """Chatwoot PR #13336: a system message posted at the handoff restarted the SLA clock."""
    h = await harness_factory(**NO_IDLE, presence_grace_s=10**6)
    c = await h.ops.conversations.start(CUSTOMER)
    await h.ops.conversations.request_handoff(CUSTOMER, c.id)  # the HANDOFF notice
    sim_clock.advance(50)
    await h.ops.assignment.claim(AGENT, c.id)  # the SLA starts here, with the ASSIGNED notice
    sim_clock.advance(60)
    await h.ops.messages.append(await h.repository.get(c.id), sender_type="system", content="a notice")
    await h.ops.messages.send(CUSTOMER, c.id, content="anyone?", client_msg_id="m1")
    sim_clock.advance(61)  # 121 s after the claim, 61 s after the last system message
    await h.timers.drain()
    assert await marks(h, c.id) == [("sla_breached", "human", "agent-1")]


def shanghai_ms(*args: int) -> int:
    return int(datetime(*args, tzinfo=ZoneInfo("Asia/Shanghai")).timestamp() * 1000)


async def test_the_sla_counts_business_time_only(harness_factory, sim_clock):
    sim_clock.ms = shanghai_ms(2027, 1, 4, 17, 59)  # a Monday, a minute before closing
    h = await harness_factory(**NO_IDLE, business_hours=parse_hours("Mon-Fri 09:00-18:00"), presence_grace_s=10**6)
    c = await h.ops.conversations.start(CUSTOMER)
    await h.ops.assignment.claim(AGENT, c.id)
    sim_clock.ms = shanghai_ms(2027, 1, 5, 9, 0, 30)  # one minute before the close, 30 s after opening
    await h.timers.drain()
    assert await marks(h, c.id) == []
    sim_clock.ms = shanghai_ms(2027, 1, 5, 9, 1, 1)
    await h.timers.drain()
    assert await marks(h, c.id) == [("sla_breached", "human", "agent-1")]


# --- the queue wait ---------------------------------------------------------------------------


async def test_a_conversation_the_bot_could_not_hand_off_goes_back_to_the_ai(harness_factory, sim_clock):
    """Chatwoot #15688: after a failed bot handoff the conversation stayed pending forever."""
    provider = ScriptedProvider([AIError("http_500", "boom", status=500)])
    h = await harness_factory(provider_=provider, handoff_wait_timeout_s=300, **NO_IDLE)
    cust = await h.connect("cust-1")
    cid = (await cust.ok("conversation.start"))["conversation"]["id"]
    await cust.ok("message.send", conversation_id=cid, client_msg_id="m1", content="help")
    await h.drain_ai()
    assert (await h.repository.get(cid)).state == "handoff"  # ai_failure, and no agent online
    sim_clock.advance(301)
    await h.timers.drain()
    last = (await events(h, cid))[-1]
    assert (last.trigger, last.from_state, last.to_state, last.reason) == ("release", "handoff", "ai", "no_agent")
    assert (await messages(h, cid))[-1].content == texts.NO_AGENT
    provider.chunks = ["back ", "again"]
    await cust.ok("message.send", conversation_id=cid, client_msg_id="m2", content="still there?")
    await h.drain_ai()
    assert (await messages(h, cid))[-1].content == "back again"  # the AI continues


async def test_a_start_arms_the_wait_of_conversations_queued_without_a_timer(harness_factory, sim_clock):
    h = await harness_factory(handoff_wait_timeout_s=300, **NO_IDLE)
    c = await h.ops.conversations.start(CUSTOMER)
    await h.ops.conversations.request_handoff(CUSTOMER, c.id)
    armed = Armed(TIMERS[2], c.id, 1)
    due = await h.timers.index.due_of(armed)
    await h.timers.index.disarm([armed])  # as if armed before the upgrade, or Redis lost its index
    assert await h.timers.arm_missing() == 1
    assert await h.timers.index.due_of(armed) == due
    assert await h.timers.arm_missing() == 0


async def test_a_start_never_sends_the_idle_nudge_again(harness_factory, sim_clock):
    """The index forgets a timer once it fired: a start must not take a sent nudge for a lost one (an
    earlier version of the start-up arming sent it again on every start, on every instance)."""
    h = await harness_factory(ai_idle_nudge_s=60, ai_idle_close_s=0, human_idle_close_s=0, sla_first_response_s=0)
    c = await h.ops.conversations.start(CUSTOMER)
    sim_clock.advance(61)
    await h.timers.drain()
    assert [m.content for m in await messages(h, c.id)] == [texts.IDLE_NUDGE]
    assert await h.timers.arm_missing() == 0
    sim_clock.advance(600)
    await h.timers.drain()
    assert [m.content for m in await messages(h, c.id)] == [texts.IDLE_NUDGE]


async def test_a_start_arms_the_idle_and_sla_timers_a_lost_index_held_when_they_were_due(harness_factory, sim_clock):
    """A Redis restored from an older snapshot lost the timers armed since: a start arms each again for when it
    was due (idle from the customer's newest message, the SLA from the claim), and it fires then."""
    h = await harness_factory(ai_idle_nudge_s=300, ai_idle_close_s=900, human_idle_close_s=1200,
                              sla_first_response_s=600)
    ai_conversation = await h.ops.conversations.start(CUSTOMER)
    sim_clock.advance(100)
    await h.ops.messages.send(CUSTOMER, ai_conversation.id, content="still there?", client_msg_id="m1")
    wrote_ms = sim_clock.ms
    other = Identity("cust-2", "customer")
    human_conversation = await h.ops.conversations.start(other)
    await h.ops.conversations.request_handoff(other, human_conversation.id)
    claimed = await h.ops.assignment.claim(AGENT, human_conversation.id)
    claimed_ms = sim_clock.ms
    lost = {Armed(row, ai_conversation.id, 0): wrote_ms + h.timers.after_ms(row) for row in timers_of("ai")}
    lost |= {Armed(row, human_conversation.id, claimed.version): claimed_ms + h.timers.after_ms(row)
             for row in timers_of("human")}
    for armed, due in lost.items():
        assert await h.timers.index.due_of(armed) == due  # as armed live
    await h.app[keys.REDIS].delete(h.timers.index.key)  # the index lost
    assert await h.timers.arm_missing() == 4
    for armed, due in lost.items():
        assert await h.timers.index.due_of(armed) == due  # armed again for when each was due
    assert await h.timers.arm_missing() == 0
    sim_clock.advance(301)
    await h.timers.drain()
    assert [m.content for m in await messages(h, ai_conversation.id)][-1] == texts.IDLE_NUDGE


async def test_a_start_leaves_out_idle_and_sla_timers_due_already(harness_factory, sim_clock):
    """Due already, one may have fired (the index forgets it) or stood for an imported conversation's old
    silence: neither is armed again, so nothing fires at once at a start."""
    h = await harness_factory(ai_idle_nudge_s=60, ai_idle_close_s=900, human_idle_close_s=0, sla_first_response_s=0)
    c = await h.ops.conversations.start(CUSTOMER)
    sim_clock.advance(61)
    await h.timers.drain()  # the nudge fired
    await h.app[keys.REDIS].delete(h.timers.index.key)
    assert await h.timers.arm_missing() == 1  # the close, due in 839 s; not the nudge
    close = Armed(timers_of("ai")[1], c.id, 0)
    assert await h.timers.index.due_of(close) == sim_clock.ms - 61_000 + 900_000
    sim_clock.advance(3600)
    await h.app[keys.REDIS].delete(h.timers.index.key)
    assert await h.timers.arm_missing() == 0  # an hour of silence: the close is due already, left out


async def arm_as_at_start(h) -> None:
    """Run the start's arming (chat.app) once, to where it waits for a lost Redis connection."""
    from chat.app import _arm_missing_timers

    class QuietBus:
        def __init__(self) -> None:
            self.subscribed, self.waiting = asyncio.Event(), asyncio.Event()

        async def until_lost(self) -> None:
            self.waiting.set()
            await asyncio.Event().wait()

    bus = QuietBus()
    task = asyncio.create_task(_arm_missing_timers(h.timers, bus))  # type: ignore[arg-type]
    try:
        async with asyncio.timeout(10):
            await bus.waiting.wait()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_a_start_does_not_arm_again_the_sla_an_agent_reply_met(harness_factory, sim_clock, caplog):
    """The agent answered, then the service restarted within the SLA window: the reply ended the first-response
    timer, and the start arms it no more than the live arming would (no lost timers logged, nothing put back in
    the index). A conversation whose agent has not replied yet still gets it back."""
    h = await harness_factory(**NO_IDLE, presence_grace_s=10**6)
    answered = await h.ops.conversations.start(CUSTOMER)
    claimed = await h.ops.assignment.claim(AGENT, answered.id)
    sim_clock.advance(30)
    await h.ops.messages.send(AGENT, answered.id, content="hi, how can I help?", client_msg_id="a1")
    met = Armed(timers_of("human")[0], answered.id, claimed.version)
    assert met.timer.name == "sla_first_response" and await h.timers.index.due_of(met) is None
    sim_clock.advance(30)  # the restart, 60 s into the SLA
    with caplog.at_level(logging.INFO, logger="chat.app"):
        await arm_as_at_start(h)
    assert [r.getMessage() for r in caplog.records if "state timer(s)" in r.getMessage()] == []
    assert await h.timers.index.due_of(met) is None
    assert await h.timers.arm_missing() == 0

    waiting_customer = Identity("cust-2", "customer")
    waiting = await h.ops.conversations.start(waiting_customer)
    claimed = await h.ops.assignment.claim(Identity("agent-2", "agent"), waiting.id)
    sla = Armed(timers_of("human")[0], waiting.id, claimed.version)
    due = await h.timers.index.due_of(sla)
    await h.timers.index.disarm([sla])  # lost with Redis
    assert await h.timers.arm_missing() == 1
    assert await h.timers.index.due_of(sla) == due
    assert await h.timers.index.due_of(met) is None


async def armed_again(h, armed: Armed, within_s: float = 10) -> int:
    """Its due time once the timer is back in the index (an assertion error after `within_s`: a deadline checked
    at each look, since a cancel can be lost in redis-py's wait_for on 3.11)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_s
    while (due := await h.timers.index.due_of(armed)) is None:
        assert loop.time() < deadline, f"{armed} not armed again within {within_s}s"
        await asyncio.sleep(0)
    return due


async def test_the_timers_a_restored_redis_lost_are_armed_again_once_the_bus_is_back(harness_factory, sim_clock):
    """Redis restarted from an older snapshot under a running instance: its subscriber reconnects, and the timers
    missing from the index are armed again then, without waiting for the next start."""
    h = await harness_factory(ai_idle_nudge_s=300, ai_idle_close_s=900, human_idle_close_s=0, sla_first_response_s=0)
    c = await h.ops.conversations.start(CUSTOMER)
    nudge = Armed(timers_of("ai")[0], c.id, 0)
    due = await h.timers.index.due_of(nudge)
    redis, bus = h.app[keys.REDIS], h.app[keys.BUS]
    await redis.delete(h.timers.index.key)  # the snapshot had none of them
    name = f"chat-api-{h.app[keys.INSTANCE_ID]}"
    subscriber = [c["id"] for c in await redis.client_list(_type="pubsub") if c.get("name") == name]
    assert len(subscriber) == 1
    await redis.client_kill_filter(_id=subscriber[0])  # the restart, as this instance's subscriber sees it
    await asyncio.wait_for(bus.wait_resubscribed(1), timeout=10)
    assert await armed_again(h, nudge) == due  # by the look that follows the resubscription


async def test_an_arming_refused_while_redis_loads_its_snapshot_is_tried_again(harness_factory, sim_clock,
                                                                                 monkeypatch):
    """A restarted Redis takes subscriptions while it still loads its snapshot, and answers the arming's writes
    LOADING: the arming is tried again until it succeeds."""
    h = await harness_factory(ai_idle_nudge_s=300, ai_idle_close_s=0, human_idle_close_s=0, sla_first_response_s=0)
    c = await h.ops.conversations.start(CUSTOMER)
    nudge = Armed(timers_of("ai")[0], c.id, 0)
    due = await h.timers.index.due_of(nudge)
    redis, arm_missing, refused = h.app[keys.REDIS], h.timers.arm_missing, []

    async def loading_once():
        if not refused:
            refused.append(True)
            raise BusyLoadingError("Redis is loading the dataset in memory")
        return await arm_missing()

    monkeypatch.setattr(h.timers, "arm_missing", loading_once)
    monkeypatch.setattr("chat.app.ARM_RETRY_FIRST_S", 0.01)
    await redis.delete(h.timers.index.key)
    name = f"chat-api-{h.app[keys.INSTANCE_ID]}"
    subscriber = [c["id"] for c in await redis.client_list(_type="pubsub") if c.get("name") == name]
    await redis.client_kill_filter(_id=subscriber[0])
    assert await armed_again(h, nudge) == due and refused


async def test_a_nudge_armed_again_after_it_fired_is_not_sent_twice(harness_factory, sim_clock):
    """A start's arming can put a nudge back just after another instance fired it (its SQL read came first), and
    a Redis restored from an older snapshot holds fired ones: the nudge goes once per silence."""
    h = await harness_factory(ai_idle_nudge_s=60, ai_idle_close_s=0, human_idle_close_s=0, sla_first_response_s=0)
    c = await h.ops.conversations.start(CUSTOMER)
    nudge = Armed(timers_of("ai")[0], c.id, 0)
    due = await h.timers.index.due_of(nudge)
    sim_clock.advance(61)
    await h.timers.drain()
    assert [m.content for m in await messages(h, c.id)] == [texts.IDLE_NUDGE]
    await h.timers.index.arm({nudge: due})  # back in the index, due long since
    await h.timers.drain()
    assert [m.content for m in await messages(h, c.id)] == [texts.IDLE_NUDGE]
    sim_clock.advance(5)
    await h.ops.messages.send(CUSTOMER, c.id, content="yes, one more thing", client_msg_id="m1")
    sim_clock.advance(61)
    await h.timers.drain()  # a new silence: a new nudge
    assert [m.content for m in await messages(h, c.id)][-1] == texts.IDLE_NUDGE
    assert [m.content for m in await messages(h, c.id)].count(texts.IDLE_NUDGE) == 2


async def test_the_start_pages_through_every_open_conversation_once(harness_factory, sim_clock):
    """Pages by (created_ms, id) on the state's index (by id alone each page read every row of the state)."""
    h = await harness_factory(**NO_IDLE)
    ids = set()
    for i in range(5):
        c = await h.ops.conversations.start(Identity(f"cust-page-{i}", "customer"))
        await h.ops.conversations.request_handoff(Identity(f"cust-page-{i}", "customer"), c.id)
        ids.add(c.id)
    seen: list[str] = []
    after = None
    while batch := await h.app[keys.STORE].timers.open_versions("handoff", after, limit=2):  # one ms: the id decides
        seen += [v.conversation_id for v in batch]
        after = batch[-1].position
    assert ids <= set(seen) and len(seen) == len(set(seen))


async def test_the_arming_task_ends_at_shutdown_although_a_client_library_dropped_the_cancel():
    """redis-py's wait_for on 3.11, or a database driver, can swallow the shutdown's cancel in the middle of an
    arming: the task must still end (a teardown waited on it for ever)."""
    from chat.app import _arm_missing_timers

    class DroppingTimers:
        def __init__(self) -> None:
            self.entered = asyncio.Event()

        async def arm_missing(self) -> int:
            self.entered.set()
            try:
                await asyncio.Event().wait()  # cancelled here...
            except asyncio.CancelledError:
                return 0  # ...and the cancel dropped
            return 0

    class QuietBus:
        subscribed = asyncio.Event()

        async def until_lost(self) -> None:
            await asyncio.Event().wait()

    timers = DroppingTimers()
    task = asyncio.create_task(_arm_missing_timers(timers, QuietBus()))  # type: ignore[arg-type]
    await timers.entered.wait()
    task.cancel()
    done, _ = await asyncio.wait([task], timeout=5)
    assert task in done and task.cancelled()
