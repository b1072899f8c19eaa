"""The session's reply path: a result that cannot be encoded is an `internal` error for that command
only; the socket stays open and keeps working."""

import dataclasses

from chat import keys


def deep(levels: int) -> dict:
    value: dict = {}
    for _ in range(levels):
        value = {"x": value}
    return value


async def test_a_reply_that_cannot_be_encoded_is_internal_and_the_socket_goes_on(harness, caplog):
    registry = harness.app[keys.WS_REGISTRY]
    queue_list = registry.commands["queue.list"]

    async def too_deep(ctx, data):
        return {"conversations": [deep(300)]}

    registry.commands["queue.list"] = dataclasses.replace(queue_list, handler=too_deep)
    agent = await harness.connect("agent-1", role="agent")
    reply = await agent.request("queue.list")
    assert reply["type"] == "error" and reply["code"] == "internal"
    assert any("could not be encoded" in r.getMessage() and r.exc_info for r in caplog.records)
    await agent.send({"type": "ping", "id": 9})
    assert await agent.recv() == {"id": 9, "type": "pong"}
    registry.commands["queue.list"] = queue_list
    assert (await agent.ok("queue.list")) == {"conversations": []}


async def test_a_response_that_cannot_be_encoded_is_a_500_for_that_request_only(harness, monkeypatch, caplog):
    from chat.api import common

    admin = {"Authorization": f"Bearer {harness.token('admin-1', role='admin')}"}
    created = await harness.client.post("/api/v1/sessions", json={"user_id": "cust-1"}, headers=admin)
    cid = (await created.json())["id"]
    monkeypatch.setattr(common.render, "conversation", lambda *args: deep(300))
    resp = await harness.client.get(f"/api/v1/sessions/{cid}", headers=admin)
    assert resp.status == 500
    assert (await resp.json())["error"]["code"] == "internal"
    assert any("could not be encoded" in r.getMessage() and r.exc_info for r in caplog.records)
    monkeypatch.undo()
    resp = await harness.client.get(f"/api/v1/sessions/{cid}", headers=admin)
    assert resp.status == 200 and (await resp.json())["id"] == cid
