"""Every Redis key shape and TTL the service uses, in one place (backup.py reads PREFIXES)."""

SESSION_PREFIX = "session:"
PRESENCE_PREFIX = "presence:"
AGENTS_ONLINE = "agents:online"  # sorted set of online agent ids
QUEUE_PREFIX = "queue:"  # sorted set per team ("queue:_" is the general queue), score = ms entered handoff
EVENTS_CHANNEL = "chat:events"  # pub/sub channel for cross-instance fan-out

# Every prefix a backup must take; keep in step with the functions below.
PREFIXES = (SESSION_PREFIX, PRESENCE_PREFIX, "agents:", QUEUE_PREFIX, "agent:")

GENERAL_QUEUE = "_"


def session(conversation_id: str) -> str:
    """The live record of a conversation (PROTOCOL section 5)."""
    return f"{SESSION_PREFIX}{conversation_id}"


def presence(agent_id: str) -> str:
    """An agent's presence hash, kept alive by its sockets with an expiry."""
    return f"{PRESENCE_PREFIX}{agent_id}"


def queue(team_id: str | None) -> str:
    """The handoff queue of a team, or the general queue."""
    return f"{QUEUE_PREFIX}{team_id or GENERAL_QUEUE}"


def agent_load(agent_id: str) -> str:
    """The set of conversations currently assigned to an agent."""
    return f"agent:{agent_id}:load"
