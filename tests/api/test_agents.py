"""GET /api/v1/agents reads live presence: status, capacity, active conversations."""

import asyncio

from chat import keys
from tests.wsclient import when_session_closed


async def test_agents_endpoint_reflects_presence(harness_factory):
    h = await harness_factory(agent_max_chats=4, routing="manual")
    online = await h.connect("agent-on", role="agent")
    await online.ok("presence.set", status="online")
    away = await h.connect("agent-away", role="agent")
    await away.ok("presence.set", status="away")
    gone = await h.connect("agent-gone", role="agent")
    await gone.ok("presence.set", status="online")
    gone_closed = when_session_closed(h.app, "agent-gone")
    await gone.close()
    cust = await h.connect("cust-1")
    cid = (await cust.ok("conversation.start"))["conversation"]["id"]
    await online.ok("conversation.claim", conversation_id=cid)
    await asyncio.wait_for(gone_closed.wait(), timeout=5)  # the server handled the close of agent-gone's socket
    assert "agent-gone" not in h.app[keys.PRESENCE].local

    headers = {"Authorization": f"Bearer {h.token('boss', 'admin')}"}
    resp = await h.client.get("/api/v1/agents", headers=headers)
    assert resp.status == 200
    body = await resp.json()
    by_id = {a["agent_id"]: a for a in body["items"]}
    assert by_id["agent-on"] == {"agent_id": "agent-on", "status": "online", "active": True, "max_chats": 4,
                                 "active_conversations": 1}
    assert by_id["agent-away"]["status"] == "away"
    assert by_id["agent-gone"]["status"] == "offline"
    assert body["next_cursor"] is None
    customer = await h.client.get("/api/v1/agents", headers={"Authorization": f"Bearer {h.token('c1')}"})
    assert customer.status == 403
