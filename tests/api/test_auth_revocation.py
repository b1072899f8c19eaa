"""Deactivating an account (REST PATCH or `chat-api users deactivate`) reaches a session made by login
on another instance: its socket closes with 4403, its access token gets 401, its refresh token too. A
role change does as well for the tokens naming the old role (4401), and a refresh gives the new one."""

from __future__ import annotations

import asyncio

from chat.auth import issue_token, verify_token
from chat.revocation import CLOSE_DEACTIVATED, CLOSE_ROLE_CHANGED
from tests.api.accounts import PASSWORD
from tests.api.support import uid
from tests.conftest import BUS_CHANNEL, redis_url
from tests.wsclient import WS

WITHIN_S = 5.0  # PROTOCOL 2.1


async def _logged_in(h, user_id: str) -> dict:
    resp = await h.client.post("/api/v1/auth/login", json={"user_id": user_id, "password": PASSWORD})
    assert resp.status == 200
    return await resp.json()


async def _socket(h, access_token: str) -> WS:
    ws = WS(await h.client.ws_connect(f"/ws?token={access_token}", autoping=True))
    assert (await ws.request("ping"))["type"] == "pong"  # past the auth phase
    return ws


async def _account(h, role: str = "agent") -> str:
    admin = issue_token(h.settings.jwt_secret_key, "revoking-admin", "admin")
    user_id = uid(role)
    resp = await h.client.post("/api/v1/users", json={"id": user_id, "role": role, "password": PASSWORD},
                               headers={"Authorization": f"Bearer {admin}"})
    assert resp.status == 201
    return user_id


async def test_a_rest_deactivation_ends_a_login_session_on_another_instance(harness_factory, mysql_database_url):
    a = await harness_factory(database_url=mysql_database_url)
    b = await harness_factory(database_url=mysql_database_url)
    user_id = await _account(a)
    tokens = await _logged_in(b, user_id)
    ws = await _socket(b, tokens["access_token"])
    bearer = {"Authorization": f"Bearer {tokens['access_token']}"}
    assert (await b.client.get("/api/v1/conversations", headers=bearer)).status == 200

    admin = issue_token(a.settings.jwt_secret_key, "revoking-admin", "admin")
    resp = await a.client.patch(f"/api/v1/users/{user_id}", json={"active": False},
                                headers={"Authorization": f"Bearer {admin}"})
    assert resp.status == 200
    assert await ws.closed(timeout=WITHIN_S) == CLOSE_DEACTIVATED
    assert (await b.client.get("/api/v1/conversations", headers=bearer)).status == 401
    resp = await b.client.post("/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert resp.status == 401

    # active again: it logs in again at once on the instance that did it
    resp = await a.client.patch(f"/api/v1/users/{user_id}", json={"active": True},
                                headers={"Authorization": f"Bearer {admin}"})
    assert resp.status == 200
    again = await _logged_in(a, user_id)
    assert (await a.client.get("/api/v1/conversations",
                               headers={"Authorization": f"Bearer {again['access_token']}"})).status == 200


async def test_the_cli_deactivation_closes_a_login_session(harness_factory, mysql_database_url, monkeypatch):
    from chat import cli

    h = await harness_factory(database_url=mysql_database_url)
    user_id = await _account(h)
    tokens = await _logged_in(h, user_id)
    ws = await _socket(h, tokens["access_token"])
    for name, value in {"DATABASE_URL": mysql_database_url, "REDIS_URL": redis_url(), "BUS_CHANNEL": BUS_CHANNEL,
                        "JWT_SECRET_KEY": h.settings.jwt_secret_key}.items():
        monkeypatch.setenv(name, value)
    assert await asyncio.to_thread(cli.main, ["users", "deactivate", user_id]) == 0
    assert await ws.closed(timeout=WITHIN_S) == CLOSE_DEACTIVATED
    resp = await h.client.post("/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert resp.status == 401


async def test_a_demoted_admin_is_refused_everywhere_and_a_refresh_gives_the_new_role(harness_factory,
                                                                                      mysql_database_url):
    a = await harness_factory(database_url=mysql_database_url)
    b = await harness_factory(database_url=mysql_database_url)
    user_id = await _account(a, "admin")
    tokens = await _logged_in(b, user_id)
    ws = await _socket(b, tokens["access_token"])
    bearer = {"Authorization": f"Bearer {tokens['access_token']}"}
    assert (await a.client.get("/api/v1/users", headers=bearer)).status == 200  # each instance caches: admin
    assert (await b.client.get("/api/v1/users", headers=bearer)).status == 200

    admin = issue_token(a.settings.jwt_secret_key, "revoking-admin", "admin")
    resp = await a.client.patch(f"/api/v1/users/{user_id}", json={"role": "agent"},
                                headers={"Authorization": f"Bearer {admin}"})
    assert resp.status == 200 and (await resp.json())["role"] == "agent"
    resp = await a.client.get("/api/v1/users", headers=bearer)  # the instance that changed it forgot at once
    assert resp.status == 401 and (await resp.json())["error"]["code"] == "unauthenticated"
    assert await ws.closed(timeout=WITHIN_S) == CLOSE_ROLE_CHANGED
    assert (await b.client.get("/api/v1/users", headers=bearer)).status == 401  # b forgot on the message

    resp = await b.client.post("/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert resp.status == 200
    fresh = await resp.json()
    assert verify_token(b.settings.jwt_verification_keys, fresh["access_token"]).role == "agent"
    new_bearer = {"Authorization": f"Bearer {fresh['access_token']}"}
    assert (await b.client.get("/api/v1/conversations", headers=new_bearer)).status == 200
    assert (await b.client.get("/api/v1/users", headers=new_bearer)).status == 403  # an agent now
    again = await _socket(a, fresh["access_token"])
    assert (await again.request("ping"))["type"] == "pong"
