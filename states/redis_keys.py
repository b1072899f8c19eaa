"""Every Redis key shape and TTL the service uses, in one place (backup.py reads PREFIXES)."""

SESSION_PREFIX = "session:"
PRESENCE_PREFIX = "presence:"
AGENTS_ONLINE = "agents:online"  # zset: agents whose status is online, score = ms they set it
AGENTS_LEASE = "agents:lease"  # zset: ms until which an agent counts as connected (heartbeats renew it)
AGENTS_LAST_ASSIGNED = "agents:last_assigned"  # zset: ms of each agent's last assignment (idle longest first)
EVENTS_CHANNEL = "chat:events"  # pub/sub channel for cross-instance fan-out

# Every key prefix the service writes; backup.py takes them all. Keep in step with the functions below.
PREFIXES = (SESSION_PREFIX, PRESENCE_PREFIX, "agents:", "agent:")


def session(conversation_id: str) -> str:
    """The live record of a conversation (PROTOCOL section 5)."""
    return f"{SESSION_PREFIX}{conversation_id}"


def presence(agent_id: str) -> str:
    """An agent's presence hash: status, teams, max_chats (no expiry: the lease says if it is connected)."""
    return f"{PRESENCE_PREFIX}{agent_id}"


def ai_turn(conversation_id: str) -> str:
    """The lock of the AI turn in progress (transient: a backup skips it)."""
    return f"ai:turn:{conversation_id}"


def agent_load(agent_id: str) -> str:
    """The set of conversations currently assigned to an agent."""
    return f"agent:{agent_id}:load"
