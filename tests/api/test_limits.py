"""PROTOCOL 3.7's ranges at the REST edge, on MariaDB and SQLite: a seq or a limit out of 0..2^31-1
(or over the endpoint's own maximum) is 400 `invalid`, never an overflow in the store."""

from __future__ import annotations

import pytest

from chat.auth import Identity
from tests.api.support import assert_error, uid

OUT_OF_RANGE = [
    {"after_seq": "-1"}, {"after_seq": str(2**31)}, {"after_seq": str(2**63)}, {"after_seq": "9" * 30},
    {"limit": "0"}, {"limit": "501"}, {"limit": str(2**31)}, {"limit": str(2**63)},
]


@pytest.mark.parametrize("params", OUT_OF_RANGE)
async def test_message_page_ranges(api, params):
    admin = Identity(uid("admin"), "admin")
    c = await api.ops.conversations.start(Identity(uid("cust"), "customer"))
    resp = await api.client.get(f"/api/v1/conversations/{c.id}/messages", params=params,
                                headers={"Authorization": f"Bearer {api.token(admin)}"})
    status, body = resp.status, await resp.json()
    assert_error(status, body, 400, "invalid")
    assert set(body["error"]["details"]) == set(params)


async def test_message_page_at_the_top_of_the_range(api):
    admin = Identity(uid("admin"), "admin")
    c = await api.ops.conversations.start(Identity(uid("cust"), "customer"))
    status, page = await api.call("GET", f"/api/v1/conversations/{c.id}/messages?after_seq={2**31 - 1}&limit=500",
                                  as_=admin)
    assert status == 200 and page == {"items": [], "next_cursor": None}


@pytest.mark.parametrize("limit", ["0", "201", str(2**63)])
async def test_conversation_list_limit_range(api, limit):
    admin = Identity(uid("admin"), "admin")
    status, body = await api.call("GET", f"/api/v1/conversations?limit={limit}", as_=admin)
    assert_error(status, body, 400, "invalid")
