"""SESSION_TTL_S: a closed conversation's live record expires; reopening makes it permanent again;
an expired record is rebuilt from SQL (issue 12.10, PROTOCOL section 7)."""

from chat import keys
from chat.settings import Settings
from states import State, redis_keys
from states.repository import ConversationRepository

TTL_S = 3600
AGENT = {"agent_id": "agent-1"}


async def closed_conversation(repo: ConversationRepository) -> str:
    conversation = await repo.create("user-ttl")
    await repo.fire(conversation.id, "assign", **AGENT)
    await repo.fire(conversation.id, "close")
    return conversation.id


async def test_closing_sets_the_ttl_and_reopening_removes_it(redis, store):
    repo = ConversationRepository(redis, store.conversations, session_ttl_s=TTL_S)
    cid = await closed_conversation(repo)
    key = redis_keys.session(cid)
    assert 0 < await redis.pttl(key) <= TTL_S * 1000
    await repo.fire(cid, "reopen")
    assert await redis.pttl(key) == -1  # no expiry while the conversation is open


async def test_other_transitions_keep_a_key_ttl(redis, store):
    """A migrated key keeps the TTL it came with until it closes (PROTOCOL 7.1)."""
    repo = ConversationRepository(redis, store.conversations, session_ttl_s=TTL_S)
    conversation = await repo.create("user-ttl")
    key = redis_keys.session(conversation.id)
    await redis.pexpire(key, 10 * TTL_S * 1000)
    await repo.fire(conversation.id, "request_handoff")
    assert TTL_S * 1000 < await redis.pttl(key) <= 10 * TTL_S * 1000


async def test_zero_keeps_a_closed_record_forever(redis, store):
    repo = ConversationRepository(redis, store.conversations, session_ttl_s=0)
    cid = await closed_conversation(repo)
    assert await redis.pttl(redis_keys.session(cid)) == -1


async def test_an_expired_record_is_rebuilt_from_sql(redis, store):
    repo = ConversationRepository(redis, store.conversations, session_ttl_s=TTL_S)
    cid = await closed_conversation(repo)
    key = redis_keys.session(cid)
    await redis.delete(key)  # what the expiry does

    rebuilt = await repo.get(cid)
    assert (rebuilt.state, rebuilt.version, rebuilt.agent_id) == (State.CLOSED.value, 2, "agent-1")
    assert 0 < await redis.pttl(key) <= TTL_S * 1000  # a closed record read back expires again

    await redis.delete(key)
    reopened = await repo.fire(cid, "reopen")  # a customer coming back after the expiry
    assert (reopened.after.state, reopened.after.version) == (State.AI.value, 3)
    assert await redis.pttl(key) == -1


def test_the_setting_row():
    assert Settings().session_ttl_s == 7 * 24 * 3600
    assert Settings.from_env({"SESSION_TTL_S": "0"}).session_ttl_s == 0


async def test_the_service_uses_the_setting(harness_factory):
    h = await harness_factory(session_ttl_s=120)
    repo: ConversationRepository = h.app[keys.CONVERSATIONS]
    cid = await closed_conversation(repo)
    assert 0 < await repo.redis.pttl(redis_keys.session(cid)) <= 120_000
