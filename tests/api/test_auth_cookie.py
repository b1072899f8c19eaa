"""The browser form of login: the refresh token in the `chat_refresh` cookie, never in the body."""

from __future__ import annotations

from http.cookies import SimpleCookie

import pytest
from aiohttp import DummyCookieJar

from tests.api.accounts import PASSWORD, make_account
from tests.api.support import assert_error


def _set_cookie(resp) -> SimpleCookie:
    cookie: SimpleCookie = SimpleCookie()
    for header in resp.headers.getall("Set-Cookie", []):
        cookie.load(header)
    return cookie


@pytest.fixture
async def api(api):
    """The test client's own cookie jar would send the cookies it got: every request here names its own."""
    api.client.session._cookie_jar = DummyCookieJar()
    return api


async def test_the_cookie_form_login_refresh_logout(api):
    user_id = await make_account(api)
    resp = await api.client.post("/api/v1/auth/login", json={"user_id": user_id, "password": PASSWORD,
                                                             "cookie": True})
    assert resp.status == 200
    body = await resp.json()
    assert "refresh_token" not in body and body["access_token"] and body["token_type"] == "Bearer"
    morsel = _set_cookie(resp)["chat_refresh"]
    first = morsel.value
    assert morsel["httponly"] is True and morsel["samesite"] == "Strict" and morsel["path"] == "/api/v1/auth"
    assert morsel["max-age"] == str(14 * 24 * 3600)
    assert not morsel["secure"]  # plain http here; over https it is Secure
    assert first not in await resp.text()

    # refresh with no body: the cookie is read, and its successor goes back in the cookie
    resp = await api.client.post("/api/v1/auth/refresh", headers={"Cookie": f"chat_refresh={first}"})
    assert resp.status == 200
    body = await resp.json()
    assert "refresh_token" not in body and body["user"]["id"] == user_id
    second = _set_cookie(resp)["chat_refresh"].value
    assert second and second != first

    # the used cookie again: 401, the session is over, and the browser is told to drop it
    resp = await api.client.post("/api/v1/auth/refresh", headers={"Cookie": f"chat_refresh={first}"})
    assert_error(resp.status, await resp.json(), 401, "unauthenticated")
    assert _set_cookie(resp)["chat_refresh"]["max-age"] == "0"
    resp = await api.client.post("/api/v1/auth/refresh", headers={"Cookie": f"chat_refresh={second}"})
    assert resp.status == 401

    # a new session, logged out by its cookie
    resp = await api.client.post("/api/v1/auth/login", json={"user_id": user_id, "password": PASSWORD,
                                                             "cookie": True})
    third = _set_cookie(resp)["chat_refresh"].value
    resp = await api.client.post("/api/v1/auth/logout", headers={"Cookie": f"chat_refresh={third}"})
    assert resp.status == 204
    cleared = _set_cookie(resp)["chat_refresh"]
    assert cleared.value == "" and cleared["max-age"] == "0" and cleared["path"] == "/api/v1/auth"
    resp = await api.client.post("/api/v1/auth/refresh", headers={"Cookie": f"chat_refresh={third}"})
    assert resp.status == 401


async def test_a_body_token_wins_over_the_cookie_and_cookie_true_moves_it_to_the_cookie(api):
    user_id = await make_account(api)
    resp = await api.client.post("/api/v1/auth/login", json={"user_id": user_id, "password": PASSWORD})
    token = (await resp.json())["refresh_token"]
    assert "chat_refresh" not in _set_cookie(resp)
    resp = await api.client.post("/api/v1/auth/refresh", json={"refresh_token": token, "cookie": True},
                                 headers={"Cookie": "chat_refresh=stale"})
    assert resp.status == 200 and "refresh_token" not in await resp.json()
    assert _set_cookie(resp)["chat_refresh"].value
    resp = await api.client.post("/api/v1/auth/refresh", json={"cookie": "yes"})
    assert_error(resp.status, await resp.json(), 400, "invalid")
