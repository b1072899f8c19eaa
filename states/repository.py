"""Load a conversation record, apply a trigger, save it with compare-and-set.

The SQL mirror row is the durable truth of state and version; the Redis record is the fast,
repairable copy (it also carries the AI context). A transition is written in this order:

1. the SQL transaction updates the mirror row *where version = the loaded version* (a row
   lock that also serializes concurrent writers of this conversation), appends the log entry
   and commits;
2. then a Lua script replaces the Redis record only if it still holds exactly the bytes that
   were loaded.

So Redis is never ahead of SQL: a failed commit or a cancellation writes nothing to Redis,
and a crash between 1 and 2 leaves Redis behind. A record behind SQL (that crash, Redis
restored from an older snapshot, a lagging replica) is repaired from the mirror row: a writer
refused at step 1 compares the two, rebuilds the record when they differ and tries once more.
A writer holding a genuinely stale version still fails with StaleVersion and writes nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol

from redis.asyncio import Redis
from redis.exceptions import RedisError

from states import redis_keys
from states.clock import now_iso, now_ms
from states.errors import ConversationNotFound, InvalidTransition, StaleVersion
from states.ids import new_id
from states.machine import AgentType, State, apply_trigger
from states.record import Conversation, dump_record, load_record

log = logging.getLogger(__name__)

# Replace the value only if it is still byte-for-byte what the writer loaded. ARGV[3], the
# expiry: absent or KEEP_TTL keeps the key's TTL; PERSIST drops it; a positive number sets it (ms).
CAS_SCRIPT = """
local current = redis.call('GET', KEYS[1])
if current ~= ARGV[1] then
  return 0
end
local expiry = tonumber(ARGV[3] or '0')
if expiry > 0 then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', expiry)
elseif expiry < 0 then
  redis.call('SET', KEYS[1], ARGV[2])
else
  redis.call('SET', KEYS[1], ARGV[2], 'KEEPTTL')
end
return 1
"""
KEEP_TTL, PERSIST = 0, -1


@dataclass(frozen=True)
class Actor:
    """Who fired a trigger: customer, agent, admin, ai or system (with its id, if any)."""

    type: str
    id: str | None = None


SYSTEM = Actor("system")


@dataclass(frozen=True)
class Transition:
    """One successful transition: the record before and after, and why."""

    before: Conversation
    after: Conversation
    trigger: str
    actor: Actor
    reason: str | None
    at_ms: int
    id: str = field(default_factory=new_id)

    @property
    def previous_state(self) -> str:
        """The state the conversation left."""
        return self.before.state


class TransitionLog(Protocol):
    """The durable side of a transition (the SQL store implements it)."""

    async def create(self, conversation: Conversation) -> None:
        """Insert the mirror row of a new conversation."""

    def record_transition(self, transition: Transition) -> AbstractAsyncContextManager[None]:
        """Open a transaction that checks the mirror's version, writes it and the log entry,
        and commits when the block exits cleanly; raise StaleVersion on a version mismatch."""

    async def load(self, conversation_id: str) -> Conversation | None:
        """Rebuild a record from the mirror row (the live record expired or was lost)."""


class ConversationRepository:
    """The only way conversations are created and moved."""

    def __init__(self, redis: Redis, log: TransitionLog, *, session_ttl_s: int = 0):
        """`session_ttl_s` (SESSION_TTL_S): how long a closed conversation's live record is kept;
        0 leaves its TTL as it is (none, or a migrated key's own)."""
        self.redis = redis
        self._log = log
        self._cas = redis.register_script(CAS_SCRIPT)
        self._closed_ttl_ms = session_ttl_s * 1000

    def _expiry(self, before_state: str | None, after: Conversation) -> int:
        """The CAS script's expiry: closing sets SESSION_TTL_S, reopening drops the TTL, the rest keeps it."""
        if after.state == State.CLOSED.value:
            return self._closed_ttl_ms or KEEP_TTL
        return PERSIST if before_state == State.CLOSED.value else KEEP_TTL

    async def create(
        self,
        user_id: str,
        *,
        metadata: dict[str, Any] | None = None,
        team_id: str | None = None,
        conversation_id: str | None = None,
    ) -> Conversation:
        """Start a conversation in state `ai` (SQL row first, then the live record)."""
        now = now_iso()
        conversation = Conversation(
            id=conversation_id or new_id(),
            user_id=user_id,
            agent_type=AgentType.AI.value,
            created_at=now,
            updated_at=now,
            state=State.AI.value,
            version=0,
            team_id=team_id,
            metadata=dict(metadata or {}),
        )
        await self._log.create(conversation)
        await self.redis.set(redis_keys.session(conversation.id), dump_record(conversation), nx=True)
        return conversation

    async def _load_raw(self, conversation_id: str) -> tuple[bytes | str, Conversation]:
        key = redis_keys.session(conversation_id)
        raw = await self.redis.get(key)
        if raw is None:
            restored = await self._log.load(conversation_id)
            if restored is None:
                raise ConversationNotFound(conversation_id)
            # the live record was lost (expired or flushed): rebuild it from the durable row; a
            # closed one expires again (SESSION_TTL_S), so reading old conversations never grows Redis
            expiry = self._expiry(None, restored)
            await self.redis.set(key, dump_record(restored), nx=True, px=expiry if expiry > 0 else None)
            raw = await self.redis.get(key)
            if raw is None:
                raise ConversationNotFound(conversation_id)
        return raw, load_record(conversation_id, raw)

    async def get(self, conversation_id: str, *, fresh: bool = False) -> Conversation:
        """The live record; ConversationNotFound when there is none. `fresh` first checks it
        against the SQL row and repairs it when it is behind (before a permission check)."""
        raw, record = await self._load_raw(conversation_id)
        if fresh:
            repaired = await self.repair(conversation_id, raw, record)
            if repaired is not None:
                return repaired
        return record

    async def repair(self, conversation_id: str, raw: bytes | str, record: Conversation) -> Conversation | None:
        """Rebuild the live record from the SQL row when their versions differ (SQL is the
        truth; the record's context is kept). The repaired record, or None when they agree."""
        durable = await self._log.load(conversation_id)
        if durable is None or durable.version == record.version:
            return None
        durable.context = record.context
        key = redis_keys.session(conversation_id)
        if not await self._cas(keys=[key], args=[raw, dump_record(durable)]):
            return None  # someone else changed it meanwhile: the caller's next read sees that
        log.warning("repaired the live record of %s from SQL: version %d -> %d (state %s -> %s)",
                    conversation_id, record.version, durable.version, record.state, durable.state)
        return durable

    async def fire(
        self,
        conversation_id: str,
        trigger: str,
        *,
        actor: Actor = SYSTEM,
        reason: str | None = None,
        expect_states: Iterable[str] | None = None,
        expect_version: int | None = None,
        **data: str | None,
    ) -> Transition:
        """Apply `trigger` and save (SQL first, then the live record); InvalidTransition or
        StaleVersion when refused, with nothing written. A live record found behind SQL is
        repaired and the trigger tried once more on it."""
        for attempt in range(2):
            raw, before = await self._load_raw(conversation_id)
            try:
                if expect_version is not None and before.version != expect_version:
                    raise StaleVersion(conversation_id, expect_version)
                if expect_states is not None and before.state not in set(expect_states):
                    raise InvalidTransition(trigger, before.state)
                after = before.copy()
                await apply_trigger(after, trigger, **data)
            except (StaleVersion, InvalidTransition):
                # refused by the live record: one behind SQL (Redis restored from an older snapshot) would refuse
                # every claim, routing and handoff for ever; repaired, the trigger is judged on the truth
                if attempt == 0 and await self.repair(conversation_id, raw, before) is not None:
                    continue
                raise
            after.version = before.version + 1
            after.updated_at = now_iso()
            transition = Transition(before, after, trigger, actor, reason, now_ms())
            try:
                async with self._log.record_transition(transition):
                    pass  # the block commits the mirror row and the log entry
            except StaleVersion:
                if attempt == 0 and await self.repair(conversation_id, raw, before) is not None:
                    continue
                raise
            try:
                await self._publish(conversation_id, raw, transition)
            except Exception as exc:  # committed in SQL, the truth: the next checked read repairs the record
                log.warning("the live record of %s did not follow %s to version %d: %s", conversation_id, trigger,
                            transition.after.version, type(exc).__name__,
                            exc_info=not isinstance(exc, RedisError))  # anything else: a bug, with its traceback
            return transition
        raise StaleVersion(conversation_id, expect_version or 0)  # not reached: the loop returns or raises

    async def _publish(self, conversation_id: str, raw: bytes | str, transition: Transition) -> None:
        """The live record follows the committed row. If it changed meanwhile and is not newer
        than this transition, it is replaced by it (SQL accepted this one); a newer one stays."""
        key = redis_keys.session(conversation_id)
        after = transition.after
        expiry = self._expiry(transition.before.state, after)  # SESSION_TTL_S on close, none on reopen
        if await self._cas(keys=[key], args=[raw, dump_record(after), expiry]):
            return
        current = await self.redis.get(key)
        if current is None:
            return  # expired or flushed: the next read rebuilds it from SQL
        if load_record(conversation_id, current).version <= after.version:
            await self._cas(keys=[key], args=[current, dump_record(after), expiry])
