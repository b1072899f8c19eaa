"""The metrics an operator runs a desk on (GET /metrics): no `*_created` series, sockets by role, agents
online, conversations waiting by team and the oldest wait, HTTP requests by route; and the Grafana
dashboard in docs/ asks only for metrics the service serves."""

from __future__ import annotations

import json
import re
from pathlib import Path

from prometheus_client import REGISTRY

from chat import keys
from chat.bus import PresenceChanged

DASHBOARD = Path(__file__).resolve().parents[1] / "docs" / "grafana-dashboard.json"


def value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def scrape(h) -> str:
    resp = await h.client.get("/metrics")
    assert resp.status == 200
    return await resp.text()


async def test_no_created_series(harness):
    await harness.client.get("/health")
    text = await scrape(harness)
    assert "chat_http_request_seconds_bucket" in text and "chat_messages_total" in text
    assert not [line for line in text.splitlines() if "_created" in line]


async def test_sockets_by_role_follow_sessions(harness):
    h = harness
    h.app[keys.DESK].refresh_s = 0
    await scrape(h)
    before = {role: value("chat_ws_sessions", role=role) for role in ("customer", "agent")}
    customer = await h.connect("desk-cust")
    agent = await h.connect("desk-agent", role="agent")
    await customer.ok("conversation.start")  # both sessions are open once a command was answered
    await agent.ok("presence.set", status="away")
    await scrape(h)
    assert value("chat_ws_sessions", role="customer") == before["customer"] + 1
    assert value("chat_ws_sessions", role="agent") == before["agent"] + 1
    from tests.wsclient import when_session_closed

    closed = when_session_closed(h.app, "desk-cust")
    await customer.close()
    await closed.wait()
    await scrape(h)
    assert value("chat_ws_sessions", role="customer") == before["customer"]


async def test_waiting_by_team_and_the_oldest_wait(harness_factory):
    h = await harness_factory(routing="manual")  # nobody takes them: they wait
    desk = h.app[keys.DESK]
    desk.refresh_s = 0
    store = h.app[keys.STORE]
    team = (await store.teams.create("billing-desk", None))["id"]
    customer = await h.connect("desk-waiter")
    waiting = []
    for team_id in (None, None, team):
        cid = (await customer.ok("conversation.start", team_id=team_id))["conversation"]["id"]
        await customer.ok("handoff.request", conversation_id=cid)
        waiting.append(cid)
    queue = {cid: ms for cid, _, ms in await store.conversations.handoff_queue()}
    desk.clock = lambda: queue[waiting[0]] + 90_000
    await scrape(h)
    assert value("chat_conversations_waiting", team="none") == 2
    assert value("chat_conversations_waiting", team=team) == 1
    assert value("chat_conversations_waiting_oldest_seconds", team="none") == 90.0
    assert value("chat_conversations_waiting_oldest_seconds", team=team) == (
        queue[waiting[0]] + 90_000 - queue[waiting[2]]) / 1000
    agent = await h.connect("desk-claimer", role="agent")
    for cid in waiting[:2]:
        await agent.ok("conversation.claim", conversation_id=cid)
    await scrape(h)
    assert value("chat_conversations_waiting", team="none") == 0  # still shown, at 0
    assert value("chat_conversations_waiting_oldest_seconds", team="none") == 0
    assert value("chat_conversations_waiting", team=team) == 1


async def test_agents_online_come_from_the_roster(harness):
    h = harness
    h.app[keys.DESK].refresh_s = 0
    roster = h.app[keys.PRESENCE].roster
    await scrape(h)
    before = value("chat_agents_online")
    roster.apply(PresenceChanged("desk-online-1", "online", ("billing",)))
    roster.apply(PresenceChanged("desk-online-2", "online", ()))
    await scrape(h)
    assert value("chat_agents_online") == before + 2
    roster.apply(PresenceChanged("desk-online-1", "away"))
    await scrape(h)
    assert value("chat_agents_online") == before + 1


async def test_http_requests_by_route_pattern(harness):
    h = harness
    token = h.token("desk-admin", "admin")
    route = "/api/v1/conversations/{id}"
    before_ok = value("chat_http_request_seconds_count", method="GET", route=route, status="4xx")
    before_unmatched = value("chat_http_request_seconds_count", method="GET", route="unmatched", status="4xx")
    for _ in range(2):
        resp = await h.client.get("/api/v1/conversations/no-such-id", headers={"Authorization": f"Bearer {token}"})
        assert resp.status == 404
    assert (await h.client.get("/no/such/path/123")).status == 404
    assert value("chat_http_request_seconds_count", method="GET", route=route, status="4xx") == before_ok + 2
    assert value("chat_http_request_seconds_count", method="GET", route="unmatched", status="4xx") == \
        before_unmatched + 1
    text = await scrape(h)
    assert "no-such-id" not in text and "/no/such/path" not in text  # ids and paths never become labels


async def test_the_dashboard_uses_only_served_metrics(harness):
    text = await scrape(harness)
    served = set(re.findall(r"^# TYPE (\S+) ", text, re.M))
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]
    assert exprs
    used = {re.sub(r"_(bucket|count|sum|total)$", "", name) for expr in exprs for name in re.findall(r"chat_\w+", expr)}
    known = {re.sub(r"_total$", "", name) for name in served}
    assert used <= known, used - known
    assert {"chat_ws_sessions", "chat_agents_online", "chat_conversations_waiting",
            "chat_conversations_waiting_oldest_seconds", "chat_http_request_seconds"} <= used


async def test_every_served_metric_is_documented(harness):
    text = await scrape(harness)
    served = set(re.findall(r"^# TYPE (chat_\w+) ", text, re.M))
    documented = (DASHBOARD.parent / "metrics.md").read_text()
    missing = {name for name in served if f"`{name}`" not in documented and f"`{name}_total`" not in documented}
    assert not missing, missing
