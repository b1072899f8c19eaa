"""Agent presence in Redis: status (online/away), a connection lease renewed by heartbeats of
every instance that holds one of the agent's sockets, and the sweeper that acts on agents
gone longer than the grace period (their conversations are requeued).

An agent is *online* while it has set so and its lease runs (at least one socket open
somewhere, or closed less than a lease ago); it is *gone* once the lease ended more than
`presence_grace_s` ago.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from chat.auth import Identity
from chat.bus.messages import PresenceChanged
from chat.errors import log_failure
from chat.events import AgentStatusChanged, ConversationMoved, Events, SessionClosed, SessionOpened
from chat.settings import Settings
from chat.store import Store
from states import State, redis_keys
from states.clock import now_ms

log = logging.getLogger(__name__)

# Reserve routing capacity atomically: add the conversation to the agent's load set only
# while it holds fewer than max_chats, so no instance ever routes an agent over capacity.
RESERVE_SCRIPT = """
if redis.call('SISMEMBER', KEYS[1], ARGV[1]) == 1 then return 1 end
if redis.call('SCARD', KEYS[1]) >= tonumber(ARGV[2]) then return 0 end
redis.call('SADD', KEYS[1], ARGV[1])
return 1
"""

# Set an agent's status (KEYS: its presence hash, the online set, the lease set; ARGV: agent, status, teams,
# max_chats, now ms, lease until ms), stamped with Redis's own clock (`set_ms`, one clock for every instance):
# the stamp, which tells a status set later from one a restored snapshot brought back. All three keys carry the
# {agents} hash tag: one slot on a Redis Cluster.
SET_STATUS_SCRIPT = """
local t = redis.call('TIME')
local stamp = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('HSET', KEYS[1], 'status', ARGV[2], 'teams', ARGV[3], 'max_chats', ARGV[4], 'set_ms', stamp)
if ARGV[2] == 'online' then
  redis.call('ZADD', KEYS[2], ARGV[5], ARGV[1])
  redis.call('ZADD', KEYS[3], ARGV[6], ARGV[1])
else
  redis.call('ZREM', KEYS[2], ARGV[1])
end
return stamp
"""

# Put back what Redis lost or rolled back of a status this instance's agent set (ARGV as SET_STATUS_SCRIPT's
# first five, then the stamp it got): the whole status when Redis holds none or an older one (emptied, or
# restored from an older snapshot), else only the agent in the online set when its status says online but the
# set does not. Atomic, so a status set later on another instance (a newer stamp) is never overwritten.
# 1: rewritten. Sent with EVAL inside the heartbeat's pipeline (redis-py's cluster pipeline refuses EVALSHA).
REASSERT_SCRIPT = """
local held = redis.call('HMGET', KEYS[1], 'status', 'set_ms')
if held[1] and tonumber(held[2] or '0') >= tonumber(ARGV[6]) then
  if held[1] ~= 'online' or redis.call('ZSCORE', KEYS[2], ARGV[1]) then return 0 end
  redis.call('ZADD', KEYS[2], ARGV[5], ARGV[1])
  return 1
end
redis.call('HSET', KEYS[1], 'status', ARGV[2], 'teams', ARGV[3], 'max_chats', ARGV[4], 'set_ms', ARGV[6])
if ARGV[2] == 'online' then redis.call('ZADD', KEYS[2], ARGV[5], ARGV[1]) else redis.call('ZREM', KEYS[2], ARGV[1]) end
return 1
"""


@dataclass(frozen=True)
class StatusSet:
    """The last status an agent set through a socket here, with what it was set with."""

    status: str
    teams: tuple[str, ...]
    max_chats: int
    stamp: int  # Redis's clock when it was set (SET_STATUS_SCRIPT)


@dataclass
class AgentState:
    """What routing needs to know of one agent."""

    agent_id: str
    status: str
    connected: bool
    teams: set[str] = field(default_factory=set)
    max_chats: int = 5
    load: int = 0
    last_assigned_ms: int = 0

    @property
    def online(self) -> bool:
        """Status online and a socket open (or within the lease)."""
        return self.status == "online" and self.connected


class Roster:
    """Who is online, with their teams, as this instance knows it: loaded at start, then kept
    by the presence messages of every instance (the one place that answers "is X online")."""

    def __init__(self) -> None:
        self._teams: dict[str, frozenset[str]] = {}

    def __len__(self) -> int:
        """How many agents are online."""
        return len(self._teams)

    def teams_of(self, agent_id: str) -> frozenset[str] | None:
        """The teams of an online agent; None when it is not online."""
        return self._teams.get(agent_id)

    def apply(self, message: PresenceChanged) -> None:
        """An agent's status changed on some instance."""
        if message.status == "online":
            self._teams[message.agent_id] = frozenset(message.teams)
        else:
            self._teams.pop(message.agent_id, None)

    def load(self, online: dict[str, set[str]]) -> None:
        """Start from what Redis holds."""
        self._teams.update({agent: frozenset(teams) for agent, teams in online.items()})


class Presence:
    """Presence for this instance's agents, readable for all agents."""

    # redis: Any, not redis.asyncio.Redis: its replies are typed bytes | str | list (decode_responses
    # is not part of the type), and this client always answers bytes
    def __init__(self, redis: Any, store: Store, events: Events, settings: Settings,
                 clock: Callable[[], int] = now_ms):
        self.redis = redis
        self.store = store
        self.events = events
        self.settings = settings
        self.clock = clock
        self.roster = Roster()
        self.local: dict[str, int] = {}  # agent id -> sockets open on this instance
        self._set: dict[str, StatusSet] = {}  # agent id -> the last status it set here (while it has a socket here)
        self._reserve = redis.register_script(RESERVE_SCRIPT)
        self._set_status = redis.register_script(SET_STATUS_SCRIPT)
        self._ttl_ms = int(settings.presence_ttl_s * 1000)

    # --- sockets ---------------------------------------------------------------------------

    async def on_session_opened(self, event: SessionOpened) -> None:
        """An agent socket authenticated here: renew its lease now."""
        if event.identity.is_agent:
            await self.socket_opened(event.identity)

    async def on_session_closed(self, event: SessionClosed) -> None:
        """An agent socket closed here."""
        if event.identity.is_agent:
            await self.socket_closed(event.identity)

    async def socket_opened(self, identity: Identity) -> None:
        """An agent socket authenticated here: renew its lease now. When that fails the socket is refused
        (it never opens, so no close follows): it is not counted."""
        agent = identity.user_id
        self.local[agent] = self.local.get(agent, 0) + 1  # before the write: a close meanwhile still sees it
        try:
            await self.redis.zadd(redis_keys.AGENTS_LEASE, {agent: self.clock() + self._ttl_ms})
        except BaseException:
            left = self.local.get(agent, 0) - 1
            if left > 0:
                self.local[agent] = left
            else:
                self.local.pop(agent, None)
            raise

    async def socket_closed(self, identity: Identity) -> None:
        """An agent socket closed here; the last one ends this instance's lease now."""
        left = self.local.get(identity.user_id, 0) - 1
        if left > 0:
            self.local[identity.user_id] = left
            return
        self.local.pop(identity.user_id, None)
        self._set.pop(identity.user_id, None)
        # other instances that still hold a socket renew it on their next heartbeat
        await self.redis.zadd(redis_keys.AGENTS_LEASE, {identity.user_id: self.clock()})

    async def heartbeat(self) -> None:
        """Renew the lease of every agent with a socket here, and re-assert the status each of
        them set here where Redis lost it (a restart that came back empty, a failover) or holds an older one
        (restored from an older snapshot)."""
        if not self.local:
            return
        now = self.clock()
        pipe = self.redis.pipeline(transaction=False)
        pipe.zadd(redis_keys.AGENTS_LEASE, {agent: now + self._ttl_ms for agent in self.local})
        asserted = [(agent, status) for agent, status in self._set.items() if agent in self.local]
        for agent, status in asserted:
            pipe.eval(REASSERT_SCRIPT, 2, redis_keys.presence(agent), redis_keys.AGENTS_ONLINE,
                      agent, status.status, orjson.dumps(status.teams), status.max_chats, now, status.stamp)
        rewritten = (await pipe.execute())[1:]
        for (agent, status), done in zip(asserted, rewritten, strict=True):
            if done:
                log.warning("presence of %s re-asserted (%s): Redis had lost it", agent, status.status)
                await self.events.emit(AgentStatusChanged(agent, status.status, status.teams))

    # --- status ----------------------------------------------------------------------------

    async def set_status(self, identity: Identity, status: str) -> None:
        """online / away, with the agent's teams (token and team_members) and capacity."""
        teams = set(identity.teams) | set(await self.store.staff.teams_of(identity.user_id))
        max_chats = await self.store.staff.max_chats_of(identity.user_id) or self.settings.agent_max_chats
        now = self.clock()
        stamp = await self._set_status(
            keys=[redis_keys.presence(identity.user_id), redis_keys.AGENTS_ONLINE, redis_keys.AGENTS_LEASE],
            args=[identity.user_id, status, orjson.dumps(sorted(teams)), max_chats, now, now + self._ttl_ms])
        if identity.user_id in self.local:  # the heartbeat re-asserts it while a socket stays open here
            self._set[identity.user_id] = StatusSet(status, tuple(sorted(teams)), max_chats, int(stamp))
        await self.events.emit(AgentStatusChanged(identity.user_id, status, tuple(sorted(teams))))

    async def online_teams(self) -> dict[str, set[str]]:
        """Every online agent with its teams (an instance loads this at start)."""
        agents = await self.agents()
        return {a.agent_id: a.teams for a in agents if a.status == "online"}

    async def online_ids(self) -> set[str]:
        """Agents whose status is online (lease not checked)."""
        return {m.decode() for m in await self.redis.zrange(redis_keys.AGENTS_ONLINE, 0, -1)}

    async def agents(self, agent_ids: list[str] | None = None) -> list[AgentState]:
        """Presence, capacity and load of the given agents (default: every agent with a status)."""
        if agent_ids is None:
            agent_ids = sorted(await self.online_ids())
        if not agent_ids:
            return []
        pipe = self.redis.pipeline(transaction=False)
        for agent in agent_ids:
            pipe.hgetall(redis_keys.presence(agent))
            pipe.zscore(redis_keys.AGENTS_LEASE, agent)
            pipe.scard(redis_keys.agent_load(agent))
            pipe.zscore(redis_keys.AGENTS_LAST_ASSIGNED, agent)
        raw = await pipe.execute()
        now = self.clock()
        out = []
        for i, agent in enumerate(agent_ids):
            info, lease, load, last = raw[4 * i: 4 * i + 4]
            info = {k.decode(): v.decode() for k, v in info.items()}
            out.append(
                AgentState(
                    agent_id=agent,
                    status=info.get("status", "offline"),
                    connected=lease is not None and lease > now,
                    teams=set(orjson.loads(info["teams"])) if info.get("teams") else set(),
                    max_chats=int(info.get("max_chats") or self.settings.agent_max_chats),
                    load=int(load),
                    last_assigned_ms=int(last or 0),
                )
            )
        return out

    # --- capacity --------------------------------------------------------------------------

    async def reserve(self, agent_id: str, conversation_id: str, max_chats: int) -> bool:
        """Take one of the agent's chat slots for this conversation, if one is free."""
        return bool(await self._reserve(keys=[redis_keys.agent_load(agent_id)], args=[conversation_id, max_chats]))

    async def on_moved(self, event: ConversationMoved) -> None:
        """Keep load sets in step with a transition."""
        after = event.transition.after
        pipe = self.redis.pipeline(transaction=False)
        freed = event.freed_agent
        if freed is not None:
            pipe.srem(redis_keys.agent_load(freed), after.id)
        if after.state == State.HUMAN and after.agent_id:
            pipe.sadd(redis_keys.agent_load(after.agent_id), after.id)
            pipe.zadd(redis_keys.AGENTS_LAST_ASSIGNED, {after.agent_id: self.clock()})
        if len(pipe):
            await pipe.execute()

    async def release_slot(self, agent_id: str, conversation_id: str) -> None:
        """Give back a reservation that did not become an assignment."""
        await self.redis.srem(redis_keys.agent_load(agent_id), conversation_id)

    async def assigned_to(self, agent_id: str) -> list[str]:
        """The conversations an agent holds."""
        return sorted(m.decode() for m in await self.redis.smembers(redis_keys.agent_load(agent_id)))

    # --- loads from SQL (Redis may have lost or kept too much of them) ---------------------------

    async def repair_loads(self, agents: list[AgentState]) -> None:
        """Put back in these agents' load sets the conversations SQL says they hold in `human`,
        and count what was missing in their load (routing calls this before it reserves)."""
        added = await self._add_held(await self.store.conversations.assigned([a.agent_id for a in agents]))
        for agent in agents:
            agent.load += added.get(agent.agent_id, 0)

    async def reconcile(self) -> None:
        """The sweeper's pass: bring every load set in line with SQL's assignments, and start the
        grace period of an agent that holds conversations but has no lease at all (Redis forgot
        it), so that a gone agent's conversations are found and requeued."""
        held = await self.store.conversations.assigned()
        await self._add_held(held)
        if held:
            await self.redis.zadd(redis_keys.AGENTS_LEASE, dict.fromkeys(held, self.clock()), nx=True)
        await self._drop_stale(held)

    async def _add_held(self, held: dict[str, set[str]]) -> dict[str, int]:
        """SADD what SQL says each agent holds; how many each set had lost."""
        if not held:
            return {}
        agents = sorted(held)
        pipe = self.redis.pipeline(transaction=False)
        for agent in agents:
            pipe.sadd(redis_keys.agent_load(agent), *sorted(held[agent]))
        added = dict(zip(agents, await pipe.execute(), strict=True))
        for agent, count in added.items():
            if count:
                log.warning("load of %s repaired from SQL: %d assigned conversation(s) were missing", agent, count)
        return added

    async def _drop_stale(self, held: dict[str, set[str]]) -> None:
        """Drop from the load sets what SQL says their agent no longer holds. A conversation in
        `handoff` may be a routing reservation in flight and stays, as does one with no SQL row
        yet (a migrated record not adopted)."""
        leased = {m.decode() for m in await self.redis.zrange(redis_keys.AGENTS_LEASE, 0, -1)}
        agents = sorted(leased | set(held))
        pipe = self.redis.pipeline(transaction=False)
        for agent in agents:
            pipe.smembers(redis_keys.agent_load(agent))
        members = await pipe.execute()
        extra = {a: {m.decode() for m in ms} - held.get(a, set()) for a, ms in zip(agents, members, strict=True)}
        rows = await self.store.conversations.states_of(sorted(set[str]().union(*extra.values())))
        stale = [(agent, cid) for agent, cids in extra.items() for cid in sorted(cids)
                 if cid in rows and rows[cid][0] != State.HANDOFF and rows[cid] != (State.HUMAN, agent)]
        for agent, cid in stale:
            log.warning("load of %s repaired from SQL: %s is no longer assigned to it", agent, cid)
            await self.redis.srem(redis_keys.agent_load(agent), cid)

    async def gone_agents(self) -> list[str]:
        """Agents whose lease ended more than the grace period ago."""
        cutoff = self.clock() - int(self.settings.presence_grace_s * 1000)
        return [m.decode() for m in await self.redis.zrangebyscore(redis_keys.AGENTS_LEASE, "-inf", cutoff)]

    async def forget_if_idle(self, agent_id: str) -> None:
        """A gone agent holding nothing leaves the lease set, so sweeps do not walk it again."""
        if not await self.redis.scard(redis_keys.agent_load(agent_id)):
            await self.redis.zrem(redis_keys.AGENTS_LEASE, agent_id)

    async def mark_offline(self, agent_id: str) -> None:
        """A gone agent is no longer online."""
        if await self.redis.zrem(redis_keys.AGENTS_ONLINE, agent_id):
            await self.redis.hset(redis_keys.presence(agent_id), "status", "offline")
            await self.events.emit(AgentStatusChanged(agent_id, "offline", ()))


async def run_every(interval_s: float, job: Callable[[], Awaitable[object]], name: str, *,
                    at_start: bool = False) -> None:
    """Run a coroutine function forever at an interval (and once right away with at_start);
    a failure is logged, never fatal."""
    if not at_start:
        await asyncio.sleep(interval_s)
    while True:
        try:
            await job()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log_failure(log, exc, "%s failed", name)
        await asyncio.sleep(interval_s)
