"""Every Redis key shape the service uses, in one place (the backup takes PREFIXES).

Only the AI turn lock (AI_TURN_LOCK_S, renewed while the turn runs: chat.ai_turn), its asked flag and
the partial text of a streamed reply (chat.ai_stream) expire; a migrated session keeps the TTL it had,
and a new one has none.

On a Redis Cluster (REDIS_CLUSTER=true) a script, a MULTI or a multi-key command must keep to one
hash slot. Every agent-wide key carries the hash tag AGENTS_TAG, so they all share one slot: the
presence re-assert script (an agent's presence hash and the online set) and the status MULTI
(presence hash, online and lease sets) stay there. Every other script or MULTI touches one key, or
keys of one slot: the live record's compare-and-set and a quota's MULTI touch one; the turn lock's
take, renew and release touch the lock and its asked flag, whose hash tag is the lock's key; the AI
stream's scripts touch one key and SPUBLISH on the conversation's channel, which shares that key's
slot. What spans conversations goes one command per key (pipelined: redis-py's cluster
pipeline sends each node its share), never one multi-key command: the turn locks' renewal, `db adopt`'s reads.
"""

SESSION_PREFIX = "session:"
PRESENCE_PREFIX = "presence:"
AGENTS_PREFIX = "agents:"  # the sets over all agents
AGENT_PREFIX = "agent:"  # per-agent keys besides presence
AI_TURN_PREFIX = "ai:turn:"  # transient: a backup skips it
AI_ASKED_PREFIX = "ai:asked:"  # transient: a backup skips it
AI_STREAM_PREFIX = "ai:stream:"  # transient: a backup skips it
QUOTA_PREFIX = "quota:"  # transient: a backup skips it
TIMERS_PREFIX = "timers:"  # the due-time index of the state timers (states/timers.py)

AGENTS_TAG = "{agents}"  # the hash tag of every agent-wide key: one cluster slot for all of them
TIMERS_TAG = "{timers}"  # the hash tag of the timer keys: the claim script's key, one slot

AGENTS_ONLINE = f"{AGENTS_PREFIX}{AGENTS_TAG}:online"  # zset: agents whose status is online, score = ms they set it
AGENTS_LEASE = f"{AGENTS_PREFIX}{AGENTS_TAG}:lease"  # zset: ms until which an agent counts as connected (heartbeats)
AGENTS_LAST_ASSIGNED = f"{AGENTS_PREFIX}{AGENTS_TAG}:last_assigned"  # zset: ms of each agent's last assignment
TIMERS_DUE = f"{TIMERS_PREFIX}{TIMERS_TAG}:due"  # zset: armed timer (name|version|conversation) -> due ms
EVENTS_CHANNEL = "chat:events"  # pub/sub channel for cross-instance fan-out (the default of BUS_CHANNEL)

# Every key prefix the service writes and a backup keeps: each key below starts with one of them.
PREFIXES = (SESSION_PREFIX, PRESENCE_PREFIX, AGENTS_PREFIX, AGENT_PREFIX, TIMERS_PREFIX)


def session(conversation_id: str) -> str:
    """The live record of a conversation (PROTOCOL section 5: `session:<id>`, no hash tag)."""
    return f"{SESSION_PREFIX}{conversation_id}"


def presence(agent_id: str) -> str:
    """An agent's presence hash: status, teams, max_chats (no expiry: the lease says if it is connected)."""
    return f"{PRESENCE_PREFIX}{AGENTS_TAG}:{agent_id}"


def ai_turn(conversation_id: str) -> str:
    """The lock of the AI turn in progress (transient: a backup skips it)."""
    return f"{AI_TURN_PREFIX}{conversation_id}"


def ai_asked(conversation_id: str) -> str | None:
    """Set by an instance that found the AI turn lock busy with a customer message to answer, read and
    cleared by the lock's release: the holder looks again (transient). Its hash tag is the part of the lock
    key a cluster hashes, so the lock's scripts keep to one slot; None when no tag can be that part (it
    holds a `}`: a migrated id), and the lock goes without a flag."""
    hashed = _hashed_part(ai_turn(conversation_id))
    return None if "}" in hashed else f"{AI_ASKED_PREFIX}{{{hashed}}}"


def ai_stream(channel: str) -> str:
    """The partial text of a conversation's AI reply being streamed (chat.ai_stream; expires), named
    after the conversation's bus channel: its hash tag is the part of the channel Redis hashes, so on a
    Redis Cluster the script that appends a delta and publishes it on that channel keeps to one slot."""
    return f"{AI_STREAM_PREFIX}{{{_hashed_part(channel)}}}"


def _hashed_part(name: str) -> str:
    """What Redis Cluster hashes of a key or channel name: its first non-empty `{...}`, else all of it."""
    start = name.find("{")
    end = name.find("}", start + 1) if start >= 0 else -1
    return name[start + 1:end] if end > start + 1 else name


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
