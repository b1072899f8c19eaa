"""Sessions migrated from the old Node.js format by scripts/migrate_redis.py are picked up by
the running service: the customer resumes its conversation and gets an AI reply."""

import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from chat import keys
from states import redis_keys
from tests.conftest import new_id, redis_url

SCRIPT = Path(__file__).parents[1] / "scripts" / "migrate_redis.py"


@pytest.mark.parametrize("backend", ["mysql", "sqlite"])
async def test_migrated_sessions_continue_in_the_service(request, harness_factory, redis, backend, tmp_path):
    url = request.getfixturevalue("mysql_database_url") if backend == "mysql" else None
    ai_session, human_session = new_id(), new_id()
    old = {
        ai_session: {"userId": "legacy-cust", "agent": "ai", "context": {"topic": "refund"},
                     "metadata": {"channel": "wechat"}, "createdAt": "2024-03-01T08:00:00.000Z",
                     "updatedAt": 1709280300000},
        human_session: {"userId": "legacy-cust", "agent": "human", "context": {}},
    }
    for sid, record in old.items():
        await redis.set(redis_keys.session(sid), orjson.dumps(record), px=3_600_000)
    # the cut-over: convert in place, the way the runbook does it (db 14 is this suite's own)
    proc = subprocess.run(  # noqa: PLW1510 - the exit code is asserted below
        [sys.executable, str(SCRIPT), "--source", redis_url(), "--target", redis_url(), "--quiet",
         "--report", str(tmp_path / "report.jsonl"), "--pattern", "session:*", "--verify"],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr

    h = await harness_factory(database_url=url, routing="manual")
    ws = await h.connect("legacy-cust")
    resumed = await ws.ok("conversation.resume", conversation_id=ai_session)
    c = resumed["conversation"]
    assert (c["state"], c["version"], c["metadata"], c["created_at"]) == (
        "ai", 0, {"channel": "wechat"}, "2024-03-01T08:00:00.000Z")
    assert resumed["messages"] == []
    m = (await ws.ok("message.send", conversation_id=ai_session, client_msg_id="c1", content="还在吗？"))["message"]
    assert m["seq"] == 1
    reply = await ws.event("message.created", lambda f: f["data"]["message"]["sender_type"] == "ai")
    assert reply["data"]["message"]["seq"] == 2
    await h.drain_ai()
    assert harness_context(h)[-1] == {"role": "user", "content": "还在吗？"}
    stored = orjson.loads(await redis.get(redis_keys.session(ai_session)))
    assert stored["context"] == {"topic": "refund"}  # the old context is kept
    assert 0 < await redis.pttl(redis_keys.session(ai_session)) <= 3_600_000  # and its TTL

    # the human one waits for an agent: an agent claims it and the customer hears from them
    agent = await h.connect("agent-1", role="agent")
    other = await ws.ok("conversation.resume", conversation_id=human_session)
    assert other["conversation"]["state"] == "handoff"
    await agent.ok("conversation.claim", conversation_id=human_session)
    await agent.ok("message.send", conversation_id=human_session, client_msg_id="a1", content="我来帮您")
    got = await ws.event("message.created", lambda f: f["data"]["message"]["sender_type"] == "agent")
    assert got["data"]["conversation_id"] == human_session
    # another customer still cannot see them
    stranger = await h.connect("someone-else")
    assert (await stranger.request("conversation.resume", conversation_id=ai_session))["code"] == "not_found"


def harness_context(h):
    return h.app[keys.AI_PROVIDER].calls[-1]


async def test_db_adopt_makes_migrated_handoffs_visible_to_agents(harness_factory, redis, mysql_database_url):
    waiting = new_id()
    await redis.set(redis_keys.session(waiting), orjson.dumps(
        {"user_id": "legacy", "agent_type": "human", "context": {}, "created_at": "2024-01-01T00:00:00.000Z",
         "updated_at": "2024-01-01T00:00:00.000Z"}))
    await redis.set(redis_keys.session(new_id()), b"not json")
    env = {"REDIS_URL": redis_url(), "DATABASE_URL": mysql_database_url, "JWT_SECRET_KEY": "x" * 40}
    import os

    def run() -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "chat", "db", "adopt"], capture_output=True, text=True,
                              timeout=60, env={**os.environ, **env}, check=False)

    first = run()
    assert first.returncode == 1 and "1 adopted" in first.stdout  # the bad one is reported:
    assert "1 invalid" in first.stdout
    assert first.stdout.splitlines()[-1] == ("result: FAILED (1 invalid record(s), not adopted: the 'skipped "
                                             "session:...' lines on stderr; 1 adopted)")
    second = run()
    assert "0 adopted, 1 already had a row" in second.stdout
    assert second.stdout.splitlines()[-1] == "result: FAILED (1 invalid record(s), not adopted: the 'skipped " \
        "session:...' lines on stderr; 0 adopted)"
    await redis.delete(*[key async for key in redis.scan_iter(match="session:*")
                         if await redis.get(key) == b"not json"])
    third = run()
    assert third.returncode == 0 and third.stdout.splitlines()[-1] == "result: OK (0 adopted, 1 already had a row)"
    h = await harness_factory(database_url=mysql_database_url, routing="manual")
    agent = await h.connect("agent-1", role="agent")
    queue = (await agent.ok("queue.list"))["conversations"]
    assert waiting in [c["id"] for c in queue]


def test_db_adopt_that_cannot_reach_redis_ends_with_a_failed_result(mysql_database_url, unused_tcp_port):
    env = {"REDIS_URL": f"redis://127.0.0.1:{unused_tcp_port}/0", "DATABASE_URL": mysql_database_url,
           "JWT_SECRET_KEY": "x" * 40}
    proc = subprocess.run([sys.executable, "-m", "chat", "db", "adopt"], capture_output=True, text=True,
                          timeout=60, env={**os.environ, **env}, check=False)

    assert proc.returncode == 1
    assert "chat-api: db adopt failed: " in proc.stderr
    assert proc.stdout.splitlines()[-1] == ("result: FAILED (see the error above; rows adopted before it stay, a new "
                                            "run adds only the rest)")
