"""GET /api/v1/stats against a hand-computed fixture, on MariaDB and SQLite.

Rows are written directly with known timestamps (a day in 2010 of its own for each test, as
the MariaDB database is shared by the run), so every figure below was worked out by hand from
the table in `fixture`.
"""

from __future__ import annotations

import itertools
import uuid

import orjson
import pytest

from chat import keys
from chat.app import create_app
from chat.auth import issue_token
from chat.store.models import CONVERSATION_COLUMNS, EVENT_COLUMNS, MESSAGE_COLUMNS
from chat.store.stats import p90_seconds
from chat.store.timers import MARK_COLUMNS
from states.clock import iso_from_ms, ms_from_iso, now_ms

DAY_S = 86_400
_DAYS = itertools.count(10, 10)  # day numbers in 2010, one per fixture, 9 free days between


class Clock:
    """T0 (a midnight of 2010 used by one test only) and times relative to it."""

    def __init__(self) -> None:
        self.t0 = ms_from_iso("2010-01-01T00:00:00Z") + next(_DAYS) * DAY_S * 1000

    def ms(self, seconds: float) -> int:
        """Epoch ms of T0 + seconds."""
        return self.t0 + round(seconds * 1000)

    def iso(self, seconds: float) -> str:
        """ISO 8601 of T0 + seconds."""
        return iso_from_ms(self.ms(seconds))

    def window(self, start_s: float = 0, end_s: float = DAY_S) -> dict:
        """since/until query parameters for [T0 + start_s, T0 + end_s)."""
        return {"since": self.iso(start_s), "until": self.iso(end_s)}


@pytest.fixture
async def api(aiohttp_client, make_settings, database_url):
    app = create_app(make_settings(database_url=database_url))
    client = await aiohttp_client(app)
    token = issue_token(app[keys.SETTINGS].jwt_secret_key, "stats-admin", "admin")

    async def stats(**params) -> tuple[int, dict]:
        resp = await client.get("/api/v1/stats", params=params, headers={"Authorization": f"Bearer {token}"})
        return resp.status, await resp.json()

    return app, stats


class Fixture:
    """Writes conversations, their transition log and their messages."""

    def __init__(self, db, clock: Clock):
        self.db = db
        self.at = clock.ms

    async def conversation(self, created_s: float, state: str, team_id: str | None) -> str:
        cid = str(uuid.uuid4())
        await self.db.execute(
            f"INSERT INTO conversations ({CONVERSATION_COLUMNS}) VALUES "
            "(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            (cid, "stats-user", state, "ai" if state == "ai" else "human", None, team_id, 0, 0,
             orjson.dumps({}).decode(), None, self.at(created_s), self.at(created_s)),
        )
        return cid

    async def events(self, cid: str, *transitions: tuple) -> None:
        """(when_s, trigger, from_state, to_state[, actor_type, reason]) each; actor system by default."""
        for version, (when_s, trigger, from_state, to_state, *who) in enumerate(transitions, start=1):
            actor, reason = (who + ["system", None])[:2] if who else ("system", None)
            await self.db.execute(
                f"INSERT INTO conversation_events ({EVENT_COLUMNS}) VALUES "
                "(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                (str(uuid.uuid4()), cid, version, trigger, from_state, to_state, actor, None, reason, None, None,
                 self.at(when_s)),
            )

    async def breach(self, cid: str, version: int, when_s: float) -> None:
        await self.db.execute(
            f"INSERT INTO conversation_marks ({MARK_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
            (str(uuid.uuid4()), cid, version, "sla_breached", "human", "agent-1", None, self.at(when_s)),
        )

    async def messages(self, cid: str, *messages: tuple[float, str, bool]) -> None:
        for seq, (when_s, sender_type, private) in enumerate(messages, start=1):
            await self.db.execute(
                f"INSERT INTO messages ({MESSAGE_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
                (str(uuid.uuid4()), cid, seq, sender_type, None, "text", 1 if private else 0, None, self.at(when_s)),
            )


@pytest.fixture
async def fixture(api):
    """Times are seconds after T0 (a midnight in 2010); the window is [0, 86400).

    | conv | created | team | transitions (s) | messages (s) |
    | --- | --- | --- | --- | --- |
    | A | 0 | T | handoff 10, assign 40.5, close 300 | customer 5, agent private 50, agent 100 |
    | B | 1000 | T | handoff 1010, assign 1100, requeue 1200, assign 1500 | customer 1005, agent 1550 |
    | C | 2000 | - | close 2600 | customer 2010, ai 2020 |
    | D | 3000 | T2 | handoff 3100, release 3400 | system 3101 |
    | E | -5000 | T | handoff -4000, assign 5000, close 6000 | agent 5020 |
    | F | 7000 | - | handoff DAY+100 | customer 7005 |
    | G | DAY+10 | - | (none) | customer DAY+20 |
    """
    app, _ = api
    clock = Clock()
    f = Fixture(app[keys.STORE].db, clock)
    team, team2 = f"team-{uuid.uuid4().hex[:8]}", f"team-{uuid.uuid4().hex[:8]}"
    a = await f.conversation(0, "closed", team)
    await f.events(a, (10, "request_handoff", "ai", "handoff"), (40.5, "assign", "handoff", "human"),
                   (300, "close", "human", "closed"))
    await f.messages(a, (5, "customer", False), (50, "agent", True), (100, "agent", False))
    b = await f.conversation(1000, "human", team)
    await f.events(b, (1010, "request_handoff", "ai", "handoff"), (1100, "assign", "handoff", "human"),
                   (1200, "requeue", "human", "handoff"), (1500, "assign", "handoff", "human"))
    await f.messages(b, (1005, "customer", False), (1550, "agent", False))
    c = await f.conversation(2000, "closed", None)
    await f.events(c, (2600, "close", "ai", "closed"))
    await f.messages(c, (2010, "customer", False), (2020, "ai", False))
    d = await f.conversation(3000, "ai", team2)
    await f.events(d, (3100, "request_handoff", "ai", "handoff"), (3400, "release", "handoff", "ai"))
    await f.messages(d, (3101, "system", False))
    e = await f.conversation(-5000, "closed", team)
    await f.events(e, (-4000, "request_handoff", "ai", "handoff"), (5000, "assign", "handoff", "human"),
                   (6000, "close", "human", "closed"))
    await f.messages(e, (5020, "agent", False))
    g = await f.conversation(7000, "handoff", None)
    await f.events(g, (DAY_S + 100, "request_handoff", "ai", "handoff"))
    await f.messages(g, (7005, "customer", False))
    h = await f.conversation(DAY_S + 10, "ai", None)
    await f.messages(h, (DAY_S + 20, "customer", False))
    return {"team": team, "team2": team2, "clock": clock}


async def test_stats_of_the_window(api, fixture, database_url):
    _, stats = api
    clock = fixture["clock"]
    status, body = await stats(**clock.window())
    assert status == 200, body
    # the times count every conversation open during the window, also ones other tests left in the
    # shared MariaDB database from long before it: they are checked per team (below and in the next test)
    times = {key: body.pop(key) for key in ("time_with_ai_s", "time_in_queue_s", "time_with_humans_s",
                                            "ai_time_share")}
    assert times["time_with_ai_s"] >= 163120.0 and times["time_with_humans_s"] >= 86259.5
    if database_url.startswith("sqlite"):  # a database of this test's own: every figure by hand
        assert times == {
            "time_with_ai_s": 163120.0,  # A 10, B 10, C 600, D 100 + 83000 (back with the AI), F 79400
            "time_in_queue_s": 5720.5,  # A 30.5, B 90 + 300, D 300, E 5000 (its wait since -4000, cut at 0)
            "time_with_humans_s": 86259.5,  # A 259.5, B 100 + 84900, E 1000
            "ai_time_share": 0.6541,
        }
    assert body == {
        "since": clock.iso(0),
        "until": clock.iso(DAY_S),
        "team_id": None,
        "conversations_by_state": {"ai": 1, "handoff": 1, "human": 1, "closed": 2},  # A B C D F
        "started": 5,
        "handed_off": 3,  # A B D (E's and F's handoffs are outside the window)
        "closed": 3,  # A C E
        "ai_resolved": 1,  # C: A and E had an agent message
        "handoff_rate": 0.6,
        "queue_waits": 3,  # A 30.5, B 90, B again 300 (D left the queue for the AI: no wait)
        "queue_wait_avg_s": 140.167,  # 420.5 / 3
        "queue_wait_p90_s": 300.0,  # nearest rank: ceil(0.9 * 3) = 3rd of [30.5, 90, 300]
        "first_responses": 3,  # A 100 - 40.5 (the private note does not count), B 1550 - 1100, E 5020 - 5000
        "first_response_avg_s": 176.5,  # (59.5 + 450 + 20) / 3
        "resolution_avg_s": 3966.667,  # (300 + 600 + 11000) / 3
        "messages_by_sender_type": {"customer": 4, "ai": 1, "agent": 4, "system": 1},
        # from the log alone (the times of A B E: team T, D: team2, in the next test)
        "closes_by_actor": {"customer": 0, "agent": 0, "admin": 0, "ai": 0, "system": 3, "inactivity": 0},
        "reopened": 0,
        "reopen_rate": 0.0,
        "human_entries": 4,  # A 40.5, B 1100 and 1500, E 5000
        "sla_breached": 0,
        "sla_met_rate": 1.0,
        "csat_average": None,  # the ratings table (issue 15's CSAT): none here
        "csat_responses": 0,
        "csat_response_rate": 0.0,  # 0 of the 3 closes rated
    }


async def test_stats_of_one_team(api, fixture):
    _, stats = api
    status, body = await stats(**fixture["clock"].window(), team_id=fixture["team"])
    assert status == 200, body
    assert body["team_id"] == fixture["team"]
    assert body["conversations_by_state"] == {"ai": 0, "handoff": 0, "human": 1, "closed": 1}  # A B
    assert (body["started"], body["handed_off"], body["handoff_rate"]) == (2, 2, 1.0)
    assert (body["closed"], body["ai_resolved"], body["resolution_avg_s"]) == (2, 0, 5650.0)  # A 300, E 11000
    assert (body["queue_waits"], body["queue_wait_avg_s"], body["queue_wait_p90_s"]) == (3, 140.167, 300.0)
    assert (body["first_responses"], body["first_response_avg_s"]) == (3, 176.5)
    assert body["messages_by_sender_type"] == {"customer": 2, "ai": 0, "agent": 4, "system": 0}
    assert (body["time_with_ai_s"], body["time_in_queue_s"], body["time_with_humans_s"]) == (20.0, 5420.5, 86259.5)
    assert (body["closes_by_actor"]["system"], body["human_entries"]) == (2, 4)

    status, body = await stats(**fixture["clock"].window(), team_id=fixture["team2"])  # D only
    # D: ai 3000-3100, handoff 3100-3400, back with the AI 3400 to the end of the window
    assert (body["time_with_ai_s"], body["time_in_queue_s"], body["time_with_humans_s"]) == (83100.0, 300.0, 0.0)
    assert body["ai_time_share"] == 1.0
    assert body["conversations_by_state"] == {"ai": 1, "handoff": 0, "human": 0, "closed": 0}
    assert (body["started"], body["handed_off"], body["handoff_rate"], body["queue_waits"]) == (1, 1, 1.0, 0)
    assert body["queue_wait_avg_s"] is None and body["queue_wait_p90_s"] is None
    assert body["first_response_avg_s"] is None and body["resolution_avg_s"] is None


async def test_stats_of_an_empty_window(api, fixture):
    _, stats = api
    status, body = await stats(**fixture["clock"].window(-5 * DAY_S, -4 * DAY_S))
    assert status == 200
    assert body["started"] == 0 and body["handoff_rate"] == 0.0 and body["closed"] == 0
    assert body["conversations_by_state"] == {"ai": 0, "handoff": 0, "human": 0, "closed": 0}
    assert body["messages_by_sender_type"] == {"customer": 0, "ai": 0, "agent": 0, "system": 0}


async def test_a_narrow_window_cuts_pairs_by_their_start(api, fixture):
    _, stats = api
    # [1200 s, 1600 s): B's second wait starts at 1200 (counted); its first started at 1010 (not)
    status, body = await stats(**fixture["clock"].window(1200, 1600))
    assert (body["queue_waits"], body["queue_wait_avg_s"]) == (1, 300.0)
    assert body["started"] == 0 and body["first_responses"] == 0
    assert body["messages_by_sender_type"]["agent"] == 1  # B at 1550


async def test_closes_by_actor_reopens_and_the_sla_come_from_the_log(api):
    app, stats = api
    clock = Clock()
    f = Fixture(app[keys.STORE].db, clock)
    team = f"team-{uuid.uuid4().hex[:8]}"  # the MariaDB database is shared: earlier days' open conversations
    a = await f.conversation(0, "closed", team)  # the customer closes, reopens; idle timers close it
    await f.events(a, (10, "close", "ai", "closed", "customer"), (20, "reopen", "closed", "ai", "customer"),
                   (1820, "close", "ai", "closed", "system", "inactivity"))
    b = await f.conversation(100, "closed", team)  # an agent answers late, then closes
    await f.events(b, (110, "assign", "ai", "human", "agent"), (400, "close", "human", "closed", "agent"))
    await f.breach(b, 1, 230)
    c = await f.conversation(200, "human", team)  # assigned, SLA still running
    await f.events(c, (210, "assign", "ai", "human", "admin"))
    d = await f.conversation(300, "closed", team)
    await f.events(d, (310, "close", "ai", "closed", "admin"))
    status, body = await stats(**clock.window(), team_id=team)
    assert status == 200, body
    assert body["closes_by_actor"] == {"customer": 1, "agent": 1, "admin": 1, "ai": 0, "system": 0, "inactivity": 1}
    assert (body["reopened"], body["reopen_rate"]) == (1, 0.25)
    assert (body["human_entries"], body["sla_breached"], body["sla_met_rate"]) == (2, 1, 0.5)
    # a: ai 0-10 and 20-1820; b: ai 100-110, human 110-400; c: ai 200-210, human to the end; d: ai 300-310
    assert body["time_with_ai_s"] == 10 + 1800 + 10 + 10 + 10
    assert body["time_with_humans_s"] == 290 + (DAY_S - 210)
    status, body = await stats(**clock.window(0, 215), team_id=team)  # cut at 215: c has just been assigned
    assert body["time_with_humans_s"] == (215 - 110) + (215 - 210) and body["sla_breached"] == 0  # b: at 230


async def test_an_erasure_changes_no_time_and_no_wait(api):
    """PROTOCOL 8.2: after an erasure the statistics are unchanged. Its log entry is no move: a
    conversation whose only entry it is still spent its time with the AI, and a wait it falls into is
    still a wait."""
    app, stats = api
    clock = Clock()
    f = Fixture(app[keys.STORE].db, clock)
    team = f"team-{uuid.uuid4().hex[:8]}"
    a = await f.conversation(0, "ai", team)  # never moved, erased at 50
    await f.events(a, (50, "erase", "ai", "erased", "admin"))
    b = await f.conversation(100, "human", team)  # erased while it waits in the queue, then assigned
    await f.events(b, (110, "request_handoff", "ai", "handoff", "customer"),
                   (120, "erase", "handoff", "erased", "admin"), (170, "assign", "handoff", "human", "agent"))
    status, body = await stats(**clock.window(), team_id=team)
    assert status == 200, body
    assert body["time_with_ai_s"] == DAY_S + 10  # a: the whole window; b: 100-110
    assert (body["time_in_queue_s"], body["time_with_humans_s"]) == (60, DAY_S - 170)
    assert (body["queue_waits"], body["queue_wait_avg_s"]) == (1, 60.0)


async def test_a_window_reaching_into_the_future_counts_time_only_up_to_now(api):
    app, stats = api
    f = Fixture(app[keys.STORE].db, Clock())
    hour_ago_ms = now_ms() - 3_600_000
    f.at = lambda seconds: hour_ago_ms + round(seconds * 1000)
    team = f"team-{uuid.uuid4().hex[:8]}"
    await f.conversation(0, "ai", team)  # with the AI for the last hour
    status, body = await stats(since=iso_from_ms(hour_ago_ms - 60_000), until=iso_from_ms(now_ms() + 10 * DAY_S * 1000),
                               team_id=team)
    assert status == 200, body
    assert 3600 <= body["time_with_ai_s"] < 3700  # not ten days more


async def test_stats_validation(api):
    _, stats = api
    status, body = await stats(since="1900-01-01", until="1970-01-01")  # before any data: zeros
    assert status == 200 and body["since"] == "1900-01-01T00:00:00.000Z" and body["started"] == 0, body
    for params in ({"since": "soon"}, {"since": "2010-03-02", "until": "2010-03-01"}, {"team_id": ""}):
        status, body = await stats(**params)
        assert status == 400 and body["error"]["code"] == "invalid", params


def test_p90_nearest_rank():
    assert p90_seconds([]) is None
    assert p90_seconds([5000]) == 5.0
    assert p90_seconds(list(range(1000, 11000, 1000))) == 9.0  # ten values: the 9th
    assert p90_seconds(list(range(1000, 12000, 1000))) == 10.0  # eleven values: ceil(9.9) = 10th
