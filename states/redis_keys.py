"""Every Redis key shape the service uses, in one place (the backup takes PREFIXES).

Only the AI turn lock expires (AI_TURN_LOCK_S, renewed while the turn runs: chat.ai_turn); a migrated
session keeps the TTL it had, and a new one has none.

On a Redis Cluster (REDIS_CLUSTER=true) a script, a MULTI or a multi-key command must keep to one
hash slot. Every agent-wide key carries the hash tag AGENTS_TAG, so they all share one slot: the
presence re-assert script (an agent's presence hash and the online set) and the status MULTI
(presence hash, online and lease sets) stay there. Every other script or MULTI touches one key:
the live record's compare-and-set, the turn lock's take/renew/release, a quota's MULTI. What spans
conversations goes one command per key (pipelined: redis-py's cluster pipeline sends each node
its share), never one multi-key command: the turn locks' renewal, `db adopt`'s reads.
"""

SESSION_PREFIX = "session:"
PRESENCE_PREFIX = "presence:"
AGENTS_PREFIX = "agents:"  # the sets over all agents
AGENT_PREFIX = "agent:"  # per-agent keys besides presence
AI_TURN_PREFIX = "ai:turn:"  # transient: a backup skips it
QUOTA_PREFIX = "quota:"  # transient: a backup skips it

AGENTS_TAG = "{agents}"  # the hash tag of every agent-wide key: one cluster slot for all of them

AGENTS_ONLINE = f"{AGENTS_PREFIX}{AGENTS_TAG}:online"  # zset: agents whose status is online, score = ms they set it
AGENTS_LEASE = f"{AGENTS_PREFIX}{AGENTS_TAG}:lease"  # zset: ms until which an agent counts as connected (heartbeats)
AGENTS_LAST_ASSIGNED = f"{AGENTS_PREFIX}{AGENTS_TAG}:last_assigned"  # zset: ms of each agent's last assignment
EVENTS_CHANNEL = "chat:events"  # pub/sub channel for cross-instance fan-out (the default of BUS_CHANNEL)

# Every key prefix the service writes and a backup keeps: each key below starts with one of them.
PREFIXES = (SESSION_PREFIX, PRESENCE_PREFIX, AGENTS_PREFIX, AGENT_PREFIX)


def session(conversation_id: str) -> str:
    """The live record of a conversation (PROTOCOL section 5: `session:<id>`, no hash tag)."""
    return f"{SESSION_PREFIX}{conversation_id}"


def presence(agent_id: str) -> str:
    """An agent's presence hash: status, teams, max_chats (no expiry: the lease says if it is connected)."""
    return f"{PRESENCE_PREFIX}{AGENTS_TAG}:{agent_id}"


def ai_turn(conversation_id: str) -> str:
    """The lock of the AI turn in progress (transient: a backup skips it)."""
    return f"{AI_TURN_PREFIX}{conversation_id}"


def conversation_starts(user_id: str) -> str:
    """A user's recent conversation starts (a sliding-window quota; transient: a backup skips it)."""
    return f"{QUOTA_PREFIX}conversation-starts:{user_id}"


def login_failures_of_user(user_id: str) -> str:
    """Recent failed logins for one user id (a sliding window; transient: a backup skips it)."""
    return f"{QUOTA_PREFIX}login-failures:user:{user_id}"


def login_failures_of_address(address: str) -> str:
    """Recent failed logins from one client address (a sliding window; transient: a backup skips it)."""
    return f"{QUOTA_PREFIX}login-failures:address:{address}"


def agent_load(agent_id: str) -> str:
    """The set of conversations currently assigned to an agent."""
    return f"{AGENT_PREFIX}{AGENTS_TAG}:{agent_id}:load"


def visitor_tokens(address: str) -> str:
    """Visitor tokens recently given to one client address (a sliding-window quota; transient: a backup skips it)."""
    return f"{QUOTA_PREFIX}visitor-tokens:{address}"
