"""Canned responses: REST CRUD (agents and admins, PROTOCOL 6; customers none) and the agents' `canned.list`
with placeholders."""

from __future__ import annotations

from typing import Any

from chat.conversations.canned import fill


async def call(h, method: str, path: str, role: str = "admin", json: Any = None) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {h.token(f'{role}-1', role)}"}
    resp = await h.client.request(method, path, json=json, headers=headers)
    return resp.status, (await resp.json() if resp.status != 204 else None)


async def test_crud_with_unique_short_codes(harness):
    status, made = await call(harness, "POST", "/api/v1/canned_responses",
                              json={"short_code": "thanks", "content": "Thank you {{customer.name}}!"})
    assert status == 201 and made["short_code"] == "thanks" and made["created_at"] == made["updated_at"]
    path = "/api/v1/canned_responses"
    status, body = await call(harness, "POST", path, json={"short_code": "thanks", "content": "x"})
    assert status == 409 and body["error"]["code"] == "conflict"
    for bad in ({"short_code": "two words", "content": "x"}, {"short_code": "ok", "content": ""},
                {"short_code": "ok", "content": "x" * 4001}, {"short_code": "", "content": "x"}, {"content": "x"}):
        status, body = await call(harness, "POST", "/api/v1/canned_responses", json=bad)
        assert status == 400 and body["error"]["code"] == "invalid", bad
    status, body = await call(harness, "POST", path, "customer", json={"short_code": "a", "content": "b"})
    assert status == 403
    status, mine = await call(harness, "POST", path, "agent", json={"short_code": "a", "content": "b"})
    assert status == 201  # agents write them too (PROTOCOL 6: "Agent and admin")
    status, other = await call(harness, "POST", path, json={"short_code": "bye", "content": "Bye"})
    assert status == 201

    status, page = await call(harness, "GET", "/api/v1/canned_responses", "agent")
    assert status == 200 and [c["short_code"] for c in page["items"]] == ["a", "bye", "thanks"]
    status, changed = await call(harness, "PATCH", f"{path}/{mine['id']}", "agent", json={"content": "c"})
    assert status == 200 and changed["content"] == "c"
    status, _ = await call(harness, "DELETE", f"{path}/{mine['id']}", "agent")
    assert status == 204
    status, _ = await call(harness, "GET", "/api/v1/canned_responses", "customer")
    assert status == 403
    assert page["next_cursor"] is None

    path = f"{path}/{made['id']}"
    status, changed = await call(harness, "PATCH", path, json={"content": "Merci {{customer.name}}"})
    assert status == 200 and changed["content"] == "Merci {{customer.name}}" and changed["short_code"] == "thanks"
    status, body = await call(harness, "PATCH", path, json={"short_code": "bye"})
    assert status == 409
    status, body = await call(harness, "PATCH", path, json={})
    assert status == 400
    status, body = await call(harness, "PATCH", path, "customer", json={"content": "x"})
    assert status == 403
    status, body = await call(harness, "PATCH", "/api/v1/canned_responses/nope", json={"content": "x"})
    assert status == 404
    status, _ = await call(harness, "DELETE", path)
    assert status == 204
    status, body = await call(harness, "DELETE", path)
    assert status == 404 and body["error"]["code"] == "not_found"
    status, page = await call(harness, "GET", "/api/v1/canned_responses")
    assert [c["short_code"] for c in page["items"]] == ["bye"]


async def test_canned_list_fills_the_placeholders_for_a_conversation(harness):
    for code, content in (("hello", "Hi {{customer.name}}, {{agent.name}} here. {{order.id}}"),
                          ("Help", "How can I help, {{ customer.name }}?"), ("bye", "Bye!")):
        assert (await call(harness, "POST", "/api/v1/canned_responses",
                           json={"short_code": code, "content": content}))[0] == 201
    cust = await harness.connect("cust-1")
    cid = (await cust.ok("conversation.start", metadata={"name": "韩梅梅"}))["conversation"]["id"]
    agent = await harness.connect("agent-1", role="agent", name="Ann")
    items = (await agent.ok("canned.list", prefix="h", conversation_id=cid))["items"]
    assert [(i["short_code"], i["text"]) for i in items] == [
        ("Help", "How can I help, 韩梅梅?"), ("hello", "Hi 韩梅梅, Ann here. {{order.id}}")]
    assert items[1]["content"] == "Hi {{customer.name}}, {{agent.name}} here. {{order.id}}"
    everything = (await agent.ok("canned.list"))["items"]
    assert [i["short_code"] for i in everything] == ["Help", "bye", "hello"]
    assert everything[2]["text"] == "Hi , Ann here. {{order.id}}"  # no conversation: no customer name
    assert (await agent.request("canned.list", conversation_id="nope"))["code"] == "not_found"
    assert (await cust.request("canned.list"))["code"] == "forbidden"


def test_fill_leaves_unknown_placeholders():
    values = {"customer.name": "Li", "agent.name": "Ann"}
    assert fill("{{customer.name}}/{{agent.name}}/{{x.y}}/{{customer.name", values) == "Li/Ann/{{x.y}}/{{customer.name"
