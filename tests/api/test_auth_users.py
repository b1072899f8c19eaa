"""The accounts over REST (GET|POST /api/v1/users, GET|PATCH /api/v1/users/{id}): admins only, never the hash."""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import replace

import jwt
import pytest

from chat import keys
from chat.app import create_app
from chat.auth import Identity
from chat.passwords import hash_password
from tests.api.accounts import ADMIN, PASSWORD, bearer, login, make_account
from tests.api.support import Api, assert_error, uid


async def test_create_list_get_patch(api):
    team = (await api.call("POST", "/api/v1/teams", as_=ADMIN, json={"name": uid("team")}))[1]
    user_id = uid("agent")
    status, user = await api.call("POST", "/api/v1/users", as_=ADMIN, json={
        "id": user_id, "role": "agent", "name": "Ann", "max_chats": 3, "teams": [team["id"]], "password": PASSWORD})
    assert status == 201
    assert {k: user[k] for k in ("id", "role", "name", "active", "max_chats", "teams", "has_password")} == {
        "id": user_id, "role": "agent", "name": "Ann", "active": True, "max_chats": 3, "teams": [team["id"]],
        "has_password": True}
    assert user["created_at"].endswith(("Z", "+00:00"))
    status, got = await api.call("GET", f"/api/v1/users/{user_id}", as_=ADMIN)
    assert status == 200 and got == user
    status, page = await api.call("GET", "/api/v1/users", as_=ADMIN)
    assert user in page["items"] and page["next_cursor"] is None
    row = await api.store.db.fetchone(f"SELECT password_hash FROM {api.store.db.tables.users} WHERE id = %s",
                                      (user_id,))
    assert row[0].startswith("$argon2id$") and row[0] not in str(page)

    status, changed = await api.call("PATCH", f"/api/v1/users/{user_id}", as_=ADMIN,
                                     json={"role": "admin", "name": None, "max_chats": None, "teams": []})
    assert status == 200
    assert (changed["role"], changed["name"], changed["max_chats"], changed["teams"]) == ("admin", None, None, [])
    status, same = await api.call("PATCH", f"/api/v1/users/{user_id}", as_=ADMIN, json={})
    assert status == 200 and same == changed
    # the member shows in its team's members too
    assert (await api.call("PATCH", f"/api/v1/users/{user_id}", as_=ADMIN, json={"teams": [team["id"]]}))[0] == 200
    _, members = await api.call("GET", f"/api/v1/teams/{team['id']}/members", as_=ADMIN)
    assert [m["user_id"] for m in members["items"]] == [user_id]


async def test_a_user_without_a_password_cannot_log_in_until_one_is_set(api):
    user_id = await make_account(api, password=None)
    status, user = await api.call("GET", f"/api/v1/users/{user_id}", as_=ADMIN)
    assert user["has_password"] is False
    assert_error(*await login(api, user_id), 401, "unauthenticated")
    await api.call("PATCH", f"/api/v1/users/{user_id}", as_=ADMIN, json={"password": PASSWORD})
    assert (await login(api, user_id))[0] == 200


async def test_bad_input_unknown_ids_and_duplicates(api):
    user_id = await make_account(api)
    assert_error(*await api.call("POST", "/api/v1/users", as_=ADMIN, json={"id": user_id, "role": "admin"}),
                 409, "conflict")
    for body in ({"id": uid("a"), "role": "customer"}, {"id": uid("a")}, {"id": uid("a"), "role": "agent", "x": 1},
                 {"id": uid("a"), "role": "agent", "max_chats": 0}, {"id": uid("a"), "role": "agent", "name": ""},
                 {"id": uid("a"), "role": "agent", "max_chats": "3"}, {"id": uid("a"), "role": "agent", "teams": "t"},
                 {"id": uid("a"), "role": "agent", "teams": ["no-such-team"]}):
        status, answer = await api.call("POST", "/api/v1/users", as_=ADMIN, json=body)
        assert_error(status, answer, 400, "invalid")
        assert answer["error"]["details"]
    for body in ({"active": "no"}, {"active": 0}, {"role": "customer"}, {"id": "other"}, {"teams": ["nope"]}):
        status, answer = await api.call("PATCH", f"/api/v1/users/{user_id}", as_=ADMIN, json=body)
        assert_error(status, answer, 400, "invalid")
    assert (await api.call("GET", f"/api/v1/users/{user_id}", as_=ADMIN))[1]["active"] is True  # nothing changed
    assert_error(*await api.call("GET", f"/api/v1/users/{uid('nobody')}", as_=ADMIN), 404, "not_found")
    assert_error(*await api.call("PATCH", f"/api/v1/users/{uid('nobody')}", as_=ADMIN, json={"name": "x"}),
                 404, "not_found")
    # customers are no accounts
    customer = Identity(uid("cust"), "customer")
    await api.call("POST", "/api/v1/sessions", as_=customer, json={})
    assert_error(*await api.call("GET", f"/api/v1/users/{customer.user_id}", as_=ADMIN), 404, "not_found")


async def test_only_admins(api):
    agent = Identity(uid("agent"), "agent")
    for method, path, body in (("GET", "/api/v1/users", None), ("POST", "/api/v1/users", {"id": "x", "role": "agent"}),
                               ("GET", "/api/v1/users/x", None), ("PATCH", "/api/v1/users/x", {"active": False})):
        assert_error(*await api.call(method, path, as_=agent, json=body), 403, "forbidden")
        assert_error(*await api.call(method, path, json=body), 401, "unauthenticated")


def _claims(sub: str, role: str = "admin", **extra) -> dict:
    now = int(time.time())
    return {"sub": sub, "role": role, "iat": now, "exp": now + 600, **extra}


@pytest.mark.parametrize("kind", ["expired", "forged", "alg-none", "garbage"])
async def test_expired_forged_and_alg_none_tokens_are_401(api, kind):
    secret = api.app[keys.SETTINGS].jwt_secret_key
    if kind == "expired":
        token = jwt.encode(_claims("boss", exp=int(time.time()) - 1), secret, algorithm="HS256")
    elif kind == "forged":
        token = jwt.encode(_claims("boss"), "another-secret-0123456789abcdef0123", algorithm="HS256")
    elif kind == "alg-none":
        token = jwt.encode(_claims("boss"), None, algorithm="none")
    else:
        token = "eyJhbGciOiJIUzI1NiJ9.bm90IGpzb24.c2ln"
    for method, path, body in (("GET", "/api/v1/users", None), ("POST", "/api/v1/users", {"id": "x", "role": "admin"}),
                               ("PATCH", "/api/v1/users/boss", {"role": "admin"})):
        status, answer = await api.call(method, path, json=body, headers=bearer(token))
        assert_error(status, answer, 401, "unauthenticated")
    assert await api.store.accounts.get("x") is None


async def test_an_access_token_from_login_is_an_admins_only_when_the_account_is_admin(api):
    agent = await make_account(api)
    _, tokens = await login(api, agent)
    status, body = await api.call("GET", "/api/v1/users", headers=bearer(tokens["access_token"]))
    assert_error(status, body, 403, "forbidden")


async def test_an_older_token_does_not_write_a_demoted_accounts_role_back(api):
    user_id = await make_account(api, "admin", name="Ann")
    _, tokens = await login(api, user_id)
    status, user = await api.call("PATCH", f"/api/v1/users/{user_id}", as_=ADMIN, json={"role": "agent"})
    assert status == 200 and user["role"] == "agent"
    api.ops.staff._known.discard(user_id)  # as on an instance that has not seen it yet
    # the admin token from before the demotion is refused now (PROTOCOL 2: the client refreshes) ...
    status, body = await api.call("GET", "/api/v1/users", headers=bearer(tokens["access_token"]))
    assert_error(status, body, 401, "unauthenticated")
    # ... and SQL keeps the demotion, so the next access token is an agent's
    assert (await api.store.accounts.get(user_id))["role"] == "agent"
    status, body = await api.call("POST", "/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert status == 200 and body["user"]["role"] == "agent"
    assert (await api.call("GET", "/api/v1/users", headers=bearer(body["access_token"])))[0] == 403


async def test_an_id_the_service_has_seen_is_no_new_account(api):
    """A customer with a conversation or a contact row, and a token-only agent, are ids in use (409);
    after a customer's erasure its id is free again."""
    customer = Identity(uid("cust"), "customer")
    assert (await api.call("POST", "/api/v1/sessions", as_=customer, json={}))[0] == 201
    contact = uid("cust")  # known by its contact row alone (an import from the old system)
    await api.store.db.execute(f"INSERT INTO {api.store.db.tables.customer_contacts} (id, user_id, created_ms) "
                               "VALUES (%s, %s, %s)", (uid("contact"), contact, 1))
    agent = Identity(uid("agent"), "agent")
    await api.call("GET", "/api/v1/labels", as_=agent)  # a token-only agent: a row of users
    for user_id in (customer.user_id, contact, agent.user_id):
        for role in ("agent", "admin"):
            status, body = await api.call("POST", "/api/v1/users", as_=ADMIN,
                                          json={"id": user_id, "role": role, "password": PASSWORD})
            assert_error(status, body, 409, "conflict")
            assert body["error"]["details"] == {"id": ["Already in use."]}
    assert_error(*await api.call("GET", f"/api/v1/users/{customer.user_id}", as_=ADMIN), 404, "not_found")
    assert_error(*await login(api, customer.user_id), 401, "unauthenticated")
    assert (await api.call("DELETE", f"/api/v1/customers/{customer.user_id}", as_=ADMIN))[0] == 200
    assert (await make_account(api, id=customer.user_id)) == customer.user_id


async def _app_of_its_own(aiohttp_client, make_settings, database_url) -> Api:
    """An app on tables of its own (a fresh prefix): the admins in it are the test's alone."""
    settings = make_settings(database_url=database_url)
    prefix = f"t{uuid.uuid4().hex[:12]}_"
    settings = replace(settings, db_table_prefix=prefix, database=replace(settings.database, table_prefix=prefix))
    app = create_app(settings)
    return Api(app, await aiohttp_client(app))


async def make_account_as(api: Api, headers: dict[str, str], user_id: str, role: str) -> None:
    """A new account with PASSWORD, created by the admin whose Authorization header this is."""
    status, body = await api.call("POST", "/api/v1/users", headers=headers,
                                  json={"id": user_id, "role": role, "password": PASSWORD})
    assert status == 201, body


async def test_the_last_active_admin_can_neither_demote_nor_deactivate_itself(aiohttp_client, make_settings,
                                                                               database_url):
    api = await _app_of_its_own(aiohttp_client, make_settings, database_url)
    await api.store.accounts.create("alice", "admin", password_hash=await hash_password(PASSWORD))  # the CLI's add
    alice = bearer((await login(api, "alice"))[1]["access_token"])
    for change in ({"role": "agent"}, {"active": False}, {"role": "agent", "active": False, "name": "Al"}):
        status, body = await api.call("PATCH", "/api/v1/users/alice", json=change, headers=alice)
        assert_error(status, body, 409, "conflict")
        assert "last active admin" in body["error"]["message"]
        assert set(body["error"]["details"]) == {"role", "active"} & set(change)
    user = (await api.call("GET", "/api/v1/users/alice", headers=alice))[1]
    assert (user["role"], user["active"], user["name"]) == ("admin", True, None)  # nothing changed
    status, user = await api.call("PATCH", "/api/v1/users/alice", json={"role": "admin", "name": "Al"},
                                  headers=alice)
    assert status == 200 and user["name"] == "Al"
    # with another admin, either may go
    await make_account_as(api, alice, "bob", "admin")
    status, user = await api.call("PATCH", "/api/v1/users/alice", json={"role": "agent"}, headers=alice)
    assert status == 200 and user["role"] == "agent"
    bob = bearer((await login(api, "bob"))[1]["access_token"])
    assert_error(*await api.call("PATCH", "/api/v1/users/bob", json={"active": False}, headers=bob), 409, "conflict")
    # the command line is not held to it: `chat-api users deactivate` and `activate` (their store calls) recover
    assert (await api.store.accounts.update("bob", {"active": False}))["active"] is False
    assert (await api.store.accounts.update("bob", {"active": True}))["active"] is True
    # an admin known by its tokens counts: its tokens still let it in
    assert (await api.call("GET", "/api/v1/users", as_=Identity("ops", "admin")))[0] == 200
    status, user = await api.call("PATCH", "/api/v1/users/bob", json={"active": False}, headers=bob)
    assert status == 200 and user["active"] is False


async def test_two_admins_demoting_themselves_at_once_leave_one(aiohttp_client, make_settings, database_url,
                                                               monkeypatch):
    api = await _app_of_its_own(aiohttp_client, make_settings, database_url)
    await api.store.accounts.create("alice", "admin", password_hash=await hash_password(PASSWORD))
    alice = bearer((await login(api, "alice"))[1]["access_token"])
    await make_account_as(api, alice, "bob", "admin")
    bob = bearer((await login(api, "bob"))[1]["access_token"])
    both, update = asyncio.Barrier(2), api.store.accounts.update

    async def at_once(*args, **kwargs):
        async with asyncio.timeout(10):
            await both.wait()  # neither change starts before the other has come this far
        return await update(*args, **kwargs)

    monkeypatch.setattr(api.store.accounts, "update", at_once)
    answers = await asyncio.gather(
        api.call("PATCH", "/api/v1/users/alice", json={"role": "agent"}, headers=alice),
        api.call("PATCH", "/api/v1/users/bob", json={"active": False}, headers=bob))
    assert sorted(status for status, _ in answers) == [200, 409], answers
    admins = [u for u in (await api.store.accounts.all()) if u["role"] == "admin" and u["active"]]
    assert len(admins) == 1
