"""The Redis key shapes: exact, and each under a prefix the backup takes."""

from states import redis_keys


def test_key_shapes_are_exact():
    assert redis_keys.session("c1") == "session:c1"
    assert redis_keys.presence("a1") == "presence:{agents}:a1"
    assert redis_keys.agent_load("a1") == "agent:{agents}:a1:load"
    assert redis_keys.ai_turn("c1") == "ai:turn:c1"
    assert redis_keys.ai_asked("c1") == "ai:asked:{ai:turn:c1}"  # the lock's slot
    assert redis_keys.ai_asked("a{b}") == "ai:asked:{b}"  # the part of the lock key a cluster hashes
    assert (redis_keys.AGENTS_ONLINE, redis_keys.AGENTS_LEASE, redis_keys.AGENTS_LAST_ASSIGNED) == (
        "agents:{agents}:online", "agents:{agents}:lease", "agents:{agents}:last_assigned"
    )
    assert redis_keys.EVENTS_CHANNEL == "chat:events"
    assert redis_keys.TIMERS_DUE == "timers:{timers}:due"  # one key, one hash tag: the claim script's slot


def test_every_kept_key_is_under_a_backup_prefix_and_the_turn_lock_is_not():  # nor its asked flag
    kept = [redis_keys.session("c"), redis_keys.presence("a"), redis_keys.agent_load("a"), redis_keys.AGENTS_ONLINE,
            redis_keys.AGENTS_LEASE, redis_keys.AGENTS_LAST_ASSIGNED, redis_keys.TIMERS_DUE]
    assert all(key.startswith(redis_keys.PREFIXES) for key in kept)
    assert not redis_keys.ai_turn("c").startswith(redis_keys.PREFIXES)
    assert not redis_keys.ai_asked("c").startswith(redis_keys.PREFIXES)
