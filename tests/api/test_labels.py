"""Labels over REST on the real Redis and on MariaDB and SQLite."""

from __future__ import annotations

import uuid

from chat.auth import Identity
from tests.api.support import assert_error, uid


async def test_labels(api):
    admin = Identity(uid("admin"), "admin")
    title = uid("vip") + " 贵宾"
    status, label = await api.call("POST", "/api/v1/labels", as_=admin,
                                   json={"title": f"  {title} ", "description": "big spender", "color": "#FF0000"})
    assert status == 201
    assert label["title"] == title and label["description"] == "big spender" and label["color"] == "#FF0000"
    assert uuid.UUID(label["id"]).version == 7  # a row id (states/ids.py)
    status, body = await api.call("POST", "/api/v1/labels", as_=admin, json={"title": title})
    assert_error(status, body, 409, "conflict")
    status, body = await api.call("POST", "/api/v1/labels", as_=admin, json={"title": "x", "color": "red"})
    assert_error(status, body, 400, "invalid")
    status, page = await api.call("GET", "/api/v1/labels", as_=admin)
    assert status == 200 and page["next_cursor"] is None and label in page["items"]

    status, c = await api.call("POST", "/api/v1/sessions", as_=admin, json={})
    status, labelled = await api.call("PUT", f"/api/v1/conversations/{c['id']}/labels", as_=admin,
                                      json={"labels": [title]})
    assert status == 200 and labelled["labels"] == [title]
    status, body = await api.call("PUT", f"/api/v1/conversations/{c['id']}/labels", as_=admin,
                                  json={"labels": [title, uid("unknown")]})
    assert_error(status, body, 404, "not_found")
    status, body = await api.call("GET", f"/api/v1/conversations/{c['id']}", as_=admin)
    assert body["labels"] == [title]  # an unknown title changed nothing

    status, _ = await api.call("DELETE", f"/api/v1/labels/{label['id']}", as_=admin)
    assert status == 204
    status, body = await api.call("DELETE", f"/api/v1/labels/{label['id']}", as_=admin)
    assert_error(status, body, 404, "not_found")
    status, body = await api.call("GET", f"/api/v1/conversations/{c['id']}", as_=admin)
    assert body["labels"] == []
