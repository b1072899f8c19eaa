"""The event log is enough: replaying a conversation's log gives its stored state and version (a
property, over random trigger sequences, racing writers included), and `chat-api stats rebuild`
finds and repairs rows that drifted from their log."""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
import uuid
from pathlib import Path

import redis.asyncio as aioredis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chat import cli
from chat.settings import parse_database_url
from chat.store import Store, connect
from chat.store.log_stats import replay
from states import InvalidTransition, StaleVersion
from states.repository import Actor, ConversationRepository
from tests.conftest import redis_url

STEPS = st.lists(
    st.tuples(
        st.sampled_from(["request_handoff", "assign", "requeue", "release", "close", "reopen"]),
        st.sampled_from([None, "agent-1", "agent-2"]),  # the agent of an assign
        st.sampled_from([None, "team-a"]),  # a requeue's team
        st.booleans(),  # fired with a stale version: refused, writes nothing
    ),
    max_size=25,
)
_DIR = Path(tempfile.mkdtemp(prefix="replay-"))


async def _scenario(steps: list[tuple[str, str | None, str | None, bool]]) -> None:
    db = await connect(parse_database_url(f"sqlite:///{_DIR}/{uuid.uuid4().hex}.db"))
    redis = aioredis.Redis.from_url(redis_url())
    try:
        store = Store(db)
        await store.migrations.upgrade()
        repository = ConversationRepository(redis, store.conversations)
        c = await repository.create("cust-1")
        for trigger, agent, team, stale in steps:
            data = {"agent_id": agent} if trigger == "assign" else ({"team_id": team} if team else {})
            current = await repository.get(c.id)
            with contextlib.suppress(InvalidTransition, StaleVersion):  # refused: nothing written
                await repository.fire(c.id, trigger, actor=Actor("system"), reason="test",
                                      expect_version=current.version - 1 if stale else None, **data)
        stored = await repository.get(c.id, fresh=True)
        row = (await store.conversations.states_of([c.id]))[c.id]
        replayed = replay(await store.events.list_of(c.id))
        assert replayed.problems == ()
        assert (replayed.state, replayed.version) == (stored.state, stored.version)
        assert (replayed.state, replayed.agent_id) == row
        assert (replayed.agent_id, replayed.team_id) == (stored.agent_id, stored.team_id)
        await redis.delete(f"session:{c.id}")
    finally:
        await redis.aclose()
        await db.close()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(STEPS)
def test_replaying_the_log_gives_the_stored_state_and_version(steps):
    asyncio.run(_scenario(steps))


def test_replay_names_a_gap_and_a_wrong_start():
    class E:
        def __init__(self, version, from_state, to_state):
            self.version, self.from_state, self.to_state = version, from_state, to_state
            self.agent_id = self.team_id = None

    assert replay([]).state == "ai" and replay([]).version == 0
    result = replay([E(1, "ai", "handoff"), E(3, "human", "closed")])
    assert (result.state, result.version) == ("closed", 3)
    assert result.problems == ("version 3 follows 1", "version 3 leaves human, not handoff")
    erased = replay([E(1, "ai", "handoff"), E(2, "handoff", "erased"), E(3, "handoff", "ai")])
    assert (erased.state, erased.version, erased.problems) == ("ai", 3, ())  # an erasure keeps the state


async def test_stats_rebuild_reports_and_repairs_rows_that_drifted_from_their_log(tmp_path, monkeypatch, capsys,
                                                                                    redis):
    url = f"sqlite:///{tmp_path}/chat.db"
    db = await connect(parse_database_url(url))
    store = Store(db)
    await store.migrations.upgrade()
    repository = ConversationRepository(redis, store.conversations)
    good, drifted, broken = [await repository.create(f"cust-{i}") for i in range(3)]
    for cid in (good.id, drifted.id, broken.id):
        await repository.fire(cid, "request_handoff", reason="test")
        await repository.fire(cid, "assign", reason="test", agent_id="agent-1")
    await repository.fire(broken.id, "close", reason="test")
    await db.execute("UPDATE conversations SET state = 'ai', version = 7, agent_id = NULL WHERE id = %s", (drifted.id,))
    await db.execute("DELETE FROM conversation_events WHERE conversation_id = %s AND version = 2", (broken.id,))
    await db.close()
    monkeypatch.setenv("DATABASE_URL", url)
    monkeypatch.setenv("REDIS_URL", redis_url())
    monkeypatch.setenv("JWT_SECRET_KEY", "test-secret-0123456789abcdef0123456789")
    monkeypatch.chdir(tmp_path)

    assert await asyncio.to_thread(cli.main, ["stats", "rebuild"]) == 1
    out, err = capsys.readouterr()
    assert f"{drifted.id}: row is ('ai', 7, None, None), the log says ('human', 2, 'agent-1', None)" in out
    assert f"{broken.id}: the log is broken: version 3 follows 1; version 3 leaves human, not handoff" in out
    assert "checked 3 conversations against their event log: 1 differing (0 repaired), 1 broken logs" in out
    assert "  checked 3, differing 1, repaired 0, broken logs 1" in err

    assert await asyncio.to_thread(cli.main, ["stats", "rebuild", "--repair"]) == 1  # the broken log stays
    assert f"{drifted.id}: repaired from the log" in capsys.readouterr().out
    db = await connect(parse_database_url(url))
    try:
        assert await Store(db).conversations.states_of([drifted.id]) == {drifted.id: ("human", "agent-1")}
    finally:
        await db.close()
    out = (await asyncio.to_thread(cli.main, ["stats", "rebuild"]), capsys.readouterr().out)
    assert out[0] == 1 and "0 differing (0 repaired), 1 broken logs" in out[1]
