"""The REST API on the real Redis and on MariaDB and SQLite: the auth matrix of every endpoint,
the error shape, sessions, labels, teams, messages and events, and the actions (which must
reach the WebSocket exactly as the commands do, and race exactly as they do).
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from typing import Any, Awaitable, Callable

import pytest

from chat import keys
from chat.api.routes import HANDLERS
from chat.app import create_app
from chat.auth import Identity, issue_token
from chat.conversations import Operations
from chat.errors import to_chat_error
from chat.store import Store


def uid(prefix: str) -> str:
    """A fresh id (the MariaDB database is shared by every test of the run)."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


@dataclass
class Api:
    """An app on the real servers and a client, with a token per identity."""

    app: Any
    client: Any

    def token(self, identity: Identity) -> str:
        return issue_token(self.app[keys.SETTINGS].jwt_secret_key, identity.user_id, identity.role)

    async def call(self, method: str, path: str, as_: Identity | None = None, json: Any = None,
                   data: Any = None, headers: dict | None = None) -> tuple[int, Any]:
        headers = dict(headers or {})
        if as_ is not None:
            headers["Authorization"] = f"Bearer {self.token(as_)}"
        resp = await self.client.request(method, path, json=json, data=data, headers=headers)
        body = await resp.json() if resp.content_type == "application/json" else await resp.text()
        return resp.status, body

    @property
    def ops(self) -> Operations:
        return self.app[keys.OPERATIONS]

    @property
    def store(self) -> Store:
        return self.app[keys.STORE]


@pytest.fixture
async def api(aiohttp_client, make_settings, database_url) -> Api:
    app = create_app(make_settings(database_url=database_url))
    return Api(app, await aiohttp_client(app))


def assert_error(status: int, body: Any, expected_status: int, code: str) -> None:
    assert status == expected_status, body
    assert isinstance(body, dict) and set(body) == {"error"}, body
    assert body["error"]["code"] == code and isinstance(body["error"]["message"], str), body


# --- the auth matrix ----------------------------------------------------------------------------


class World:
    """Fresh things for one call of one matrix row (a row's call may change or delete them)."""

    def __init__(self, api: Api):
        self.api = api
        self.customer = Identity(uid("cust"), "customer")
        self.agent = Identity(uid("agent"), "agent")
        self.admin = Identity(uid("admin"), "admin")

    async def ready(self) -> "World":
        for identity in (self.agent, self.admin):
            await self.api.ops.staff.remember(identity)
        return self

    async def conversation(self) -> str:
        return (await self.api.ops.conversations.start(self.customer)).id

    async def assigned(self) -> str:
        conversation_id = await self.conversation()
        await self.api.ops.assignment.assign(self.admin, conversation_id, self.agent.user_id)
        return conversation_id

    async def label(self) -> dict:
        return await self.api.store.labels.create(uid("label"), None, None)

    async def team(self) -> dict:
        return await self.api.store.teams.create(uid("team"), None)


Setup = Callable[[World], Awaitable[tuple[str, Any]]]


async def _none(w: World):
    return None


async def conv(w: World):
    return await w.conversation()


async def assigned(w: World):
    return await w.assigned()


async def label_id(w: World):
    return (await w.label())["id"]


async def team_id(w: World):
    return (await w.team())["id"]


async def team_with_member(w: World):
    team = await w.team()
    await w.api.store.teams.add_member(team["id"], w.agent.user_id)
    return f"{team['id']}/members/{w.agent.user_id}"


async def labelled(w: World):
    return await w.conversation(), (await w.label())["title"]


# (method, path with {x} for what setup returns, setup, body(w, x), {role: status})
STAFF_READ = {"none": 401, "customer": 403, "agent": 200, "admin": 200}
ADMIN_WRITE = {"none": 401, "customer": 403, "agent": 403}
MATRIX = [
    ("POST", "/api/v1/sessions", _none, lambda w, x: {"metadata": {"k": "v"}},
     {"none": 401, "customer": 201, "agent": 403, "admin": 201}),
    ("GET", "/api/v1/sessions/{x}", conv, None, {"none": 401, "customer": 200, "agent": 200, "admin": 200}),
    ("GET", "/api/v1/conversations", _none, None, STAFF_READ),
    ("GET", "/api/v1/conversations/{x}", conv, None, STAFF_READ),
    ("GET", "/api/v1/conversations/{x}/messages", conv, None, STAFF_READ),
    ("GET", "/api/v1/conversations/{x}/events", conv, None, STAFF_READ),
    ("POST", "/api/v1/conversations/{x}/assign", conv, lambda w, x: {"agent_id": w.agent.user_id}, STAFF_READ),
    ("POST", "/api/v1/conversations/{x}/release", assigned, None, STAFF_READ),
    ("POST", "/api/v1/conversations/{x}/handoff", conv, lambda w, x: {"reason": "billing"}, STAFF_READ),
    ("POST", "/api/v1/conversations/{x}/close", conv, None, STAFF_READ),
    ("PUT", "/api/v1/conversations/{x[0]}/labels", labelled, lambda w, x: {"labels": [x[1]]}, STAFF_READ),
    ("GET", "/api/v1/labels", _none, None, STAFF_READ),
    ("POST", "/api/v1/labels", _none, lambda w, x: {"title": uid("label"), "color": "#a0b1c2"},
     {**ADMIN_WRITE, "admin": 201}),
    ("DELETE", "/api/v1/labels/{x}", label_id, None, {**ADMIN_WRITE, "admin": 204}),
    ("GET", "/api/v1/teams", _none, None, STAFF_READ),
    ("POST", "/api/v1/teams", _none, lambda w, x: {"name": uid("team")}, {**ADMIN_WRITE, "admin": 201}),
    ("GET", "/api/v1/teams/{x}", team_id, None, STAFF_READ),
    ("PATCH", "/api/v1/teams/{x}", team_id, lambda w, x: {"description": "night shift"}, {**ADMIN_WRITE, "admin": 200}),
    ("DELETE", "/api/v1/teams/{x}", team_id, None, {**ADMIN_WRITE, "admin": 204}),
    ("GET", "/api/v1/teams/{x}/members", team_id, None, STAFF_READ),
    ("POST", "/api/v1/teams/{x}/members", team_id, lambda w, x: {"user_id": w.agent.user_id},
     {**ADMIN_WRITE, "admin": 201}),
    ("DELETE", "/api/v1/teams/{x}", team_with_member, None, {**ADMIN_WRITE, "admin": 204}),
    ("GET", "/api/v1/stats", _none, None, STAFF_READ),
    ("GET", "/api/v1/agents", _none, None, STAFF_READ),
    ("GET", "/api/openapi.json", _none, None, {"none": 200, "customer": 200, "agent": 200, "admin": 200}),
]


def test_the_matrix_covers_every_endpoint():
    covered = {(method, path.replace("{x}", "{id}").replace("{x[0]}", "{id}")) for method, path, *_ in MATRIX}
    covered.add(("DELETE", "/api/v1/teams/{id}/members/{user_id}"))  # the team_with_member row
    declared = {(h.endpoint.method, h.endpoint.path) for h in HANDLERS}
    assert declared <= covered, declared - covered


async def test_auth_matrix(api):
    mismatches = []
    for method, path, setup, body, expected in MATRIX:
        for role, status in expected.items():
            w = await World(api).ready()
            x = await setup(w)
            url = path.format(x=x)
            identity = None if role == "none" else getattr(w, role)
            got, answer = await api.call(method, url, as_=identity, json=body(w, x) if body else None)
            if got != status:
                mismatches.append((method, url, role, status, got, answer))
            elif got >= 400:
                assert_error(got, answer, status, {401: "unauthenticated", 403: "forbidden"}[got])
    assert not mismatches, "\n".join(map(str, mismatches))


@pytest.mark.parametrize(
    "authorization",
    [
        "Bearer not-a-jwt",
        "Basic dXNlcjpwYXNz",
        "Bearer ",
        "Bearer {expired}",
        "Bearer {other_secret}",
    ],
)
async def test_bad_tokens_are_401(api, authorization):
    import jwt

    expired = issue_token(api.app[keys.SETTINGS].jwt_secret_key, "admin-x", "admin", ttl_s=-10)
    other = jwt.encode({"sub": "admin-x", "role": "admin", "exp": 4102444800}, "another-secret-0123456789abcdef0123")
    header = authorization.format(expired=expired, other_secret=other)
    status, body = await api.call("GET", "/api/v1/conversations", headers={"Authorization": header})
    assert_error(status, body, 401, "unauthenticated")


# --- the error shape ------------------------------------------------------------------------------


async def test_errors_use_one_shape(api):
    admin = Identity(uid("admin"), "admin")
    status, body = await api.call("POST", "/api/v1/labels", as_=admin, data=b"{not json",
                                  headers={"Content-Type": "application/json"})
    assert_error(status, body, 400, "invalid")
    status, body = await api.call("POST", "/api/v1/labels", as_=admin, json=["a", "list"])
    assert_error(status, body, 400, "invalid")
    status, body = await api.call("POST", "/api/v1/labels", as_=admin, json={"title": "x", "colour": "#fff"})
    assert_error(status, body, 400, "invalid")
    assert body["error"]["details"] == {"colour": ["Unknown field."]}
    status, body = await api.call("POST", "/api/v1/labels", as_=admin, json={"title": "   "})
    assert_error(status, body, 400, "invalid")
    assert "title" in body["error"]["details"]
    status, body = await api.call("POST", "/api/v1/labels", as_=admin, data=b"x" * (1024 * 1024 + 1))
    assert_error(status, body, 413, "too_large")
    status, body = await api.call("GET", "/api/v1/nothing-here", as_=admin)
    assert_error(status, body, 404, "not_found")
    resp = await api.client.delete("/api/v1/stats")
    assert_error(resp.status, await resp.json(), 405, "method_not_allowed")
    assert "GET" in resp.headers["Allow"]
    for query in ("limit=201", "limit=0", "limit=ten", "limit=1.0", "cursor=%21%21", "state=open",
                  "since=yesterday", "since=2024-02-01&until=2024-01-01", "limit=5&limit=6"):
        status, body = await api.call("GET", f"/api/v1/conversations?{query}", as_=admin)
        assert_error(status, body, 400, "invalid")
    status, body = await api.call("GET", "/api/v1/conversations/x/messages?limit=501", as_=admin)
    assert_error(status, body, 400, "invalid")


async def test_a_state_conflict_is_409(api):
    admin = Identity(uid("admin"), "admin")
    status, c = await api.call("POST", "/api/v1/sessions", as_=admin, json={})
    assert status == 201
    status, closed = await api.call("POST", f"/api/v1/conversations/{c['id']}/close", as_=admin)
    assert status == 200 and closed["state"] == "closed"
    for action in ("close", "handoff", "release"):
        status, body = await api.call("POST", f"/api/v1/conversations/{c['id']}/{action}", as_=admin, json={})
        assert_error(status, body, 409, "conflict")


async def test_a_database_failure_is_503(api, database_url):
    admin = Identity(uid("admin"), "admin")
    await api.ops.staff.remember(admin)
    await api.app[keys.STORE].db.close()
    status, body = await api.call("GET", "/api/v1/labels", as_=admin)
    assert_error(status, body, 503, "unavailable")


# --- sessions ------------------------------------------------------------------------------------


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
    status, body = await api.call("POST", "/api/v1/sessions", as_=alice, json={"team_id": uid("no-team")})
    assert_error(status, body, 404, "not_found")
    status, body = await api.call("POST", "/api/v1/sessions", as_=alice, json={"metadata": "not an object"})
    assert_error(status, body, 400, "invalid")
    status, body = await api.call("POST", "/api/v1/sessions", as_=alice, json={"metadata": {"x": "y" * 20000}})
    assert_error(status, body, 400, "invalid")


# --- labels and teams ----------------------------------------------------------------------------


async def test_labels(api):
    admin = Identity(uid("admin"), "admin")
    title = uid("vip") + " 贵宾"
    status, label = await api.call("POST", "/api/v1/labels", as_=admin,
                                   json={"title": f"  {title} ", "description": "big spender", "color": "#FF0000"})
    assert status == 201
    assert label["title"] == title and label["description"] == "big spender" and label["color"] == "#FF0000"
    uuid.UUID(label["id"], version=4)
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


async def test_teams_and_members(api):
    admin, agent = Identity(uid("admin"), "admin"), Identity(uid("agent"), "agent", name="Ann")
    name = uid("billing")
    status, team = await api.call("POST", "/api/v1/teams", as_=admin, json={"name": name})
    assert status == 201 and team["name"] == name and team["description"] is None
    status, body = await api.call("POST", "/api/v1/teams", as_=admin, json={"name": name})
    assert_error(status, body, 409, "conflict")
    status, got = await api.call("GET", f"/api/v1/teams/{team['id']}", as_=admin)
    assert status == 200 and got == team
    status, page = await api.call("GET", "/api/v1/teams", as_=admin)
    assert team in page["items"] and page["next_cursor"] is None

    status, patched = await api.call("PATCH", f"/api/v1/teams/{team['id']}", as_=admin,
                                     json={"description": "invoices"})
    assert status == 200 and patched["name"] == name and patched["description"] == "invoices"
    status, renamed = await api.call("PATCH", f"/api/v1/teams/{team['id']}", as_=admin, json={"name": name + "-2"})
    assert status == 200 and renamed["name"] == name + "-2" and renamed["description"] == "invoices"
    status, other = await api.call("POST", "/api/v1/teams", as_=admin, json={"name": uid("sales")})
    status, body = await api.call("PATCH", f"/api/v1/teams/{other['id']}", as_=admin, json={"name": name + "-2"})
    assert_error(status, body, 409, "conflict")
    status, body = await api.call("PATCH", f"/api/v1/teams/{other['id']}", as_=admin, json={"name": None})
    assert_error(status, body, 400, "invalid")
    status, body = await api.call("PATCH", f"/api/v1/teams/{uid('none')}", as_=admin, json={})
    assert_error(status, body, 404, "not_found")

    # members: only known agents (they signed in once), once each
    status, body = await api.call("POST", f"/api/v1/teams/{team['id']}/members", as_=admin,
                                  json={"user_id": agent.user_id})
    assert_error(status, body, 404, "not_found")
    await api.call("GET", "/api/v1/labels", as_=agent)  # any authenticated request makes it known
    status, member = await api.call("POST", f"/api/v1/teams/{team['id']}/members", as_=admin,
                                    json={"user_id": agent.user_id})
    assert status == 201
    assert member["user_id"] == agent.user_id and member["team_id"] == team["id"] and member["role"] == "agent"
    assert member["name"] == "Ann" or member["name"] is None  # names come from tokens that carry one
    status, body = await api.call("POST", f"/api/v1/teams/{team['id']}/members", as_=admin,
                                  json={"user_id": agent.user_id})
    assert_error(status, body, 409, "conflict")
    status, members = await api.call("GET", f"/api/v1/teams/{team['id']}/members", as_=agent)
    assert status == 200 and [m["user_id"] for m in members["items"]] == [agent.user_id]
    status, _ = await api.call("DELETE", f"/api/v1/teams/{team['id']}/members/{agent.user_id}", as_=admin)
    assert status == 204
    status, body = await api.call("DELETE", f"/api/v1/teams/{team['id']}/members/{agent.user_id}", as_=admin)
    assert_error(status, body, 404, "not_found")

    # a team's conversations: start one for it, then delete the team
    customer = Identity(uid("cust"), "customer")
    status, c = await api.call("POST", "/api/v1/sessions", as_=customer, json={"team_id": team["id"]})
    assert status == 201 and c["team_id"] == team["id"]
    status, _ = await api.call("DELETE", f"/api/v1/teams/{team['id']}", as_=admin)
    assert status == 204
    for path in (f"/api/v1/teams/{team['id']}", f"/api/v1/teams/{team['id']}/members"):
        status, body = await api.call("GET", path, as_=admin)
        assert_error(status, body, 404, "not_found")
    status, body = await api.call("POST", f"/api/v1/teams/{team['id']}/members", as_=admin,
                                  json={"user_id": agent.user_id})
    assert_error(status, body, 404, "not_found")


# --- messages and events -------------------------------------------------------------------------


async def test_messages_and_events(api):
    admin, agent = Identity(uid("admin"), "admin"), Identity(uid("agent"), "agent")
    customer = Identity(uid("cust"), "customer")
    store = api.store
    await api.ops.staff.remember(agent)
    c = await api.ops.conversations.start(customer)
    for text in ("hello", "你好，我的订单在哪里？", "still there?"):
        await store.messages.append(c.id, sender_type="customer", sender_id=customer.user_id, content=text)
    await api.ops.messages.send(agent, c.id, content="VIP, be nice", client_msg_id="n1", private=True)

    status, page = await api.call("GET", f"/api/v1/conversations/{c.id}/messages", as_=agent)
    assert status == 200 and page["next_cursor"] is None
    assert [m["seq"] for m in page["items"]] == [1, 2, 3, 4]
    assert [m["private"] for m in page["items"]] == [False, False, False, True]
    assert page["items"][1]["content"] == "你好，我的订单在哪里？"
    assert set(page["items"][3]) >= {"id", "conversation_id", "seq", "sender_type", "sender_id", "content",
                                     "private", "client_msg_id", "created_at"}
    status, page = await api.call("GET", f"/api/v1/conversations/{c.id}/messages?after_seq=1&limit=2", as_=admin)
    assert [m["seq"] for m in page["items"]] == [2, 3] and page["next_cursor"] == "3"
    status, page = await api.call("GET", f"/api/v1/conversations/{c.id}/messages?after_seq=3&limit=2", as_=admin)
    assert [m["seq"] for m in page["items"]] == [4] and page["next_cursor"] is None
    status, body = await api.call("GET", f"/api/v1/conversations/{uuid.uuid4()}/messages", as_=admin)
    assert_error(status, body, 404, "not_found")

    await api.call("POST", f"/api/v1/conversations/{c.id}/handoff", as_=admin, json={"reason": "angry"})
    await api.call("POST", f"/api/v1/conversations/{c.id}/assign", as_=admin, json={"agent_id": agent.user_id})
    await api.call("POST", f"/api/v1/conversations/{c.id}/release", as_=agent)
    status, events = await api.call("GET", f"/api/v1/conversations/{c.id}/events", as_=agent)
    assert status == 200 and events["next_cursor"] is None
    assert [(e["trigger"], e["from_state"], e["to_state"]) for e in events["items"]] == [
        ("request_handoff", "ai", "handoff"), ("assign", "handoff", "human"), ("release", "human", "ai")]
    first = events["items"][0]
    assert first["actor_type"] == "admin" and first["actor_id"] == admin.user_id and "angry" in first["reason"]
    assert first["conversation_id"] == c.id and first["created_at"].endswith("Z")


# --- actions: the same path as the WebSocket ---------------------------------------------------


async def test_actions_follow_the_state_machine_and_the_roles(api):
    admin = Identity(uid("admin"), "admin")
    ann, bob = Identity(uid("ann"), "agent"), Identity(uid("bob"), "agent")
    for identity in (admin, ann, bob):
        await api.ops.staff.remember(identity)
    c = await api.ops.conversations.start(Identity(uid("cust"), "customer"))
    url = f"/api/v1/conversations/{c.id}"

    status, body = await api.call("POST", f"{url}/assign", as_=admin, json={"agent_id": uid("ghost")})
    assert_error(status, body, 404, "not_found")
    status, body = await api.call("POST", f"{url}/assign", as_=admin, json={})
    assert_error(status, body, 400, "invalid")
    status, claimed = await api.call("POST", f"{url}/assign", as_=ann, json={"agent_id": ann.user_id})
    assert status == 200 and claimed["state"] == "human" and claimed["agent_id"] == ann.user_id
    assert claimed["agent_type"] == "human" and claimed["version"] == 1
    # an agent's own assign is a claim: not from `human`
    status, body = await api.call("POST", f"{url}/assign", as_=bob, json={"agent_id": bob.user_id})
    assert_error(status, body, 409, "conflict")
    # bob may neither release nor close ann's conversation, nor transfer it
    for action, payload in (("release", None), ("close", None), ("assign", {"agent_id": bob.user_id})):
        status, body = await api.call("POST", f"{url}/{action}", as_=bob, json=payload)
        assert status in (403, 409), body
    status, body = await api.call("POST", f"{url}/release", as_=bob)
    assert_error(status, body, 403, "forbidden")
    # ann transfers it to bob (the WebSocket conversation.transfer), an admin takes it over
    status, moved = await api.call("POST", f"{url}/assign", as_=ann, json={"agent_id": bob.user_id})
    assert status == 200 and moved["agent_id"] == bob.user_id and moved["state"] == "human"
    status, taken = await api.call("POST", f"{url}/assign", as_=admin, json={"agent_id": admin.user_id})
    assert status == 200 and taken["agent_id"] == admin.user_id
    status, body = await api.call("POST", f"{url}/handoff", as_=admin)
    assert_error(status, body, 409, "conflict")
    status, released = await api.call("POST", f"{url}/release", as_=admin, json={})
    assert status == 200 and released["state"] == "ai" and released["agent_id"] is None
    status, handed = await api.call("POST", f"{url}/handoff", as_=ann, json={"reason": None})
    assert status == 200 and handed["state"] == "handoff"
    status, closed = await api.call("POST", f"{url}/close", as_=bob)
    assert status == 200 and closed["state"] == "closed" and closed["version"] == 6


async def _frame(ws, type_: str, timeout_s: float = 5.0) -> dict:
    """The next frame of this type (system messages and the like arrive in between)."""
    while True:
        frame = await ws.receive_json(timeout=timeout_s)
        if frame.get("type") == type_:
            return frame


async def test_rest_actions_push_the_same_websocket_events(api):
    customer, admin = Identity(uid("cust"), "customer"), Identity(uid("admin"), "admin")
    ws = await api.client.ws_connect(f"/ws?token={api.token(customer)}")
    try:
        await ws.send_json({"type": "conversation.start", "id": 1})
        reply = await _frame(ws, "result")
        assert reply["id"] == 1
        conversation = reply["data"]["conversation"]

        status, _ = await api.call("POST", f"/api/v1/conversations/{conversation['id']}/handoff", as_=admin,
                                   json={"reason": "vip"})
        assert status == 200
        updated = (await _frame(ws, "conversation.updated"))["data"]
        assert updated["conversation"]["id"] == conversation["id"]
        assert updated["conversation"]["state"] == "handoff" and updated["previous_state"] == "ai"
        assert "vip" in updated["reason"]  # the service prefixes its own reason code

        status, _ = await api.call("POST", f"/api/v1/conversations/{conversation['id']}/close", as_=admin)
        assert status == 200
        updated = (await _frame(ws, "conversation.updated"))["data"]
        assert updated["conversation"]["state"] == "closed" and updated["previous_state"] == "handoff"
    finally:
        await ws.close()


async def test_racing_assigns_have_one_winner(api):
    ann, bob = Identity(uid("ann"), "agent"), Identity(uid("bob"), "agent")
    for identity in (ann, bob):
        await api.ops.staff.remember(identity)
    has_claim = "conversation.claim" in api.app[keys.WS_REGISTRY].commands
    for round_ in range(5):
        c = await api.ops.conversations.start(Identity(uid("cust"), "customer"))
        rest = api.call("POST", f"/api/v1/conversations/{c.id}/assign", as_=ann, json={"agent_id": ann.user_id})
        if has_claim:  # the WebSocket command against the REST action
            ws = await api.client.ws_connect(f"/ws?token={api.token(bob)}")
            try:
                async def claim() -> int:
                    await ws.send_json({"type": "conversation.claim", "id": 7, "conversation_id": c.id})
                    while (frame := await ws.receive_json(timeout=5)).get("id") != 7:
                        pass
                    return 200 if frame["type"] == "result" else {"conflict": 409}.get(frame.get("code"), 500)

                (status_a, _), status_b = await asyncio.gather(rest, claim())
            finally:
                await ws.close()
        else:  # two REST assigns of different agents
            other = api.call("POST", f"/api/v1/conversations/{c.id}/assign", as_=bob, json={"agent_id": bob.user_id})
            (status_a, _), (status_b, _) = await asyncio.gather(rest, other)
        assert sorted([status_a, status_b]) == [200, 409], (round_, status_a, status_b)
        winner = ann if status_a == 200 else bob
        assert (await api.ops.conversations.get_for(winner, c.id)).agent_id == winner.user_id


async def test_rest_assign_races_a_service_claim(api):
    ann, bob = Identity(uid("ann"), "agent"), Identity(uid("bob"), "agent")
    for identity in (ann, bob):
        await api.ops.staff.remember(identity)
    for _ in range(5):
        c = await api.ops.conversations.start(Identity(uid("cust"), "customer"))
        rest = api.call("POST", f"/api/v1/conversations/{c.id}/assign", as_=ann, json={"agent_id": ann.user_id})
        (status, _), claim = await asyncio.gather(rest, api.ops.assignment.claim(bob, c.id), return_exceptions=True)
        claim_ok = not isinstance(claim, BaseException)
        assert (status == 200) != claim_ok, (status, claim)
        if not claim_ok:
            assert to_chat_error(claim).status == 409
        else:
            assert status == 409
