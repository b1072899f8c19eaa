"""POST and GET /api/v1/sessions on the real Redis and on MariaDB and SQLite."""

from __future__ import annotations

import uuid

from chat.auth import Identity
from chat.limits import MAX_METADATA_BYTES, MAX_METADATA_DEPTH
from tests.api.support import assert_error, uid
from tests.test_limits import nested


async def test_sessions(api):
    alice, bob = Identity(uid("alice"), "customer"), Identity(uid("bob"), "customer")
    admin = Identity(uid("admin"), "admin")
    status, c = await api.call("POST", "/api/v1/sessions", as_=alice, json={"metadata": {"channel": "web", "n": 1}})
    assert status == 201
    assert c["user_id"] == alice.user_id and c["state"] == "ai" and c["agent_type"] == "ai"
    assert c["metadata"] == {"channel": "web", "n": 1} and c["version"] == 0 and c["labels"] == []
    assert c["created_at"].endswith("Z")
    status, again = await api.call("GET", f"/api/v1/sessions/{c['id']}", as_=alice)
    assert status == 200 and again == c
    status, body = await api.call("GET", f"/api/v1/sessions/{c['id']}", as_=bob)
    assert_error(status, body, 404, "not_found")
    status, body = await api.call("GET", f"/api/v1/sessions/{uuid.uuid4()}", as_=alice)
    assert_error(status, body, 404, "not_found")
    # a customer may name only itself; an admin anyone
    status, body = await api.call("POST", "/api/v1/sessions", as_=alice, json={"user_id": bob.user_id})
    assert_error(status, body, 403, "forbidden")
    status, own = await api.call("POST", "/api/v1/sessions", as_=alice, json={"user_id": alice.user_id})
    assert status == 201 and own["user_id"] == alice.user_id
    status, for_bob = await api.call("POST", "/api/v1/sessions", as_=admin, json={"user_id": bob.user_id})
    assert status == 201 and for_bob["user_id"] == bob.user_id and for_bob["metadata"] == {}
    status, body = await api.call("GET", f"/api/v1/sessions/{for_bob['id']}", as_=bob)
    assert status == 200 and body["id"] == for_bob["id"]
    for nobody in ("a\u0001b", "", "x" * 65):  # no token's sub could be this: a conversation no customer could own
        status, body = await api.call("POST", "/api/v1/sessions", as_=admin, json={"user_id": nobody})
        assert_error(status, body, 400, "invalid")
    status, body = await api.call("POST", "/api/v1/sessions", as_=alice, json={"team_id": uid("no-team")})
    assert_error(status, body, 404, "not_found")
    status, body = await api.call("POST", "/api/v1/sessions", as_=alice, json={"metadata": "not an object"})
    assert_error(status, body, 400, "invalid")
    status, body = await api.call("POST", "/api/v1/sessions", as_=alice, json={"metadata": {"x": "y" * 20000}})
    assert_error(status, body, 400, "invalid")


async def test_session_metadata_limits_and_nothing_stored_when_refused(api):
    carol = Identity(uid("carol"), "customer")
    status, ok = await api.call("POST", "/api/v1/sessions", as_=carol, json={"metadata": nested(MAX_METADATA_DEPTH)})
    assert status == 201 and ok["metadata"] == nested(MAX_METADATA_DEPTH)
    for depth in (MAX_METADATA_DEPTH + 1, 251, 252, 253, 254):
        for arrays in (False, True):
            status, body = await api.call("POST", "/api/v1/sessions", as_=carol,
                                          json={"metadata": nested(depth, arrays=arrays)})
            assert_error(status, body, 400, "invalid")
            assert "metadata" in body["error"]["details"]
    exact = {"x": "a" * (MAX_METADATA_BYTES - len('{"x":""}'))}
    status, _ = await api.call("POST", "/api/v1/sessions", as_=carol, json={"metadata": exact})
    assert status == 201
    status, body = await api.call("POST", "/api/v1/sessions", as_=carol, json={"metadata": {"x": exact["x"] + "a"}})
    assert_error(status, body, 400, "invalid")
    row = await api.store.db.fetchone("SELECT COUNT(*) FROM conversations WHERE user_id = %s", (carol.user_id,))
    assert row is not None and int(row[0]) == 2  # the two accepted, no orphan of a refused one
