"""The session's reply path: a result that cannot be encoded is an `internal` error for that command
only; the socket stays open and keeps working."""

import dataclasses

from chat import keys


def deep(levels: int) -> dict:
    value: dict = {}
    for _ in range(levels):
        value = {"x": value}
    return value


async def test_a_reply_that_cannot_be_encoded_is_internal_and_the_socket_goes_on(harness, context_records):
    registry = harness.app[keys.WS_REGISTRY]
    queue_list, unwatch = registry.commands["queue.list"], registry.commands["conversation.unwatch"]

    async def too_deep(ctx, data):
        return {"conversations": [deep(300)]}

    registry.commands["queue.list"] = dataclasses.replace(queue_list, handler=too_deep)
    registry.commands["conversation.unwatch"] = dataclasses.replace(unwatch, handler=too_deep)
    agent = await harness.connect("agent-1", role="agent")
    reply = await agent.request("queue.list")
    assert reply["type"] == "error" and reply["code"] == "internal"
    record = context_records.find("the reply to queue.list could not be encoded")
    assert record.exc_info and record.user_id == "agent-1" and record.request_id and record.conversation_id is None
    reply = await agent.request("conversation.unwatch", conversation_id="c-42")
    assert reply["type"] == "error" and reply["code"] == "internal"
    second = context_records.find("the reply to conversation.unwatch could not be encoded")
    assert second.conversation_id == "c-42" and second.request_id != record.request_id
    await agent.send({"type": "ping", "id": 9})
    assert await agent.recv() == {"id": 9, "type": "pong"}
    registry.commands["queue.list"] = queue_list
    assert (await agent.ok("queue.list")) == {"conversations": []}


async def test_a_response_that_cannot_be_encoded_is_a_500_for_that_request_only(harness, monkeypatch,
                                                                               context_records):
    from chat.api import common

    admin = {"Authorization": f"Bearer {harness.token('admin-1', role='admin')}"}
    created = await harness.client.post("/api/v1/sessions", json={"user_id": "cust-1"}, headers=admin)
    cid = (await created.json())["id"]
    monkeypatch.setattr(common.render, "conversation", lambda *args: deep(300))
    resp = await harness.client.get(f"/api/v1/sessions/{cid}", headers={**admin, "X-Request-ID": "req-42"})
    assert resp.status == 500 and resp.headers["X-Request-ID"] == "req-42"
    assert (await resp.json())["error"]["code"] == "internal"
    record = context_records.find("could not be encoded")
    assert record.exc_info and (record.request_id, record.user_id, record.conversation_id) == ("req-42", "admin-1", cid)
    monkeypatch.undo()
    resp = await harness.client.get(f"/api/v1/sessions/{cid}", headers=admin)
    assert resp.status == 200 and (await resp.json())["id"] == cid
    assert len(resp.headers["X-Request-ID"]) == 16  # a new one when the caller sent none
    odd = await harness.client.get("/health", headers={"X-Request-ID": "no spaces\tor tabs"})
    assert odd.headers["X-Request-ID"] != "no spaces\tor tabs"
