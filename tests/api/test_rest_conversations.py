"""GET /api/v1/conversations on MariaDB and SQLite: keyset pagination under concurrent inserts,
every filter alone and combined, `q` with Chinese text and LIKE wildcards in it.
"""

from __future__ import annotations

import uuid

import orjson
import pytest

from chat import keys
from chat.api.conversations import decode_cursor, encode_cursor
from chat.app import create_app
from chat.auth import Identity, issue_token
from chat.store.models import CONVERSATION_COLUMNS
from states.clock import ms_from_iso, now_ms


def uid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


ADMIN = Identity("admin-lister", "admin")


@pytest.fixture
async def api(aiohttp_client, make_settings, database_url):
    app = create_app(make_settings(database_url=database_url))
    client = await aiohttp_client(app)
    headers = {"Authorization": "Bearer " + issue_token(app[keys.SETTINGS].jwt_secret_key, ADMIN.user_id, "admin")}

    async def get(path: str, **params) -> tuple[int, dict]:
        resp = await client.get(path, params=params, headers=headers)
        return resp.status, await resp.json()

    return app, client, get


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


async def test_pages_never_repeat_or_skip_while_conversations_are_created(api):
    app, client, get = api
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


async def test_a_listing_item_is_the_conversation_object(api):
    app, client, get = api
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
async def dataset(api):
    """Five conversations early in 2001, with known users, agent, team, labels and messages."""
    app, _, _ = api
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
async def test_filters(api, dataset, filters, expected):
    _, _, get = api
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


async def test_raw_query_strings(api, dataset):
    """A `+` left unencoded reads as a space (the offset survives); an empty cursor is the first page."""
    app, client, _ = api
    headers = {"Authorization": "Bearer " + issue_token(app[keys.SETTINGS].jwt_secret_key, ADMIN.user_id, "admin")}
    url = f"/api/v1/conversations?user_id={dataset['u1']}&since=2001-01-02T08:00:00+08:00&cursor="
    resp = await client.get(url, headers=headers)
    assert resp.status == 200
    ids = {c["id"] for c in (await resp.json())["items"]}
    assert ids == {dataset["ids"]["c2"], dataset["ids"]["c5"]}
    resp = await client.get("/api/v1/conversations?statе=human", headers=headers)  # a Cyrillic "е"
    assert resp.status == 400 and (await resp.json())["error"]["code"] == "invalid"
