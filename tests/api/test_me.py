"""A customer's own conversations: WebSocket conversation.list and GET /api/v1/me/conversations
(the same operation and paging), on the real app (real Redis; SQLite and MariaDB)."""

from __future__ import annotations

import pytest

from chat import keys
from chat.cursors import decode_cursor, encode_cursor
from states.clock import now_ms
from tests.api.support import assert_error, uid
from tests.api.test_conversations import insert_conversation


@pytest.fixture(params=["sqlite", "mysql"])
async def h(request, harness_factory):
    url = request.getfixturevalue("mysql_database_url") if request.param == "mysql" else None
    return await harness_factory(database_url=url)


async def own_rows(h, owner: str, count: int, *, states=("ai",)) -> list[str]:
    """`count` conversations of `owner`, newest last; two share each millisecond (the id breaks the tie)."""
    db, base = h.app[keys.STORE].db, now_ms() - 3_600_000
    return [await insert_conversation(db, user_id=owner, created_ms=base + (i // 2) * 1000,
                                      state=states[i % len(states)]) for i in range(count)]


def newest_first(h_ids: list[str], base_order: list[str]) -> list[str]:
    return sorted(h_ids, key=lambda cid: (base_order.index(cid) // 2, cid), reverse=True)


async def get(h, sub: str, role: str = "customer", **params) -> tuple[int, dict]:
    resp = await h.client.get("/api/v1/me/conversations", params=params,
                              headers={"Authorization": f"Bearer {h.token(sub, role)}"})
    return resp.status, await resp.json()


async def test_pages_over_the_socket_and_over_rest_agree(h):
    owner, other = uid("me"), uid("other")
    mine = await own_rows(h, owner, 7)
    await own_rows(h, other, 3)
    expected = newest_first(mine, mine)
    ws = await h.connect(owner)
    seen_ws, cursor = [], None
    while True:
        data = await ws.ok("conversation.list", limit=3, **({"cursor": cursor} if cursor else {}))
        assert len(data["conversations"]) <= 3
        seen_ws += [c["id"] for c in data["conversations"]]
        assert all(c["user_id"] == owner for c in data["conversations"])
        cursor = data["next_cursor"]
        if cursor is None:
            break
    assert seen_ws == expected
    seen_rest, cursor = [], None
    while True:
        status, page = await get(h, owner, limit=3, **({"cursor": cursor} if cursor else {}))
        assert status == 200, page
        seen_rest += [c["id"] for c in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen_rest == expected
    first = (await ws.ok("conversation.list"))
    assert [c["id"] for c in first["conversations"]] == expected and first["next_cursor"] is None  # default 20


async def test_state_filter(h):
    owner = uid("me")
    mine = await own_rows(h, owner, 6, states=("ai", "closed", "handoff"))
    ws = await h.connect(owner)
    closed = (await ws.ok("conversation.list", state="closed"))["conversations"]
    assert {c["id"] for c in closed} == set(mine[1::3]) and {c["state"] for c in closed} == {"closed"}
    status, page = await get(h, owner, state="handoff")
    assert status == 200 and {c["id"] for c in page["items"]} == set(mine[2::3])


async def test_a_cursor_never_reaches_anyone_elses_conversations(h):
    owner, other = uid("me"), uid("other")
    await own_rows(h, owner, 2)
    theirs = await own_rows(h, other, 4)
    # a well-formed cursor pointing into another customer's list: still only the caller's own
    forged = encode_cursor((now_ms() + 1000, theirs[-1]))
    ws = await h.connect(owner)
    data = await ws.ok("conversation.list", cursor=forged)
    assert data["conversations"] and all(c["user_id"] == owner for c in data["conversations"])
    status, page = await get(h, owner, cursor=forged)
    assert status == 200 and all(c["user_id"] == owner for c in page["items"])
    decode_cursor(forged)  # it was a valid position: the owner filter, not the cursor, keeps it safe


async def test_bad_input_is_invalid_and_staff_are_refused(h):
    owner = uid("me")
    ws = await h.connect(owner)
    for fields in ({"cursor": "!!!"}, {"cursor": "bm90IGpzb24"}, {"cursor": encode_cursor((1, "x"))[:-2]},
                   {"limit": 0}, {"limit": 101}, {"limit": "5"}, {"state": "open"}, {"extra": 1}):
        reply = await ws.request("conversation.list", **fields)
        assert reply["type"] == "error" and reply["code"] == "invalid", (fields, reply)
    for params in ({"cursor": "!!!"}, {"cursor": "bm90IGpzb24"}, {"limit": "101"}, {"limit": "x"},
                   {"state": "open"}, {"user_id": "someone"}):
        status, body = await get(h, owner, **params)
        assert_error(status, body, 400, "invalid")
    agent = await h.connect("agent-me", role="agent")
    reply = await agent.request("conversation.list")
    assert reply["code"] == "forbidden"
    status, body = await get(h, "agent-me", "agent")
    assert_error(status, body, 403, "forbidden")
