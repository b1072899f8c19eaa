"""Routing conversations in `handoff` to online agents, and the sweeper for gone agents. Both run
in the background and can be drained in tests (no sleeping to wait).

Auto routing gives a waiting conversation to the online agent of its team with the fewest
active conversations below their capacity (ties: the agent idle longest). Capacity is
reserved atomically in Redis before the assign, and the assign itself is a compare-and-set,
so instances routing at the same time never give one conversation to two agents nor an
agent more than max_chats. SQL is the truth of who holds what: each pass first puts back in
the load sets the assignments Redis lost, and the sweeper reconciles them with SQL, so a Redis
that came back empty neither overfills an agent nor hides a gone agent's conversations.
"""

from __future__ import annotations

import asyncio
import logging

from chat.conversations import Assignment, Conversations
from chat.errors import NotFound, log_failure
from chat.events import AgentStatusChanged, ConversationMoved, Events
from chat.presence import AgentState, Presence
from chat.settings import Settings
from chat.store import Store
from states import InvalidTransition, RecordError, StaleVersion, State

log = logging.getLogger(__name__)


def eligible(agent: AgentState, team_id: str | None) -> bool:
    """May this agent take a conversation of this team (None: the general queue)?"""
    return agent.online and agent.load < agent.max_chats and (team_id is None or team_id in agent.teams)


class Router:
    """Runs routing passes when kicked (coalesced, one at a time per instance)."""

    def __init__(self, assignment: Assignment, conversations: Conversations, store: Store, presence: Presence,
                 settings: Settings):
        self.assignment = assignment
        self.conversations = conversations
        self.store = store
        self.presence = presence
        self.settings = settings
        self._task: asyncio.Task[None] | None = None
        self._again = False
        self.assigned = 0

    def subscribe_to(self, events: Events) -> None:
        """Route when a conversation starts waiting, an agent's load drops or an agent comes online."""
        events.subscribe(ConversationMoved, self.on_moved)
        events.subscribe(AgentStatusChanged, self.on_agent_status)

    def on_moved(self, event: ConversationMoved) -> None:
        """A conversation waits now, or an agent has room now."""
        if event.freed_agent is not None or event.transition.after.state == State.HANDOFF:
            self.kick()

    def on_agent_status(self, event: AgentStatusChanged) -> None:
        """An agent that comes online takes waiting conversations at once."""
        if event.status == "online":
            self.kick()

    def kick(self) -> None:
        """Something changed (a handoff, an agent online, a load drop): route soon."""
        if self.settings.routing != "auto":
            return
        if self._task is not None and not self._task.done():
            self._again = True
            return
        self._task = asyncio.create_task(self._run(), name="router")

    async def drain(self) -> None:
        """Wait until no routing pass is running or pending."""
        while self._task is not None and not self._task.done():
            await asyncio.gather(self._task, return_exceptions=True)

    async def close(self) -> None:
        """Stop (shutdown)."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        while True:
            self._again = False
            try:
                await self.route_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log_failure(log, exc, "routing pass failed")
            if not self._again:
                return

    async def route_once(self) -> int:
        """One pass over the queue, oldest first; return how many conversations were assigned."""
        queue = await self.store.conversations.handoff_queue(limit=500)
        if not queue:
            return 0
        agents = [a for a in await self.presence.agents() if a.online]
        await self.presence.repair_loads(agents)  # a load set Redis lost must not look like free capacity
        done = 0
        for conversation_id, team_id, _since in queue:
            candidates = sorted(
                (a for a in agents if eligible(a, team_id)), key=lambda a: (a.load, a.last_assigned_ms, a.agent_id)
            )
            for agent in candidates:
                if not await self.presence.reserve(agent.agent_id, conversation_id, agent.max_chats):
                    agent.load = agent.max_chats  # full after all (another instance took the slot)
                    continue
                if await self._assign(conversation_id, agent):
                    done += 1
                break
        self.assigned += done
        return done

    async def _assign(self, conversation_id: str, agent: AgentState) -> bool:
        try:
            await self.assignment.route_to(conversation_id, agent.agent_id)
        except Exception as exc:  # lost a race, or a dependency failed: never keep the slot for nothing
            try:
                current = await self.conversations.get(conversation_id)
                kept = current.state == State.HUMAN and current.agent_id == agent.agent_id
            except Exception:
                kept = False
            if not kept:
                await self.presence.release_slot(agent.agent_id, conversation_id)
            if isinstance(exc, (InvalidTransition, StaleVersion)):
                log.debug("routing %s to %s lost a race: %s", conversation_id, agent.agent_id, exc)
                return False
            if isinstance(exc, RecordError):  # that one conversation's live record is unreadable: the others go on
                log.error("cannot route %s: %s", conversation_id, exc)
                return False
            raise
        agent.load += 1
        agent.last_assigned_ms = self.presence.clock()
        return True

    async def sweep(self) -> None:
        """Requeue the conversations of agents gone past the grace period (the "assignee offline"
        timeout of PROTOCOL 4.1: armed by the agent's lease, not by a state, so it stays here; the
        state timers are chat/timers.py's). The load sets are first brought in line with SQL, so an
        assignment Redis lost is found too."""
        await self.presence.reconcile()
        for agent_id in await self.presence.gone_agents():
            await self.presence.mark_offline(agent_id)
            for conversation_id in await self.presence.assigned_to(agent_id):
                await self._requeue(conversation_id, agent_id)
            await self.presence.forget_if_idle(agent_id)
        self.kick()

    async def _requeue(self, conversation_id: str, agent_id: str) -> None:
        """Requeue a gone agent's conversation; a slot it no longer holds is given back."""
        try:
            if not await self.assignment.requeue_from_gone_agent(conversation_id, agent_id):
                await self.presence.release_slot(agent_id, conversation_id)
        except NotFound as exc:
            log.info("requeue of %s skipped: %s", conversation_id, exc)
