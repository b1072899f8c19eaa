"""Conversations over REST on MariaDB and SQLite: the listing (keyset pagination under concurrent
inserts, every filter alone and combined, `q` with Chinese text and LIKE wildcards in it), messages
and events, and the actions (which must reach the WebSocket exactly as the commands do, and race
exactly as they do).
"""

from __future__ import annotations

import asyncio
import uuid

import aiohttp
import orjson
import pytest

from chat import keys
from chat.auth import Identity, issue_token
from chat.cursors import decode_cursor, encode_cursor
from chat.errors import to_chat_error
from chat.store.models import CONVERSATION_COLUMNS
from states.clock import ms_from_iso, now_ms
from tests.api.support import LISTER, assert_error, uid

ADMIN = LISTER


async def insert_conversation(db, *, user_id: str, created_ms: int, state: str = "ai", agent_id: str | None = None,
                              team_id: str | None = None, conversation_id: str | None = None,
                              metadata: dict | None = None) -> str:
    """A mirror row written directly, with a known created_ms."""
    conversation_id = conversation_id or str(uuid.uuid4())
    agent_type = "ai" if state == "ai" else "human"
    await db.execute(
        f"INSERT INTO conversations ({CONVERSATION_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
        (conversation_id, user_id, state, agent_type, agent_id, team_id, 0, 0,
         orjson.dumps(metadata or {}).decode(), None, created_ms, created_ms),
    )
    return conversation_id


async def walk(get, **params) -> list[dict]:
    """Every item of a listing, following next_cursor."""
    items, cursor = [], None
    while True:
        status, page = await get("/api/v1/conversations", **params, **({"cursor": cursor} if cursor else {}))
        assert status == 200, page
        items += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            return items


def test_cursor_round_trip():
    position = (1717171717171, "0f1e2d3c-aaaa-4bbb-8ccc-123456789abc")
    cursor = encode_cursor(position)
    assert "=" not in cursor and "/" not in cursor and "+" not in cursor
    assert decode_cursor(cursor) == position
    for bad in ("", "!!!", "bm90IGpzb24", encode_cursor((1, "x"))[:-2], "WzEsMl0"):
        with pytest.raises(ValueError):
            decode_cursor(bad)


async def test_pages_never_repeat_or_skip_while_conversations_are_created(lister):
    app, client, get = lister
    db = app[keys.STORE].db
    owner = uid("pager")
    base = now_ms() - 3_600_000
    existing = []
    for i in range(23):
        # groups of three share a millisecond: the id breaks the tie
        existing.append(await insert_conversation(db, user_id=owner, created_ms=base + (i // 3) * 1000))

    seen: list[dict] = []
    cursor = None
    pages = 0
    while True:
        params = {"user_id": owner, "limit": 4, **({"cursor": cursor} if cursor else {})}
        status, page = await get("/api/v1/conversations", **params)
        assert status == 200, page
        assert len(page["items"]) <= 4
        seen += page["items"]
        cursor = page["next_cursor"]
        pages += 1
        if cursor is None:
            break
        # between two fetches: a new conversation through the API (the clock), and one with the
        # very millisecond of the cursor (a tie the keyset must not trip on)
        resp = await client.post("/api/v1/sessions", json={"user_id": owner},
                                 headers={"Authorization": "Bearer " + issue_token(
                                     app[keys.SETTINGS].jwt_secret_key, ADMIN.user_id, "admin")})
        assert resp.status == 201
        created_ms, _ = decode_cursor(cursor)
        await insert_conversation(db, user_id=owner, created_ms=created_ms)

    ids = [c["id"] for c in seen]
    assert len(ids) == len(set(ids)), "a conversation appeared twice"
    assert set(existing) <= set(ids), "a conversation that existed at the start was skipped"
    keys_in_order = [(ms_from_iso(c["created_at"]), c["id"]) for c in seen]
    assert keys_in_order == sorted(keys_in_order, reverse=True), "not newest first"
    assert pages >= 6


async def test_a_listing_item_is_the_conversation_object(lister):
    app, client, get = lister
    ops = app[keys.OPERATIONS]
    customer = Identity(uid("cust"), "customer")
    c = await ops.conversations.start(customer, metadata={"channel": "app", "lang": "zh"})
    store = app[keys.STORE]
    await store.messages.append(c.id, sender_type="customer", sender_id=customer.user_id, content="hi")
    await store.db.execute("INSERT INTO labels (id, title, created_ms) VALUES (%s, %s, %s)",
                           (str(uuid.uuid4()), "zz-" + c.id, 1))
    await store.db.execute("INSERT INTO labels (id, title, created_ms) VALUES (%s, %s, %s)",
                           (str(uuid.uuid4()), "aa-" + c.id, 1))
    await ops.labels.set(ADMIN, c.id, ["zz-" + c.id, "aa-" + c.id])
    await ops.staff.remember(ADMIN)
    await ops.conversations.request_handoff(ADMIN, c.id)
    await ops.assignment.assign(ADMIN, c.id, ADMIN.user_id)

    status, page = await get("/api/v1/conversations", user_id=customer.user_id)
    assert status == 200 and page["next_cursor"] is None
    [item] = page["items"]
    status, single = await get(f"/api/v1/conversations/{c.id}")
    assert {k: v for k, v in item.items() if k != "updated_at"} == {
        k: v for k, v in single.items() if k != "updated_at"}
    assert item["labels"] == ["aa-" + c.id, "zz-" + c.id]
    assert item["metadata"] == {"channel": "app", "lang": "zh"}
    assert item["state"] == "human" and item["agent_type"] == "human" and item["agent_id"] == ADMIN.user_id
    assert item["version"] == 2 and item["last_seq"] == 3  # hi, then the handoff and assigned system messages
    assert item["created_at"] == c.created_at


@pytest.fixture
async def dataset(lister):
    """Five conversations early in 2001, with known users, agent, team, labels and messages."""
    app, _, _ = lister
    db = app[keys.STORE].db
    store = app[keys.STORE]
    u1, u2, agent, team = uid("u1"), uid("u2"), uid("agent"), uid("team")
    label = uid("refund")
    day = 86_400_000
    t0 = ms_from_iso("2001-01-01T00:00:00Z")
    rows = {
        "c1": dict(user_id=u1, state="ai"),
        "c2": dict(user_id=u1, state="human", agent_id=agent, team_id=team),
        "c3": dict(user_id=u2, state="handoff", team_id=team),
        "c4": dict(user_id=u2, state="closed", agent_id=agent),
        "c5": dict(user_id=u1, state="human", agent_id=agent, team_id=team),
    }
    ids = {}
    for i, (name, row) in enumerate(rows.items()):
        ids[name] = await insert_conversation(db, created_ms=t0 + i * day, **row)
    texts = {
        "c1": ["Hello World", "1000 apples please"],
        "c2": ["我想退款，谢谢", "订单号 12345"],
        "c3": ["I am 100% sure_thing"],
        "c4": ["退款 done", "nothing else"],
        "c5": [r"see C:\temp\log.txt", "wow! great"],
    }
    for name, contents in texts.items():
        for content in contents:
            await store.messages.append(ids[name], sender_type="customer", sender_id="x", content=content)
    label_id = str(uuid.uuid4())
    await db.execute("INSERT INTO labels (id, title, created_ms) VALUES (%s, %s, %s)", (label_id, label, t0))
    for name in ("c2", "c4"):
        await db.execute("INSERT INTO conversation_labels (conversation_id, label_id) VALUES (%s, %s)",
                         (ids[name], label_id))
    return {"ids": ids, "u1": u1, "u2": u2, "agent": agent, "team": team, "label": label}


WINDOW = {"since": "2001-01-01T00:00:00Z", "until": "2001-01-06T00:00:00Z"}

FILTER_CASES = [
    # (filters, expected among the five) -- each filter alone, then combined
    ({"state": "human"}, {"c2", "c5"}),
    ({"agent_id": "{agent}"}, {"c2", "c4", "c5"}),
    ({"team_id": "{team}"}, {"c2", "c3", "c5"}),
    ({"label": "{label}"}, {"c2", "c4"}),
    ({"user_id": "{u1}"}, {"c1", "c2", "c5"}),
    ({"since": "2001-01-04T00:00:00Z"}, {"c4", "c5"}),
    ({"until": "2001-01-02T00:00:00Z"}, {"c1"}),
    ({"since": "2001-01-02T00:00:00+00:00", "until": "2001-01-04T00:00:00Z"}, {"c2", "c3"}),
    ({"since": "2001-01-02T08:00:00+08:00", "until": "2001-01-03"}, {"c2"}),
    ({"q": "退款"}, {"c2", "c4"}),
    ({"q": "HELLO world"}, {"c1"}),
    ({"q": "100%"}, {"c3"}),
    ({"q": "_thing"}, {"c3"}),
    ({"q": "\\temp"}, {"c5"}),
    ({"q": "wow!"}, {"c5"}),
    ({"q": "no such text anywhere"}, set()),
    ({"user_id": "{u1}", "state": "human"}, {"c2", "c5"}),
    ({"user_id": "{u1}", "state": "human", "agent_id": "{agent}", "team_id": "{team}"}, {"c2", "c5"}),
    ({"user_id": "{u1}", "label": "{label}"}, {"c2"}),
    ({"agent_id": "{agent}", "q": "退款"}, {"c2", "c4"}),
    ({"agent_id": "{agent}", "q": "退款", "state": "closed"}, {"c4"}),
    ({"team_id": "{team}", "since": "2001-01-03T00:00:00Z", "until": "2001-01-05T00:00:00Z"}, {"c3"}),
    ({"label": "{label}", "state": "human", "q": "订单", **WINDOW}, {"c2"}),
    ({"user_id": "{u2}", "state": "ai"}, set()),
]


@pytest.mark.parametrize("filters, expected", FILTER_CASES, ids=[str(f) for f, _ in FILTER_CASES])
async def test_filters(lister, dataset, filters, expected):
    _, _, get = lister
    params = {k: v.format(**dataset) for k, v in filters.items()}
    items = await walk(get, limit=200, **params)
    ours = {name for name, cid in dataset["ids"].items() if cid in {c["id"] for c in items}}
    assert ours == expected
    # everything else returned (other tests' conversations) matches the filters too
    for c in items:
        for key in ("state", "agent_id", "team_id", "user_id"):
            if key in params:
                assert c[key] == params[key]
        if "label" in params:
            assert params["label"] in c["labels"]
        if "since" in params:
            assert ms_from_iso(c["created_at"]) >= ms_from_iso(params["since"])
        if "until" in params:
            assert ms_from_iso(c["created_at"]) < ms_from_iso(params["until"])


async def test_window_bounds_between_two_milliseconds_and_before_1970(lister):
    """`since <= created_at < until` for bounds finer than the stored milliseconds; a `since` before 1970
    is a window that starts before any data."""
    app, _, get = lister
    user = uid("ms")
    created_ms = ms_from_iso("2001-02-03T12:21:44.098Z")
    cid = await insert_conversation(app[keys.STORE].db, user_id=user, created_ms=created_ms)

    async def found(**window: str) -> bool:
        status, page = await get("/api/v1/conversations", user_id=user, **window)
        assert status == 200, page
        return [c["id"] for c in page["items"]] == [cid]

    assert await found(until="2001-02-03T12:21:44.0981Z")  # .098 < .0981
    assert await found(until="2001-02-03T12:21:44.098000001Z")
    assert not await found(until="2001-02-03T12:21:44.098Z")
    assert await found(since="2001-02-03T12:21:44.0979Z")
    assert not await found(since="2001-02-03T12:21:44.0981Z")  # .0981 > .098
    assert await found(since="2001-02-03T12:21:44.0979Z", until="2001-02-03T12:21:44.0981Z")
    for since in ("1969-12-31", "1900-01-01", "0001-01-01", "1969-12-31T23:59:59.999Z"):
        assert await found(since=since)
    assert not await found(since="1900-01-01", until="1969-12-31")
    status, body = await get("/api/v1/conversations", since="0001-01-01T00:00:00+01:00")
    assert status == 400 and "0001-01-01T00:00:00.000Z" in body["error"]["details"]["since"][0], body


async def test_raw_query_strings(lister, dataset):
    """A `+` left unencoded reads as a space (the offset survives); an empty cursor is the first page."""
    app, client, _ = lister
    headers = {"Authorization": "Bearer " + issue_token(app[keys.SETTINGS].jwt_secret_key, ADMIN.user_id, "admin")}
    url = f"/api/v1/conversations?user_id={dataset['u1']}&since=2001-01-02T08:00:00+08:00&cursor="
    resp = await client.get(url, headers=headers)
    assert resp.status == 200
    ids = {c["id"] for c in (await resp.json())["items"]}
    assert ids == {dataset["ids"]["c2"], dataset["ids"]["c5"]}
    resp = await client.get("/api/v1/conversations?statе=human", headers=headers)  # a Cyrillic "е"
    assert resp.status == 400 and (await resp.json())["error"]["code"] == "invalid"


# --- messages and events -------------------------------------------------------------------------


async def test_messages_and_events(api):
    admin, agent = Identity(uid("admin"), "admin"), Identity(uid("agent"), "agent")
    customer = Identity(uid("cust"), "customer")
    store = api.store
    await api.ops.staff.remember(agent)
    c = await api.ops.conversations.start(customer)
    for text in ("hello", "你好，我的订单在哪里？", "still there?"):
        await store.messages.append(c.id, sender_type="customer", sender_id=customer.user_id, content=text)
    await api.ops.messages.send(agent, c.id, content="VIP, be nice", client_msg_id="n1", private=True)

    status, page = await api.call("GET", f"/api/v1/conversations/{c.id}/messages", as_=agent)
    assert status == 200 and page["next_cursor"] is None
    assert [m["seq"] for m in page["items"]] == [1, 2, 3, 4]
    assert [m["private"] for m in page["items"]] == [False, False, False, True]
    assert page["items"][1]["content"] == "你好，我的订单在哪里？"
    assert set(page["items"][3]) >= {"id", "conversation_id", "seq", "sender_type", "sender_id", "content",
                                     "private", "client_msg_id", "created_at"}
    status, page = await api.call("GET", f"/api/v1/conversations/{c.id}/messages?after_seq=1&limit=2", as_=admin)
    assert [m["seq"] for m in page["items"]] == [2, 3] and page["next_cursor"] == "3"
    status, page = await api.call("GET", f"/api/v1/conversations/{c.id}/messages?after_seq=3&limit=2", as_=admin)
    assert [m["seq"] for m in page["items"]] == [4] and page["next_cursor"] is None
    status, body = await api.call("GET", f"/api/v1/conversations/{uuid.uuid4()}/messages", as_=admin)
    assert_error(status, body, 404, "not_found")

    await api.call("POST", f"/api/v1/conversations/{c.id}/handoff", as_=admin, json={"reason": "angry"})
    await api.call("POST", f"/api/v1/conversations/{c.id}/assign", as_=admin, json={"agent_id": agent.user_id})
    await api.call("POST", f"/api/v1/conversations/{c.id}/release", as_=agent)
    status, events = await api.call("GET", f"/api/v1/conversations/{c.id}/events", as_=agent)
    assert status == 200 and events["next_cursor"] is None
    assert [(e["trigger"], e["from_state"], e["to_state"]) for e in events["items"]] == [
        ("request_handoff", "ai", "handoff"), ("assign", "handoff", "human"), ("release", "human", "ai")]
    first = events["items"][0]
    assert first["actor_type"] == "admin" and first["actor_id"] == admin.user_id and "angry" in first["reason"]
    assert first["conversation_id"] == c.id and first["created_at"].endswith("Z")


# --- actions: the same path as the WebSocket ---------------------------------------------------


async def test_actions_follow_the_state_machine_and_the_roles(api):
    admin = Identity(uid("admin"), "admin")
    ann, bob = Identity(uid("ann"), "agent"), Identity(uid("bob"), "agent")
    for identity in (admin, ann, bob):
        await api.ops.staff.remember(identity)
    c = await api.ops.conversations.start(Identity(uid("cust"), "customer"))
    url = f"/api/v1/conversations/{c.id}"

    status, body = await api.call("POST", f"{url}/assign", as_=admin, json={"agent_id": uid("ghost")})
    assert_error(status, body, 404, "not_found")
    status, body = await api.call("POST", f"{url}/assign", as_=admin, json={})
    assert_error(status, body, 400, "invalid")
    status, claimed = await api.call("POST", f"{url}/assign", as_=ann, json={"agent_id": ann.user_id})
    assert status == 200 and claimed["state"] == "human" and claimed["agent_id"] == ann.user_id
    assert claimed["agent_type"] == "human" and claimed["version"] == 1
    # an agent's own assign is a claim: not from `human`
    status, body = await api.call("POST", f"{url}/assign", as_=bob, json={"agent_id": bob.user_id})
    assert_error(status, body, 409, "conflict")
    # bob may neither release nor close ann's conversation, nor transfer it
    for action, payload in (("release", None), ("close", None), ("assign", {"agent_id": bob.user_id})):
        status, body = await api.call("POST", f"{url}/{action}", as_=bob, json=payload)
        assert status in (403, 409), body
    status, body = await api.call("POST", f"{url}/release", as_=bob)
    assert_error(status, body, 403, "forbidden")
    # ann transfers it to bob (the WebSocket conversation.transfer), an admin takes it over
    status, moved = await api.call("POST", f"{url}/assign", as_=ann, json={"agent_id": bob.user_id})
    assert status == 200 and moved["agent_id"] == bob.user_id and moved["state"] == "human"
    status, taken = await api.call("POST", f"{url}/assign", as_=admin, json={"agent_id": admin.user_id})
    assert status == 200 and taken["agent_id"] == admin.user_id
    status, body = await api.call("POST", f"{url}/handoff", as_=admin)
    assert_error(status, body, 409, "conflict")
    status, released = await api.call("POST", f"{url}/release", as_=admin, json={})
    assert status == 200 and released["state"] == "ai" and released["agent_id"] is None
    status, handed = await api.call("POST", f"{url}/handoff", as_=ann, json={"reason": None})
    assert status == 200 and handed["state"] == "handoff"
    status, closed = await api.call("POST", f"{url}/close", as_=bob)
    assert status == 200 and closed["state"] == "closed" and closed["version"] == 6


async def _frame(ws, type_: str, timeout_s: float = 5.0) -> dict:
    """The next frame of this type (system messages and the like arrive in between)."""
    while True:
        frame = await ws.receive_json(timeout=timeout_s)
        if frame.get("type") == type_:
            return frame


async def test_rest_actions_push_the_same_websocket_events(api):
    customer, admin = Identity(uid("cust"), "customer"), Identity(uid("admin"), "admin")
    ws = await api.client.ws_connect(f"/ws?token={api.token(customer)}")
    try:
        await ws.send_json({"type": "conversation.start", "id": 1})
        reply = await _frame(ws, "result")
        assert reply["id"] == 1
        conversation = reply["data"]["conversation"]

        status, _ = await api.call("POST", f"/api/v1/conversations/{conversation['id']}/handoff", as_=admin,
                                   json={"reason": "vip"})
        assert status == 200
        updated = (await _frame(ws, "conversation.updated"))["data"]
        assert updated["conversation"]["id"] == conversation["id"]
        assert updated["conversation"]["state"] == "handoff" and updated["previous_state"] == "ai"
        assert "vip" in updated["reason"]  # the service prefixes its own reason code

        status, _ = await api.call("POST", f"/api/v1/conversations/{conversation['id']}/close", as_=admin)
        assert status == 200
        updated = (await _frame(ws, "conversation.updated"))["data"]
        assert updated["conversation"]["state"] == "closed" and updated["previous_state"] == "handoff"
    finally:
        await ws.close()


async def test_racing_assigns_have_one_winner(api):
    ann, bob = Identity(uid("ann"), "agent"), Identity(uid("bob"), "agent")
    for identity in (ann, bob):
        await api.ops.staff.remember(identity)
    has_claim = "conversation.claim" in api.app[keys.WS_REGISTRY].commands
    for round_ in range(5):
        c = await api.ops.conversations.start(Identity(uid("cust"), "customer"))
        rest = api.call("POST", f"/api/v1/conversations/{c.id}/assign", as_=ann, json={"agent_id": ann.user_id})
        if has_claim:  # the WebSocket command against the REST action
            ws = await api.client.ws_connect(f"/ws?token={api.token(bob)}")
            try:
                async def claim(ws: aiohttp.ClientWebSocketResponse = ws, cid: str = c.id) -> int:
                    await ws.send_json({"type": "conversation.claim", "id": 7, "conversation_id": cid})
                    while (frame := await ws.receive_json(timeout=5)).get("id") != 7:
                        pass
                    return 200 if frame["type"] == "result" else {"conflict": 409}.get(frame.get("code"), 500)

                (status_a, _), status_b = await asyncio.gather(rest, claim())
            finally:
                await ws.close()
        else:  # two REST assigns of different agents
            other = api.call("POST", f"/api/v1/conversations/{c.id}/assign", as_=bob, json={"agent_id": bob.user_id})
            (status_a, _), (status_b, _) = await asyncio.gather(rest, other)
        assert sorted([status_a, status_b]) == [200, 409], (round_, status_a, status_b)
        winner = ann if status_a == 200 else bob
        assert (await api.ops.conversations.get_for(winner, c.id)).agent_id == winner.user_id


async def test_rest_assign_races_a_service_claim(api):
    ann, bob = Identity(uid("ann"), "agent"), Identity(uid("bob"), "agent")
    for identity in (ann, bob):
        await api.ops.staff.remember(identity)
    for _ in range(5):
        c = await api.ops.conversations.start(Identity(uid("cust"), "customer"))
        rest = api.call("POST", f"/api/v1/conversations/{c.id}/assign", as_=ann, json={"agent_id": ann.user_id})
        (status, _), claim = await asyncio.gather(rest, api.ops.assignment.claim(bob, c.id), return_exceptions=True)
        claim_ok = not isinstance(claim, BaseException)
        assert (status == 200) != claim_ok, (status, claim)
        if not claim_ok:
            assert to_chat_error(claim).status == 409
        else:
            assert status == 409
