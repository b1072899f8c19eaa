"""The @endpoint decorator and the error middleware on the real Redis and on MariaDB and SQLite:
the auth matrix of every endpoint, bad tokens, and one error shape for everything.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from chat import keys
from chat.api.routes import HANDLERS
from chat.auth import Identity, issue_token
from tests.api.support import Api, assert_error, uid

# --- the auth matrix ----------------------------------------------------------------------------


class World:
    """Fresh things for one call of one matrix row (a row's call may change or delete them)."""

    def __init__(self, api: Api):
        self.api = api
        self.customer = Identity(uid("cust"), "customer")
        self.agent = Identity(uid("agent"), "agent")
        self.admin = Identity(uid("admin"), "admin")

    async def ready(self) -> World:
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


async def account(w: World):
    return w.agent.user_id  # a known agent is an account (without a password)


async def canned_id(w: World):
    return (await w.api.store.canned.create(uid("code"), "Hello {{customer.name}}"))["id"]


# webhooks made here hear only erasures, at a public address no test erases anything for (93.184.216.34)
HOOK_BODY = {"url": "https://93.184.216.34/hook", "events": ["customer.erased"]}


async def webhook_id(w: World):
    return (await w.api.store.webhooks.create(HOOK_BODY["url"], HOOK_BODY["events"], None))["id"]


async def failed_delivery(w: World):
    """A webhook and one delivery of it that failed (only those are redelivered)."""
    hook, webhooks = await webhook_id(w), w.api.store.webhooks
    await webhooks.refresh()
    async with w.api.store.db.transaction() as tx:
        event_id = await webhooks.record(tx, "customer.erased", None, {"user_id": uid("gone")})
    table = w.api.store.db.tables.webhook_deliveries
    await w.api.store.db.execute(f"UPDATE {table} SET status = 'failed' WHERE event_id = %s", (event_id,))
    row = await w.api.store.db.fetchone(f"SELECT id FROM {table} WHERE event_id = %s AND webhook_id = %s",
                                        (event_id, hook))
    return hook, row[0]


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
    ("POST", "/api/v1/conversations/{x}/messages", assigned,
     lambda w, x: {"content": "a note", "client_msg_id": uid("m"), "private": True},
     {"none": 401, "customer": 403, "agent": 201, "admin": 201}),
    ("GET", "/api/v1/conversations/{x}/transcript", conv, None, STAFF_READ),
    ("GET", "/api/v1/export/conversations", _none, None, {**ADMIN_WRITE, "admin": 200}),
    ("GET", "/api/v1/me/conversations", _none, None, {"none": 401, "customer": 200, "agent": 403, "admin": 403}),
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
    ("GET", "/api/v1/csat", _none, None, STAFF_READ),
    ("GET", "/api/v1/canned_responses", _none, None, STAFF_READ),
    ("POST", "/api/v1/canned_responses", _none, lambda w, x: {"short_code": uid("code"), "content": "Hi"},
     {"none": 401, "customer": 403, "agent": 201, "admin": 201}),
    ("PATCH", "/api/v1/canned_responses/{x}", canned_id, lambda w, x: {"content": "Hello"}, STAFF_READ),
    ("DELETE", "/api/v1/canned_responses/{x}", canned_id, None,
     {"none": 401, "customer": 403, "agent": 204, "admin": 204}),
    ("GET", "/api/openapi.json", _none, None, {"none": 200, "customer": 200, "agent": 200, "admin": 200}),
    ("GET", "/api/v1/users", _none, None, {**ADMIN_WRITE, "admin": 200}),
    ("POST", "/api/v1/users", _none, lambda w, x: {"id": uid("user"), "role": "agent"}, {**ADMIN_WRITE, "admin": 201}),
    ("GET", "/api/v1/users/{x}", account, None, {**ADMIN_WRITE, "admin": 200}),
    ("PATCH", "/api/v1/users/{x}", account, lambda w, x: {"name": "Night"}, {**ADMIN_WRITE, "admin": 200}),
    # no token needed (a token sent is ignored): the credentials in the body decide
    ("POST", "/api/v1/auth/login", _none, lambda w, x: {"user_id": uid("nobody"), "password": "guess"},
     {"none": 401, "customer": 401, "agent": 401, "admin": 401}),
    ("POST", "/api/v1/auth/refresh", _none, lambda w, x: {"refresh_token": "unknown"},
     {"none": 401, "customer": 401, "agent": 401, "admin": 401}),
    ("POST", "/api/v1/auth/logout", _none, lambda w, x: {"refresh_token": "unknown"},
     {"none": 204, "customer": 204, "agent": 204, "admin": 204}),
    # no token needed either; ANONYMOUS_VISITORS is off outside the embedded mode (tests/api/test_visitors.py: on)
    ("POST", "/api/v1/visitors", _none, None, {"none": 404, "customer": 404, "agent": 404, "admin": 404}),
    ("GET", "/api/v1/webhooks", _none, None, {**ADMIN_WRITE, "admin": 200}),
    ("POST", "/api/v1/webhooks", _none, lambda w, x: HOOK_BODY, {**ADMIN_WRITE, "admin": 201}),
    ("DELETE", "/api/v1/webhooks/{x}", webhook_id, None, {**ADMIN_WRITE, "admin": 204}),
    ("GET", "/api/v1/webhooks/{x}/deliveries", webhook_id, None, {**ADMIN_WRITE, "admin": 200}),
    ("POST", "/api/v1/webhooks/{x[0]}/deliveries/{x[1]}/redeliver", failed_delivery, None,
     {**ADMIN_WRITE, "admin": 200}),
    ("DELETE", "/api/v1/customers/{x}", lambda w: _value(w.customer.user_id), None, {**ADMIN_WRITE, "admin": 200}),
]


async def _value(value: Any) -> Any:
    return value


def test_the_matrix_covers_every_endpoint():
    covered = {(method, path.replace("{x}", "{id}").replace("{x[0]}", "{id}")) for method, path, *_ in MATRIX}
    covered.add(("DELETE", "/api/v1/teams/{id}/members/{user_id}"))  # the team_with_member row
    covered.add(("POST", "/api/v1/webhooks/{id}/deliveries/{delivery_id}/redeliver"))  # the failed_delivery row
    covered.add(("DELETE", "/api/v1/customers/{user_id}"))
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
                assert_error(got, answer, status, {401: "unauthenticated", 403: "forbidden", 404: "not_found"}[got])
    for hook in await api.store.webhooks.all():  # the database is shared: no subscription outlives the test
        await api.store.webhooks.delete(hook["id"])
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


async def test_a_path_or_query_that_is_not_utf8_is_400_on_every_route(api):
    admin = Identity(uid("admin"), "admin")
    conversation_id = (await api.ops.conversations.start(Identity(uid("cust"), "customer"))).id
    queries = ("user_id=%FF", "q=%FF", "label=%FF", "user_id=%C3%28", "q=%ED%A0%80", "%FF=x", "q=%E2%82")
    for query in queries:  # aiohttp reads each as U+FFFD: a filter that matched nothing, 200 with an empty list
        status, body = await api.call("GET", f"/api/v1/conversations?{query}", as_=admin)
        assert_error(status, body, 400, "invalid")
        assert body["error"]["message"] == "invalid query string: not valid UTF-8"
    for path in ("/api/v1/conversations/%FF", f"/api/v1/conversations/{conversation_id}%C3%28/events",
                 "/api/v1/sessions/%ED%A0%80"):  # aiohttp leaves them percent-encoded: an unknown id, 404
        status, body = await api.call("GET", path, as_=admin)
        assert_error(status, body, 400, "invalid")
        assert body["error"]["message"] == "invalid path: not valid UTF-8"
    for path in ("/api/v1/conversations?q=%FF", "/api/v1/nothing/%FF", "/ws?token=%FF", "/console/%FF",
                 "/health?x=%FF"):  # every route, before the token and the routing's 404
        status, body = await api.call("GET", path)
        assert_error(status, body, 400, "invalid")
    status, body = await api.call("GET", "/api/v1/conversations?q=%C3%A9t%C3%A9&label=%F0%9F%98%80", as_=admin)
    assert status == 200 and body["items"] == []  # UTF-8, encoded or not, is fine
    status, body = await api.call("GET", "/api/v1/conversations/%30%31", as_=admin)
    assert_error(status, body, 404, "not_found")


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
