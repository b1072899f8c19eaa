"""Timers as state-machine timeouts (PROTOCOL 4.1): the timer table beside the transition table, and
the due-time index in Redis that hands each armed timer to one instance at a time (a lease).

A timer belongs to a state. It is armed with the conversation's version when the conversation
enters that state (`idle` timers again at each customer message: customer silence is what they
count); its member in the index names the timer, the version and the conversation, so arming it
again only moves its due time. Instances claim due members with one Lua script (ZRANGEBYSCORE,
then each moved to the end of a lease, atomically), so each armed member is handed to one instance
at a time; once applied it is removed, unless armed again meanwhile. One whose instance died while
applying it (killed, or its host gone) is claimed again when its lease runs out. The effect is
then applied with the version it was armed with: a conversation that moved on meanwhile (another
version) is left alone, by the transition's compare-and-set when the effect is a transition (a timer
applied again, its lease run out in a long stall: the close acts once by that compare-and-set, the
SLA mark once by its unique key, and the nudge looks for one sent in the same silence first).

The "assignee offline" timeout of PROTOCOL 4.1 (PRESENCE_GRACE_S -> `requeue` reason
`agent_offline`) is not in this table: it is armed by an agent's presence lease running out,
not by a conversation's state, and the presence sweeper (chat/routing.py) keeps it.
No aiohttp here.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any, NamedTuple

from states import redis_keys
from states.machine import State, Trigger


class Effect(StrEnum):
    """What a due timer does (actor `system`)."""

    NOTICE = "notice"  # a system message to the customer (not a transition)
    TRANSITION = "transition"  # fire `trigger` with `reason`
    MARK = "mark"  # an entry in the event log that is not a transition (sla_breached)


@dataclass(frozen=True)
class TimerRow:
    """One timeout of a state. `setting`: the Settings attribute with its seconds (0 disables it)."""

    name: str
    state: State
    setting: str
    effect: Effect
    reason: str
    trigger: Trigger | None = None
    idle: bool = False  # counts customer silence: each customer message arms it again
    business_time: bool = False  # counts only business hours (BUSINESS_HOURS)
    until_agent_reply: bool = False  # an agent's first (non-private) reply in the state ends it

    def needed(self, *, agent_replied: bool) -> bool:
        """Whether a conversation in the timer's state still needs it, given whether an agent replied publicly since
        its version began: that reply ends an `until_agent_reply` timer. The one rule the arming at a reply, the
        start's arming and the firing share."""
        return not (self.until_agent_reply and agent_replied)


TIMERS: tuple[TimerRow, ...] = (
    TimerRow("ai_idle_nudge", State.AI, "ai_idle_nudge_s", Effect.NOTICE, "idle_nudge", idle=True),
    TimerRow("ai_idle_close", State.AI, "ai_idle_close_s", Effect.TRANSITION, "inactivity", Trigger.CLOSE, idle=True),
    TimerRow("handoff_wait", State.HANDOFF, "handoff_wait_timeout_s", Effect.TRANSITION, "no_agent", Trigger.RELEASE,
             business_time=True),
    TimerRow("sla_first_response", State.HUMAN, "sla_first_response_s", Effect.MARK, "sla_breached",
             business_time=True, until_agent_reply=True),
    TimerRow("human_idle_close", State.HUMAN, "human_idle_close_s", Effect.TRANSITION, "inactivity", Trigger.CLOSE,
             idle=True),
)
BY_NAME = {row.name: row for row in TIMERS}


def timer_table() -> str:
    """The timer table as markdown (docs/states.md holds it beside the transition diagram)."""
    lines = ["| state | timer | after (setting; 0 disables) | armed | effect (actor `system`) |",
             "|---|---|---|---|---|"]
    for row in TIMERS:
        armed = "on entering the state" + (", again at each customer message" if row.idle else "")
        if row.until_agent_reply:
            armed += "; ended by the agent's first public reply"
        clock = " of business time" if row.business_time else ""
        if row.effect is Effect.TRANSITION:
            assert row.trigger is not None
            effect = f"`{row.trigger.value}` reason `{row.reason}`"
        elif row.effect is Effect.NOTICE:
            effect = "a system message asking if anything else is needed"
        else:
            effect = f"a `{row.reason}` entry in the event log (not a transition)"
        lines.append(f"| {row.state.value} | `{row.name}` | `{row.setting.upper()}`{clock} | {armed} | {effect} |")
    return "\n".join(lines) + "\n"


def timers_of(state: str) -> tuple[TimerRow, ...]:
    """The timers of a state, in table order."""
    return tuple(row for row in TIMERS if row.state == state)


class Armed(NamedTuple):
    """One armed timer: which, for which conversation at which version."""

    timer: TimerRow
    conversation_id: str
    version: int

    @property
    def member(self) -> str:
        """Its member in the due-time index: `name|version|conversation id`."""
        return f"{self.timer.name}|{self.version}|{self.conversation_id}"

    @classmethod
    def parse(cls, member: bytes | str) -> Armed | None:
        """The armed timer of an index member (None for one this version does not know)."""
        text = member.decode() if isinstance(member, bytes) else member
        name, _, rest = text.partition("|")
        version, _, conversation_id = rest.partition("|")
        row = BY_NAME.get(name)
        if row is None or not version.isdigit() or not conversation_id:
            return None
        return cls(row, conversation_id, int(version))


# Hand the due members (score <= ARGV[1], at most ARGV[2]) to this caller and move them to the end of its
# lease (ARGV[3] ms), at once: two instances never both get one while its lease runs. One key, so a Redis
# Cluster runs it on the key's node.
CLAIM_SCRIPT = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'WITHSCORES', 'LIMIT', 0, tonumber(ARGV[2]))
for i = 1, #due, 2 do
  redis.call('ZADD', KEYS[1], ARGV[3], due[i])
end
return due
"""

# Remove the members ARGV[2..] that still wait for the end of the lease ARGV[1] (applied); one armed again
# meanwhile (another due time) stays. How many went.
RELEASE_SCRIPT = """
local gone = 0
for i = 2, #ARGV do
  local score = redis.call('ZSCORE', KEYS[1], ARGV[i])
  if score and tonumber(score) == tonumber(ARGV[1]) then gone = gone + redis.call('ZREM', KEYS[1], ARGV[i]) end
end
return gone
"""


class TimerIndex:
    """The due-time index (a sorted set: member -> due epoch ms) and its atomic claim."""

    # redis: Any, like chat.presence: this client always answers bytes
    def __init__(self, redis: Any) -> None:
        self.redis = redis
        self.key = redis_keys.TIMERS_DUE
        self._claim = redis.register_script(CLAIM_SCRIPT)
        self._release = redis.register_script(RELEASE_SCRIPT)

    async def arm(self, due: dict[Armed, int], *, missing_only: bool = False) -> int:
        """Arm (or move) these timers to their due epoch ms; `missing_only`: only those not armed (an armed one
        keeps its due time). How many were added."""
        if not due:
            return 0
        return int(await self.redis.zadd(self.key, {armed.member: ms for armed, ms in due.items()}, nx=missing_only))

    async def disarm(self, armed: list[Armed]) -> None:
        """Forget these timers (the state they belong to was left, or what they wait for happened)."""
        if armed:
            await self.redis.zrem(self.key, *(a.member for a in armed))

    async def claim(self, now_ms: int, limit: int, lease_until_ms: int) -> list[tuple[Armed, int]]:
        """Take up to `limit` timers due at `now_ms`, with their due ms: each is handed to no other caller until
        `lease_until_ms` (then to the next that claims it, unless released)."""
        raw = await self._claim(keys=[self.key], args=[now_ms, limit, lease_until_ms])
        out = []
        for member, score in zip(raw[::2], raw[1::2], strict=True):
            armed = Armed.parse(member)
            if armed is not None:
                out.append((armed, int(float(score))))
        return out

    async def release(self, claimed: list[Armed], lease_until_ms: int) -> int:
        """Forget claimed timers that were applied (those armed again meanwhile stay armed): how many."""
        if not claimed:
            return 0
        return int(await self._release(keys=[self.key], args=[lease_until_ms, *(a.member for a in claimed)]))

    async def next_due_ms(self) -> int | None:
        """The earliest due time in the index (None when empty)."""
        first = await self.redis.zrange(self.key, 0, 0, withscores=True)
        return int(first[0][1]) if first else None

    async def due_of(self, armed: Armed) -> int | None:
        """When this timer is due (None: not armed)."""
        score = await self.redis.zscore(self.key, armed.member)
        return None if score is None else int(score)
