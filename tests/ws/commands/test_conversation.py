"""Customer commands and events over the real app (real Redis; SQLite and MariaDB)."""

import pytest

from chat import keys
from chat.limits import MAX_METADATA_BYTES, MAX_METADATA_DEPTH
from chat.store import NewMessage
from tests.test_limits import nested


@pytest.fixture(params=["sqlite", "mysql"])
async def h(request, harness_factory):
    url = request.getfixturevalue("mysql_database_url") if request.param == "mysql" else None
    return await harness_factory(database_url=url)


C_FIELDS = {"id", "user_id", "state", "agent_type", "agent_id", "team_id", "version", "last_seq", "labels",
            "metadata", "created_at", "updated_at"}
M_FIELDS = {"id", "conversation_id", "seq", "sender_type", "sender_id", "content", "private", "client_msg_id",
            "created_at"}


async def test_start_returns_a_conversation(h):
    ws = await h.connect("cust-1")
    c = (await ws.ok("conversation.start", metadata={"page": "/pricing"}))["conversation"]
    assert set(c) == C_FIELDS
    assert (c["user_id"], c["state"], c["agent_type"], c["agent_id"], c["version"], c["last_seq"]) == (
        "cust-1", "ai", "ai", None, 0, 0)
    assert c["metadata"] == {"page": "/pricing"} and c["labels"] == []
    assert c["created_at"].endswith("Z")


async def test_the_customer_tokens_name_is_what_the_agents_see_it_by(h):
    """customers.md: the token's `name` is "shown to the agents": the new conversation's metadata.name (the console,
    the REST views and `{{customer.name}}` read it), unless the start names someone itself."""
    ws = await h.connect("shop-1042", name="Alice Wonder")
    named = (await ws.ok("conversation.start", metadata={"page": "/pricing"}))["conversation"]
    assert named["metadata"] == {"page": "/pricing", "name": "Alice Wonder"}
    given = (await ws.ok("conversation.start", metadata={"name": "A. W."}))["conversation"]
    assert given["metadata"] == {"name": "A. W."}
    unnamed = await h.connect("shop-7")
    assert (await unnamed.ok("conversation.start"))["conversation"]["metadata"] == {}
    agent = await h.connect("agent-1", role="agent")
    seen = (await agent.ok("conversation.watch", conversation_id=named["id"]))["conversation"]
    assert seen["metadata"]["name"] == "Alice Wonder"


async def test_start_with_unknown_team_is_not_found(h):
    ws = await h.connect("cust-1")
    reply = await ws.request("conversation.start", team_id="no-such-team")
    assert reply["code"] == "not_found"


async def test_send_is_idempotent_and_gets_an_ai_reply(h):
    ws = await h.connect("cust-1")
    cid = (await ws.ok("conversation.start"))["conversation"]["id"]
    m = (await ws.ok("message.send", conversation_id=cid, client_msg_id="k1", content="hello"))["message"]
    assert set(m) == M_FIELDS
    assert (m["seq"], m["sender_type"], m["sender_id"], m["private"], m["client_msg_id"]) == (
        1, "customer", "cust-1", False, "k1")
    again = (await ws.ok("message.send", conversation_id=cid, client_msg_id="k1", content="hello"))["message"]
    assert again == m
    created = await ws.event("message.created", lambda f: f["data"]["message"]["sender_type"] == "ai")
    assert created["data"]["message"]["content"] == "Hello, world" and created["data"]["message"]["seq"] == 2
    deltas = [f["data"]["delta"] for f in ws.events if f["type"] == "ai.delta"]
    assert "".join(deltas) == "Hello, world"
    assert all(f["data"]["reply_to"] == m["id"] for f in ws.events if f["type"] == "ai.delta")
    await h.drain_ai()
    stored = await h.app[keys.STORE].messages.list_of(cid)
    assert [(x.seq, x.sender_type) for x in stored] == [(1, "customer"), (2, "ai")]  # the resend stored nothing


async def test_content_limits(h):
    ws = await h.connect("cust-1")
    cid = (await ws.ok("conversation.start"))["conversation"]["id"]
    empty = await ws.request("message.send", conversation_id=cid, client_msg_id="a", content="")
    assert empty["code"] == "invalid"
    long = await ws.request("message.send", conversation_id=cid, client_msg_id="b", content="字" * 4001)
    assert long["code"] == "too_large"
    exact = await ws.request("message.send", conversation_id=cid, client_msg_id="c", content="字" * 4000)
    assert exact["type"] == "result"
    too_long_id = await ws.request("message.send", conversation_id=cid, client_msg_id="x" * 65, content="hi")
    assert too_long_id["code"] == "invalid" and "client_msg_id" in too_long_id["details"]


async def test_other_customers_conversations_do_not_exist(h):
    alice = await h.connect("alice")
    bob = await h.connect("bob")
    cid = (await alice.ok("conversation.start"))["conversation"]["id"]
    for cmd, fields in [
        ("conversation.resume", {}),
        ("message.send", {"client_msg_id": "x", "content": "hi"}),
        ("handoff.request", {}),
        ("typing", {"on": True}),
        ("conversation.close", {}),
    ]:
        for target in (cid, "00000000-0000-0000-0000-000000000000"):
            reply = await bob.request(cmd, conversation_id=target, **fields)
            assert reply["code"] == "not_found", (cmd, reply)
    assert (await h.app[keys.STORE].messages.list_of(cid)) == []


async def test_unicode_round_trips_byte_for_byte(h):
    ws = await h.connect("cust-1")
    cid = (await ws.ok("conversation.start"))["conversation"]["id"]
    text = "退款进度？👍🏽 emoji 👩‍💻 and ‘quotes’ \u00e9\u0301"
    m = (await ws.ok("message.send", conversation_id=cid, client_msg_id="u", content=text))["message"]
    assert m["content"] == text
    other = await h.connect("cust-1")
    resumed = await other.ok("conversation.resume", conversation_id=cid)
    assert resumed["messages"][0]["content"] == text
    assert resumed["messages"][0]["content"].encode() == text.encode()


async def test_resume_after_a_dropped_socket_returns_exactly_the_missed_messages(h):
    ws = await h.connect("cust-1")
    cid = (await ws.ok("conversation.start"))["conversation"]["id"]
    await ws.ok("message.send", conversation_id=cid, client_msg_id="1", content="one")
    await ws.event("message.created", lambda f: f["data"]["message"]["sender_type"] == "ai")
    await h.drain_ai()
    await ws.close()  # dropped after seeing seq 2
    tab = await h.connect("cust-1")  # meanwhile another tab keeps talking
    await tab.ok("conversation.resume", conversation_id=cid, after_seq=2)
    await tab.ok("message.send", conversation_id=cid, client_msg_id="2", content="two")
    await h.drain_ai()
    back = await h.connect("cust-1")
    data = await back.ok("conversation.resume", conversation_id=cid, after_seq=2)
    assert [(m["seq"], m["sender_type"], m["content"]) for m in data["messages"]] == [
        (3, "customer", "two"), (4, "ai", "Hello, world")]
    assert data["conversation"]["last_seq"] == 4


async def test_every_tab_of_the_customer_gets_the_events(h):
    tab1 = await h.connect("cust-1")
    tab2 = await h.connect("cust-1")  # never subscribed explicitly
    cid = (await tab1.ok("conversation.start"))["conversation"]["id"]
    await tab1.ok("message.send", conversation_id=cid, client_msg_id="k", content="hi")
    got = await tab2.event("message.created", lambda f: f["data"]["message"]["sender_type"] == "customer")
    assert got["data"]["conversation_id"] == cid


async def test_typing_goes_to_others_not_the_sender(h):
    """PROTOCOL 3.6: to the subscribers other than the sender, none of whose tabs hears it back."""
    tab1 = await h.connect("cust-1")
    tab2 = await h.connect("cust-1")
    agent = await h.connect("agent-1", role="agent")
    cid = (await tab1.ok("conversation.start"))["conversation"]["id"]
    await agent.ok("conversation.watch", conversation_id=cid)
    await tab1.send({"type": "typing", "conversation_id": cid, "on": True})  # no id: no reply
    ev = await agent.event("typing")
    assert ev["data"] == {"conversation_id": cid, "sender_type": "customer", "on": True}
    assert await tab1.ok("typing", conversation_id=cid, on=False) == {}
    await agent.event("typing", lambda f: f["data"]["on"] is False)
    for tab in (tab1, tab2):  # the frames sent to each tab before its pong have all arrived: no typing among them
        await tab.request("ping")
        assert [f for f in tab.events if f["type"] == "typing"] == []
    await agent.ok("typing", conversation_id=cid, on=True)
    for tab in (tab1, tab2):
        assert (await tab.event("typing"))["data"]["sender_type"] == "agent"


async def test_handoff_request_and_close_then_message_reopens(h):
    ws = await h.connect("cust-1")
    cid = (await ws.ok("conversation.start"))["conversation"]["id"]
    c = (await ws.ok("handoff.request", conversation_id=cid, reason="need a person"))["conversation"]
    assert (c["state"], c["agent_type"], c["version"]) == ("handoff", "human", 1)
    upd = await ws.event("conversation.updated")
    assert upd["data"]["previous_state"] == "ai" and upd["data"]["reason"] == "customer_request: need a person"
    system = await ws.event("message.created", lambda f: f["data"]["message"]["sender_type"] == "system")
    assert system["data"]["message"]["sender_id"] is None
    again = await ws.request("handoff.request", conversation_id=cid)
    assert again["code"] == "conflict"
    closed = (await ws.ok("conversation.close", conversation_id=cid))["conversation"]
    assert closed["state"] == "closed" and closed["agent_type"] == "human"
    m = (await ws.ok("message.send", conversation_id=cid, client_msg_id="r", content="still there?"))["message"]
    assert m["sender_type"] == "customer"
    c = (await ws.ok("conversation.resume", conversation_id=cid))["conversation"]
    assert c["state"] in ("ai",) and c["agent_type"] == "ai"
    await h.drain_ai()
    events = await h.app[keys.STORE].events.list_of(cid)
    assert [e.trigger for e in events] == ["request_handoff", "close", "reopen"]
    assert events[0].reason == "customer_request: need a person" and events[0].actor_type == "customer"


async def test_a_resend_after_close_does_not_reopen(h):
    ws = await h.connect("cust-1")
    cid = (await ws.ok("conversation.start"))["conversation"]["id"]
    first = (await ws.ok("message.send", conversation_id=cid, client_msg_id="k", content="bye"))["message"]
    await h.drain_ai()
    await ws.ok("conversation.close", conversation_id=cid)
    again = (await ws.ok("message.send", conversation_id=cid, client_msg_id="k", content="bye"))["message"]
    assert again == first
    assert (await h.repository.get(cid)).state == "closed"


async def test_metadata_is_capped(h):
    ws = await h.connect("cust-1")
    reply = await ws.request("conversation.start", metadata={"blob": "x" * 20000})
    assert reply["code"] == "invalid" and "metadata" in reply["details"]


async def conversations_of(h, user_id: str) -> int:
    row = await h.app[keys.STORE].db.fetchone("SELECT COUNT(*) FROM conversations WHERE user_id = %s", (user_id,))
    return int(row[0])


async def test_metadata_nesting_is_capped_at_eight_levels_and_nothing_is_stored(h):
    ws = await h.connect("deep-1")
    ok = (await ws.ok("conversation.start", metadata=nested(MAX_METADATA_DEPTH)))["conversation"]
    assert ok["metadata"] == nested(MAX_METADATA_DEPTH)
    for depth in (MAX_METADATA_DEPTH + 1, 251, 252, 253, 254):
        for arrays in (False, True):
            reply = await ws.request("conversation.start", metadata=nested(depth, arrays=arrays))
            assert reply["code"] == "invalid" and "metadata" in reply["details"], (depth, reply)
    assert await conversations_of(h, "deep-1") == 1  # no orphan row of any refused start
    await ws.send({"type": "ping", "id": 1})
    assert await ws.recv() == {"id": 1, "type": "pong"}  # the socket lives on


async def test_metadata_of_16_kib_plus_one_is_invalid(h):
    ws = await h.connect("big-1")
    exact = {"x": "a" * (MAX_METADATA_BYTES - len('{"x":""}'))}
    assert (await ws.ok("conversation.start", metadata=exact))["conversation"]["metadata"] == exact
    reply = await ws.request("conversation.start", metadata={"x": exact["x"] + "a"})
    assert reply["code"] == "invalid" and "metadata" in reply["details"]
    assert await conversations_of(h, "big-1") == 1


async def test_resume_and_watch_page_the_history_reading_only_a_page(h):
    ws = await h.connect("pager-1")
    cid = (await ws.ok("conversation.start"))["conversation"]["id"]
    store = h.app[keys.STORE]
    await store.messages.append_batch([NewMessage(cid, "system", f"m{i}") for i in range(1, 451)])
    asked: list[int | None] = []
    list_of = store.messages.list_of

    async def spy(conversation_id, **kw):
        asked.append(kw.get("limit"))
        return await list_of(conversation_id, **kw)

    store.messages.list_of = spy  # the instance attribute shadows the method for this test's app only
    agent = await h.connect("pager-agent", role="agent")
    for sock, command in ((ws, "conversation.resume"), (agent, "conversation.watch")):
        pages, after_seq = [], 0
        while True:
            page = await sock.ok(command, conversation_id=cid, after_seq=after_seq)
            assert set(page) == {"conversation", "messages", "has_more", "ai_stream"} and page["ai_stream"] is None
            pages.append((len(page["messages"]), page["has_more"]))
            seqs = [m["seq"] for m in page["messages"]]
            assert seqs == list(range(after_seq + 1, after_seq + 1 + len(seqs)))  # gapless, oldest first
            if not page["has_more"]:
                break
            after_seq = seqs[-1]
        assert pages == [(200, True), (200, True), (50, False)] and after_seq + 50 == 450
    assert asked == [201] * 6  # one page and one row more, never the whole history
    small = await ws.ok("conversation.resume", conversation_id=cid, after_seq=440, limit=10)
    assert [m["seq"] for m in small["messages"]] == list(range(441, 451)) and small["has_more"] is False
    exact = await ws.ok("conversation.resume", conversation_id=cid, after_seq=0, limit=1000)
    assert len(exact["messages"]) == 450 and exact["has_more"] is False


@pytest.mark.parametrize("fields", [
    {"limit": 1001}, {"limit": 0}, {"limit": -1}, {"limit": "5"}, {"limit": 2**31},
    {"after_seq": -1}, {"after_seq": 2**31}, {"after_seq": 2**63}, {"after_seq": 2**64}, {"after_seq": 1.5},
])
async def test_resume_ranges_are_invalid(h, fields):
    ws = await h.connect("ranges-1")
    cid = (await ws.ok("conversation.start"))["conversation"]["id"]
    reply = await ws.request("conversation.resume", conversation_id=cid, **fields)
    assert reply["code"] == "invalid" and set(reply["details"]) == set(fields), reply
    largest = await ws.ok("conversation.resume", conversation_id=cid, after_seq=2**31 - 1, limit=1000)
    assert largest["messages"] == [] and largest["has_more"] is False
