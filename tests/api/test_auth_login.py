"""Login, refresh and logout (PROTOCOL 2.1) on the real Redis, MariaDB and SQLite, and the attacks
they must refuse."""

from __future__ import annotations

import time

import jwt
import pytest

from chat import keys
from chat.auth import verify_token
from tests.api.accounts import ADMIN, PASSWORD, bearer, login, make_account, refresh
from tests.api.support import assert_error, uid


async def test_login_gives_a_short_access_token_and_a_refresh_token(api):
    user_id = await make_account(api, "admin", name="Ann")
    status, body = await login(api, user_id)
    assert status == 200, body
    assert set(body) == {"access_token", "token_type", "expires_in", "refresh_token", "user"}
    assert body["token_type"] == "Bearer" and body["expires_in"] == 900
    user = body["user"]
    assert user["id"] == user_id and user["role"] == "admin" and user["name"] == "Ann" and user["active"] is True
    assert "password_hash" not in user and "password" not in user
    settings = api.app[keys.SETTINGS]
    identity = verify_token(settings.jwt_secret_key, body["access_token"])
    assert identity.user_id == user_id and identity.role == "admin" and identity.name == "Ann"
    claims = jwt.decode(body["access_token"], settings.jwt_secret_key, algorithms=["HS256"])
    assert claims["exp"] - claims["iat"] == 900 and abs(claims["iat"] - time.time()) < 60
    # the access token works
    status, users = await api.call("GET", "/api/v1/users", headers=bearer(body["access_token"]))
    assert status == 200 and user_id in [u["id"] for u in users["items"]]


async def test_wrong_password_unknown_user_deactivated_and_no_password_are_one_401(api):
    agent = await make_account(api)
    inactive = await make_account(api)
    assert (await api.call("PATCH", f"/api/v1/users/{inactive}", as_=ADMIN, json={"active": False}))[0] == 200
    no_password = await make_account(api, password=None)
    answers = [
        await login(api, agent, "wrong password"),
        await login(api, uid("nobody")),
        await login(api, inactive),
        await login(api, no_password),
        await login(api, agent, PASSWORD.upper()),
    ]
    for status, body in answers:
        assert_error(status, body, 401, "unauthenticated")
    assert len({body["error"]["message"] for _, body in answers}) == 1  # nothing tells them apart


async def test_a_refresh_token_is_good_once_and_its_reuse_ends_the_session(api):
    user_id = await make_account(api)
    _, first = await login(api, user_id)
    status, second = await refresh(api, first["refresh_token"])
    assert status == 200 and second["refresh_token"] != first["refresh_token"]
    assert verify_token(api.app[keys.SETTINGS].jwt_secret_key, second["access_token"]).user_id == user_id
    # the used one again: refused, and the one it was exchanged for is revoked with it
    assert_error(*await refresh(api, first["refresh_token"]), 401, "unauthenticated")
    assert_error(*await refresh(api, second["refresh_token"]), 401, "unauthenticated")
    # another login is another session, untouched
    _, other = await login(api, user_id)
    assert (await refresh(api, other["refresh_token"]))[0] == 200


async def test_logout_revokes_and_bad_refresh_tokens_are_401(api):
    user_id = await make_account(api)
    _, tokens = await login(api, user_id)
    status, _ = await api.call("POST", "/api/v1/auth/logout", json={"refresh_token": tokens["refresh_token"]})
    assert status == 204
    assert_error(*await refresh(api, tokens["refresh_token"]), 401, "unauthenticated")
    assert (await api.call("POST", "/api/v1/auth/logout", json={"refresh_token": "unknown"}))[0] == 204
    assert_error(*await refresh(api, "not-a-token"), 401, "unauthenticated")
    assert_error(*await api.call("POST", "/api/v1/auth/refresh"), 401, "unauthenticated")  # none at all
    assert_error(*await refresh(api, "x" * 257), 400, "invalid")


async def test_deactivation_and_a_new_password_revoke_the_refresh_tokens(api):
    deactivated, renewed = await make_account(api), await make_account(api)
    _, first = await login(api, deactivated)
    _, second = await login(api, renewed)
    status, user = await api.call("PATCH", f"/api/v1/users/{deactivated}", as_=ADMIN, json={"active": False})
    assert status == 200 and user["active"] is False
    assert_error(*await refresh(api, first["refresh_token"]), 401, "unauthenticated")
    assert_error(*await login(api, deactivated), 401, "unauthenticated")
    status, _ = await api.call("PATCH", f"/api/v1/users/{renewed}", as_=ADMIN, json={"password": "new one"})
    assert status == 200
    assert_error(*await refresh(api, second["refresh_token"]), 401, "unauthenticated")
    assert_error(*await login(api, renewed), 401, "unauthenticated")
    assert (await login(api, renewed, "new one"))[0] == 200
    # reactivated: it logs in again, the old tokens stay dead
    assert (await api.call("PATCH", f"/api/v1/users/{deactivated}", as_=ADMIN, json={"active": True}))[0] == 200
    assert (await login(api, deactivated))[0] == 200
    assert_error(*await refresh(api, first["refresh_token"]), 401, "unauthenticated")


async def test_a_login_checking_the_old_password_while_it_is_changed_gets_no_session(api, monkeypatch):
    import chat.login

    user_id = await make_account(api)
    verify = chat.login.verify_password

    async def changed_while_checking(password_hash, password):
        ok = await verify(password_hash, password)
        status, _ = await api.call("PATCH", f"/api/v1/users/{user_id}", as_=ADMIN, json={"password": "changed"})
        assert status == 200
        return ok

    monkeypatch.setattr(chat.login, "verify_password", changed_while_checking)
    assert_error(*await login(api, user_id), 401, "unauthenticated")
    monkeypatch.undo()
    rows = await api.app[keys.STORE].db.fetchall(
        f"SELECT 1 FROM {api.app[keys.STORE].db.tables.refresh_tokens} WHERE user_id = %s", (user_id,))
    assert rows == []  # no session outlives the new password
    assert (await login(api, user_id, "changed"))[0] == 200


async def test_a_hash_made_with_older_parameters_is_renewed_at_login_and_the_login_succeeds(api):
    from argon2 import PasswordHasher

    user_id = await make_account(api, password=None)
    store = api.app[keys.STORE]
    old = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1).hash(PASSWORD)
    await store.accounts.update(user_id, {"password_hash": old})
    status, body = await login(api, user_id)
    assert status == 200, body
    assert (await store.accounts.credentials(user_id)).password_hash != old
    assert (await refresh(api, body["refresh_token"]))[0] == 200


async def test_two_logins_at_once_that_both_renew_an_old_hash_both_succeed(api, monkeypatch):
    import asyncio

    from argon2 import PasswordHasher

    import chat.login

    user_id = await make_account(api, password=None)
    store = api.app[keys.STORE]
    await store.accounts.update(user_id, {"password_hash": PasswordHasher(time_cost=1, memory_cost=1024,
                                                                          parallelism=1).hash(PASSWORD)})
    verify, checked, both = chat.login.verify_password, [], asyncio.Event()

    async def together(password_hash, password):  # both have read the old hash before either renews it
        ok = await verify(password_hash, password)
        checked.append(ok)
        if len(checked) == 2:
            both.set()
        await asyncio.wait_for(both.wait(), 10)
        return ok

    monkeypatch.setattr(chat.login, "verify_password", together)
    results = await asyncio.gather(login(api, user_id), login(api, user_id))
    assert [status for status, _ in results] == [200, 200], results


async def test_twenty_failed_logins_in_a_row_get_429_with_retry_after(api):
    user_id = await make_account(api)
    statuses = []
    for _ in range(20):
        resp = await api.client.post("/api/v1/auth/login", json={"user_id": user_id, "password": "guess"})
        statuses.append(resp.status)
        if resp.status == 429:
            retry_after = int(resp.headers["Retry-After"])
            assert 1 <= retry_after <= 900
            assert (await resp.json())["error"]["code"] == "rate_limited"
    assert statuses == [401] * 10 + [429] * 10
    # locked: the right password waits too (else the limit would be an oracle)
    assert (await login(api, user_id))[0] == 429


async def test_failures_per_address_are_limited_across_user_ids(aiohttp_client, make_settings, database_url):
    from chat.app import create_app
    from tests.api.support import Api

    app = create_app(make_settings(database_url=database_url, login_failures_per_address=5))
    api = Api(app, await aiohttp_client(app))
    user_id = await make_account(api)
    statuses = [(await login(api, uid("nobody"), "guess"))[0] for _ in range(5)]
    assert statuses == [401] * 5
    resp = await api.client.post("/api/v1/auth/login", json={"user_id": user_id, "password": PASSWORD})
    assert resp.status == 429 and int(resp.headers["Retry-After"]) >= 1


async def test_a_successful_login_is_not_counted_as_a_failure(api):
    user_id = await make_account(api)
    for _ in range(9):
        assert (await login(api, user_id, "guess"))[0] == 401
    for _ in range(3):
        assert (await login(api, user_id))[0] == 200
    assert (await login(api, user_id, "guess"))[0] == 401  # the tenth failure
    assert (await login(api, user_id, "guess"))[0] == 429


@pytest.mark.parametrize("password", ["", "x" * 10_000])
async def test_a_password_of_0_or_10000_characters_is_400(api, password):
    user_id = await make_account(api)
    status, body = await login(api, user_id, password)
    assert_error(status, body, 400, "invalid")
    assert "password" in body["error"]["details"]
    status, body = await api.call("POST", "/api/v1/users", as_=ADMIN,
                                  json={"id": uid("agent"), "role": "agent", "password": password})
    assert_error(status, body, 400, "invalid")
    status, body = await api.call("PATCH", f"/api/v1/users/{user_id}", as_=ADMIN, json={"password": password})
    assert_error(status, body, 400, "invalid")
    assert (await login(api, user_id))[0] == 200  # nothing changed


@pytest.mark.parametrize("body", [b"user_id=a&password=b", b"{not json", b"", b"[]", b'"text"', b"null"])
async def test_a_login_body_that_is_not_a_json_object_is_400(api, body):
    status, answer = await api.call("POST", "/api/v1/auth/login", data=body,
                                    headers={"Content-Type": "application/json"})
    assert_error(status, answer, 400, "invalid")


@pytest.mark.parametrize("user_id", ["' OR '1'='1", "admin'--", "x\"; DROP TABLE users; --", "管理员",
                                     "ádmin", "admin\u200b"])
async def test_sql_ish_and_unicode_user_ids_log_no_one_else_in(api, user_id):
    admin = await make_account(api, "admin")
    assert_error(*await login(api, user_id), 401, "unauthenticated")
    # such an id is a valid account id of its own (the sub rules): stored and matched exactly
    await make_account(api, id=user_id + uid("")[:6])
    assert (await login(api, admin))[0] == 200


@pytest.mark.parametrize("user_id", ["", "a" * 65, "bad\u0000id", "tab\tid", "new\nline", "\u0085next"])
async def test_user_ids_breaking_the_sub_rules_are_400(api, user_id):
    assert_error(*await login(api, user_id), 400, "invalid")
    status, body = await api.call("POST", "/api/v1/users", as_=ADMIN,
                                  json={"id": user_id, "role": "agent", "password": PASSWORD})
    assert_error(status, body, 400, "invalid")
    assert "id" in body["error"]["details"]


async def test_a_lone_surrogate_in_a_user_id_is_400(api):
    status, body = await api.call("POST", "/api/v1/auth/login", data=b'{"user_id": "\\ud800", "password": "x"}',
                                  headers={"Content-Type": "application/json"})
    assert_error(status, body, 400, "invalid")


async def test_logout_is_204_whatever_its_body_and_ends_only_its_own_login(api):
    """Unknown fields, a body that is not JSON or not an object, a refresh_token that is no string: 204, and
    the session ended is the one the body names (a usable `refresh_token`), else the cookie's."""
    user_id = await make_account(api)
    sessions = [(await login(api, user_id))[1]["refresh_token"] for _ in range(4)]
    named, by_cookie, bad_value, untouched = sessions
    resp = await api.client.post("/api/v1/auth/logout", json={"refresh_token": named, "bogus": 1})
    assert resp.status == 204
    assert_error(*await refresh(api, named), 401, "unauthenticated")
    for body in (b'{"bogus": 1}', b"not json", b"[1, 2]", b'"text"', b"{"):
        resp = await api.client.post("/api/v1/auth/logout", data=body, headers={"Content-Type": "application/json"})
        assert resp.status == 204, await resp.text()
        assert "chat_refresh=" in resp.headers.get("Set-Cookie", "")  # cleared all the same
    resp = await api.client.post("/api/v1/auth/logout", data=b"not json",
                                 headers={"Cookie": f"chat_refresh={by_cookie}"})
    assert resp.status == 204
    assert_error(*await refresh(api, by_cookie), 401, "unauthenticated")
    resp = await api.client.post("/api/v1/auth/logout", json={"refresh_token": 5},
                                 headers={"Cookie": f"chat_refresh={bad_value}"})
    assert resp.status == 204
    assert_error(*await refresh(api, bad_value), 401, "unauthenticated")
    assert (await refresh(api, untouched))[0] == 200  # no other login of the user ended
