"""Every Redis key shape the service uses, in one place (the backup takes PREFIXES).

Only the AI turn lock expires (AI_TURN_LOCK_S, renewed while the turn runs: chat.ai_turn); a migrated
session keeps the TTL it had, and a new one has none.
"""

SESSION_PREFIX = "session:"
PRESENCE_PREFIX = "presence:"
AGENTS_PREFIX = "agents:"  # the sets over all agents
AGENT_PREFIX = "agent:"  # per-agent keys besides presence
AI_TURN_PREFIX = "ai:turn:"  # transient: a backup skips it
QUOTA_PREFIX = "quota:"  # transient: a backup skips it

AGENTS_ONLINE = f"{AGENTS_PREFIX}online"  # zset: agents whose status is online, score = ms they set it
AGENTS_LEASE = f"{AGENTS_PREFIX}lease"  # zset: ms until which an agent counts as connected (heartbeats renew it)
AGENTS_LAST_ASSIGNED = f"{AGENTS_PREFIX}last_assigned"  # zset: ms of each agent's last assignment (idle longest first)
EVENTS_CHANNEL = "chat:events"  # pub/sub channel for cross-instance fan-out (the default of BUS_CHANNEL)

# Every key prefix the service writes and a backup keeps: each key below starts with one of them.
PREFIXES = (SESSION_PREFIX, PRESENCE_PREFIX, AGENTS_PREFIX, AGENT_PREFIX)


def session(conversation_id: str) -> str:
    """The live record of a conversation (PROTOCOL section 5)."""
    return f"{SESSION_PREFIX}{conversation_id}"


def presence(agent_id: str) -> str:
    """An agent's presence hash: status, teams, max_chats (no expiry: the lease says if it is connected)."""
    return f"{PRESENCE_PREFIX}{agent_id}"


def ai_turn(conversation_id: str) -> str:
    """The lock of the AI turn in progress (transient: a backup skips it)."""
    return f"{AI_TURN_PREFIX}{conversation_id}"


def conversation_starts(user_id: str) -> str:
    """A user's recent conversation starts (a sliding-window quota; transient: a backup skips it)."""
    return f"{QUOTA_PREFIX}conversation-starts:{user_id}"


def agent_load(agent_id: str) -> str:
    """The set of conversations currently assigned to an agent."""
    return f"{AGENT_PREFIX}{agent_id}:load"
