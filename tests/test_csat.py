"""CSAT (PROTOCOL 3.4 csat.submit, 3.6 csat.requested): a request after every close, one rating per close,
the REST listing and the statistics' summary."""

from __future__ import annotations

from chat import keys
from chat.events import CsatSubmitted
from states.clock import now_ms


async def rest(h, path: str, sub: str = "admin-1", role: str = "admin", **params):
    resp = await h.client.get(path, params=params, headers={"Authorization": f"Bearer {h.token(sub, role)}"})
    return resp.status, await resp.json()


async def closed_conversation(h, user: str = "cust-1"):
    ws = await h.connect(user)
    cid = (await ws.ok("conversation.start", metadata={"name": "Li Lei"}))["conversation"]["id"]
    closed = (await ws.ok("conversation.close", conversation_id=cid))["conversation"]
    return ws, cid, closed


async def test_every_close_requests_a_rating_and_each_close_is_rated_once(harness):
    submitted: list[CsatSubmitted] = []
    harness.app[keys.EVENTS].subscribe(CsatSubmitted, submitted.append)
    agent = await harness.connect("agent-1", role="agent")
    ws, cid, closed = await closed_conversation(harness)
    await agent.ok("conversation.watch", conversation_id=cid)
    requested = await ws.event("csat.requested")
    assert requested["data"] == {"conversation_id": cid, "version": closed["version"]}

    rated = (await ws.ok("csat.submit", conversation_id=cid, score=4, comment="  good  "))["csat"]
    assert rated["conversation_id"] == cid and rated["score"] == 4 and rated["comment"] == "good"
    assert rated["version"] == closed["version"] and rated["created_at"].endswith("Z")
    again = await ws.request("csat.submit", conversation_id=cid, score=5)
    assert again["type"] == "error" and again["code"] == "conflict"
    assert [e.rating["score"] for e in submitted] == [4]  # the webhook's hook: once per stored rating

    await ws.ok("message.send", conversation_id=cid, client_msg_id="r1", content="one more thing")  # reopens
    await harness.drain_ai()
    second = (await ws.ok("conversation.close", conversation_id=cid))["conversation"]
    assert (await ws.event("csat.requested"))["data"] == {"conversation_id": cid, "version": second["version"]}
    assert (await ws.ok("csat.submit", conversation_id=cid, score=2))["csat"]["version"] == second["version"]

    status, page = await rest(harness, "/api/v1/csat", "agent-1", "agent")
    assert status == 200 and [(r["score"], r["version"]) for r in page["items"]] == [
        (2, second["version"]), (4, closed["version"])]
    assert page["items"][0]["user_id"] == "cust-1" and page["next_cursor"] is None
    await agent.ok("conversation.unwatch", conversation_id=cid)
    assert [f for f in agent.events if f["type"] == "csat.requested"] == []  # for the customer only


async def test_a_rating_needs_a_closed_conversation_of_ones_own_and_a_score(harness):
    ws = await harness.connect("cust-1")
    cid = (await ws.ok("conversation.start"))["conversation"]["id"]
    open_ = await ws.request("csat.submit", conversation_id=cid, score=5)
    assert open_["code"] == "conflict"
    await ws.ok("conversation.close", conversation_id=cid)
    other = await harness.connect("cust-2")
    assert (await other.request("csat.submit", conversation_id=cid, score=5))["code"] == "not_found"
    for bad in ({"score": 0}, {"score": 6}, {"score": "5"}, {"score": 5, "comment": "x" * 1001}):
        assert (await ws.request("csat.submit", conversation_id=cid, **bad))["code"] == "invalid"
    agent = await harness.connect("agent-1", role="agent")
    assert (await agent.request("csat.submit", conversation_id=cid, score=5))["code"] == "forbidden"
    status, page = await rest(harness, "/api/v1/csat")
    assert status == 200 and page["items"] == []  # nothing was stored


async def test_turned_off_there_is_no_request_and_no_rating(harness_factory):
    h = await harness_factory(csat_enabled=False)
    ws, cid, _ = await closed_conversation(h)
    assert (await ws.request("csat.submit", conversation_id=cid, score=5))["code"] == "forbidden"
    await ws.ok("conversation.resume", conversation_id=cid)  # everything published before has arrived
    assert [f for f in ws.events if f["type"] == "csat.requested"] == []


async def test_the_listing_pages_and_filters_by_time(harness):
    for user in ("cust-1", "cust-2", "cust-3"):
        ws, cid, _ = await closed_conversation(harness, user)
        await ws.ok("csat.submit", conversation_id=cid, score=3)
    status, first = await rest(harness, "/api/v1/csat", limit=2)
    assert status == 200 and len(first["items"]) == 2 and first["next_cursor"]
    status, rest_ = await rest(harness, "/api/v1/csat", limit=2, cursor=first["next_cursor"])
    assert len(rest_["items"]) == 1 and rest_["next_cursor"] is None
    assert {r["user_id"] for r in first["items"] + rest_["items"]} == {"cust-1", "cust-2", "cust-3"}
    status, none = await rest(harness, "/api/v1/csat", until="2000-01-01T00:00:00Z")
    assert none["items"] == []
    status, every = await rest(harness, "/api/v1/csat", since="0001-01-01", limit=3)
    assert status == 200 and len(every["items"]) == 3  # a window from before 1970
    status, body = await rest(harness, "/api/v1/csat", since="2030-01-01", until="2029-01-01")
    assert status == 400 and body["error"]["code"] == "invalid"
    status, body = await rest(harness, "/api/v1/csat", "cust-1", "customer")
    assert status == 403


async def test_the_summary_for_the_statistics(harness):
    start = now_ms()
    scores = [5, 4]
    for i, score in enumerate(scores):
        ws, cid, _ = await closed_conversation(harness, f"cust-{i}")
        await ws.ok("csat.submit", conversation_id=cid, score=score)
    await closed_conversation(harness, "cust-unrated")
    store = harness.app[keys.STORE]
    assert await store.csat.summary(start, None, None) == {"average": 4.5, "responses": 2, "response_rate": 0.667}
    assert await store.csat.summary(start, None, "no-such-team") == {
        "average": None, "responses": 0, "response_rate": None}
    assert await store.csat.summary(None, start, None) == {"average": None, "responses": 0, "response_rate": None}
