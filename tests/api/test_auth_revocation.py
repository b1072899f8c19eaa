"""Deactivating an account (REST PATCH or `chat-api users deactivate`) reaches a session made by login
on another instance: its socket closes with 4403, its access token gets 401, its refresh token too, and
that access token stays refused once the account is active again. A new password ends the access tokens
issued before it (401, sockets closed with 4401). A role change does as well for the tokens naming the old
role (4401), and a refresh gives the new one."""

from __future__ import annotations

import asyncio
import io
import sys
import time

import jwt
import pytest

from chat import keys
from chat.auth import issue_token, verify_token
from chat.revocation import CLOSE_DEACTIVATED, CLOSE_ROLE_CHANGED, CLOSE_TOKEN_REVOKED
from tests.api.accounts import PASSWORD
from tests.api.support import uid
from tests.conftest import BUS_CHANNEL, redis_url
from tests.wsclient import WS

WITHIN_S = 5.0  # PROTOCOL 2.1


async def _logged_in(h, user_id: str, password: str = PASSWORD) -> dict:
    resp = await h.client.post("/api/v1/auth/login", json={"user_id": user_id, "password": password})
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


async def _signed_in_on_two(harness_factory, database_url: str, role: str = "agent"):
    """Two instances on one database; an account made on the first, signed in on the second with a socket:
    (a, b, user_id, tokens, the socket, the bearer header)."""
    a = await harness_factory(database_url=database_url)
    b = await harness_factory(database_url=database_url)
    user_id = await _account(a, role)
    tokens = await _logged_in(b, user_id)
    ws = await _socket(b, tokens["access_token"])
    return a, b, user_id, tokens, ws, {"Authorization": f"Bearer {tokens['access_token']}"}


async def _refused(h, access_token: str) -> None:
    """The token is 401 `unauthenticated` on REST, and a socket authenticating with it is closed with 4401."""
    resp = await h.client.get("/api/v1/conversations", headers={"Authorization": f"Bearer {access_token}"})
    assert resp.status == 401 and (await resp.json())["error"]["code"] == "unauthenticated"
    ws = WS(await h.client.ws_connect("/ws"))
    reply = await ws.request("auth", token=access_token)
    assert reply["type"] == "error" and reply["code"] == "unauthenticated"
    assert await ws.closed() == CLOSE_TOKEN_REVOKED


async def test_a_rest_deactivation_ends_a_login_session_on_another_instance(harness_factory, mysql_database_url,
                                                                            sim_clock):
    a, b, user_id, tokens, ws, bearer = await _signed_in_on_two(harness_factory, mysql_database_url)
    assert (await b.client.get("/api/v1/conversations", headers=bearer)).status == 200

    admin = issue_token(a.settings.jwt_secret_key, "revoking-admin", "admin")
    sim_clock.advance(1)  # the login's token is of an earlier second than the deactivation
    resp = await a.client.patch(f"/api/v1/users/{user_id}", json={"active": False},
                                headers={"Authorization": f"Bearer {admin}"})
    assert resp.status == 200
    assert await ws.closed(timeout=WITHIN_S) == CLOSE_DEACTIVATED
    assert (await b.client.get("/api/v1/conversations", headers=bearer)).status == 401
    resp = await b.client.post("/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert resp.status == 401

    # active again: it logs in again at once (in the second of the deactivation, too) on the instance that did it
    resp = await a.client.patch(f"/api/v1/users/{user_id}", json={"active": True},
                                headers={"Authorization": f"Bearer {admin}"})
    assert resp.status == 200
    again = await _logged_in(a, user_id)
    assert (await a.client.get("/api/v1/conversations",
                               headers={"Authorization": f"Bearer {again['access_token']}"})).status == 200
    await _socket(b, again["access_token"])
    for h in (a, b):  # but not with an access token from before the deactivation, on either instance
        await _refused(h, tokens["access_token"])


async def test_the_cli_deactivation_closes_a_login_session(harness_factory, mysql_database_url, monkeypatch,
                                                            sim_clock):
    from chat import cli

    h = await harness_factory(database_url=mysql_database_url)
    user_id = await _account(h)
    tokens = await _logged_in(h, user_id)
    ws = await _socket(h, tokens["access_token"])
    for name, value in {"DATABASE_URL": mysql_database_url, "REDIS_URL": redis_url(), "BUS_CHANNEL": BUS_CHANNEL,
                        "JWT_SECRET_KEY": h.settings.jwt_secret_key}.items():
        monkeypatch.setenv(name, value)
    sim_clock.advance(1)  # the login's token is of an earlier second than the deactivation
    assert await asyncio.to_thread(cli.main, ["users", "deactivate", user_id]) == 0
    assert await ws.closed(timeout=WITHIN_S) == CLOSE_DEACTIVATED
    resp = await h.client.post("/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert resp.status == 401
    assert await asyncio.to_thread(cli.main, ["users", "activate", user_id]) == 0
    h.app[keys.ACCOUNTS].standings.forget(user_id)  # `users activate` announces nothing: no cached answer
    await _refused(h, tokens["access_token"])


async def test_a_new_password_ends_the_access_tokens_issued_before_it(harness_factory, mysql_database_url, sim_clock):
    """PATCH on one instance: the older token is 401 and its socket closed (4401) on the other one too; a
    login with the new password works at once, in the same second as the change too."""
    a, b, user_id, tokens, ws, bearer = await _signed_in_on_two(harness_factory, mysql_database_url)
    assert (await b.client.get("/api/v1/conversations", headers=bearer)).status == 200  # b caches the answer

    admin = issue_token(a.settings.jwt_secret_key, "revoking-admin", "admin")
    sim_clock.advance(1)  # the login's token is of an earlier second than the change
    resp = await a.client.patch(f"/api/v1/users/{user_id}", json={"password": "a new password"},
                                headers={"Authorization": f"Bearer {admin}"})
    assert resp.status == 200
    assert await ws.closed(timeout=WITHIN_S) == CLOSE_TOKEN_REVOKED
    for h in (a, b):
        await _refused(h, tokens["access_token"])
    resp = await b.client.post("/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert resp.status == 401

    again = await _logged_in(b, user_id, "a new password")
    assert (await a.client.get("/api/v1/conversations",
                               headers={"Authorization": f"Bearer {again['access_token']}"})).status == 200
    await _socket(b, again["access_token"])


async def test_the_cli_passwd_ends_the_older_access_tokens_and_closes_their_sockets(harness_factory,
                                                                                    mysql_database_url, monkeypatch,
                                                                                    sim_clock):
    """`users passwd` announces the change, as `users deactivate` does: the instance hears of it at once (its
    own look, and its cached answer's end, are a minute away here)."""
    from chat import cli

    h = await harness_factory(database_url=mysql_database_url, active_check_s=60.0)
    user_id = await _account(h)
    tokens = await _logged_in(h, user_id)
    ws = await _socket(h, tokens["access_token"])
    bearer = {"Authorization": f"Bearer {tokens['access_token']}"}
    assert (await h.client.get("/api/v1/conversations", headers=bearer)).status == 200  # the answer is cached
    for name, value in {"DATABASE_URL": mysql_database_url, "REDIS_URL": redis_url(), "BUS_CHANNEL": BUS_CHANNEL,
                        "JWT_SECRET_KEY": h.settings.jwt_secret_key}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(sys, "stdin", io.StringIO("a new password\n"))
    sim_clock.advance(1)  # the login's token is of an earlier second than the change
    assert await asyncio.to_thread(cli.main, ["users", "passwd", user_id, "--password-stdin"]) == 0
    assert await ws.closed(timeout=WITHIN_S) == CLOSE_TOKEN_REVOKED  # announced: the cached answer is gone too
    await _refused(h, tokens["access_token"])
    again = await _logged_in(h, user_id, "a new password")
    await _socket(h, again["access_token"])


def _issued_at(h, user_id: str, role: str, iat: float | None) -> str:
    """A token issued at `iat` (None: without the claim), good for ten minutes."""
    claims: dict = {"sub": user_id, "role": role, "exp": int(time.time()) + 600}
    if iat is not None:
        claims["iat"] = iat
    return jwt.encode(claims, h.settings.jwt_secret_key, algorithm="HS256")


@pytest.mark.parametrize("changes", [[{"active": False}, {"active": True}], [{"password": "a new password"}]],
                         ids=["deactivated-and-reactivated", "new-password"])
async def test_a_token_of_the_changes_second_counts_one_of_the_second_before_does_not(harness, sim_clock,
                                                                                        changes):
    """`iat` has whole seconds: a token issued in the second of the change (just after it, say: a login) counts,
    one of an earlier second does not, and neither does a staff token without `iat` once its account has a
    change to compare with. Customers, and accounts never changed so, are not compared."""
    user_id = await _account(harness)
    second = sim_clock.ms // 1000 - 1
    sim_clock.ms = second * 1000 + 400  # the change happens 400 ms into its second
    admin = {"Authorization": f"Bearer {issue_token(harness.settings.jwt_secret_key, 'revoking-admin', 'admin')}"}
    for change in changes:
        assert (await harness.client.patch(f"/api/v1/users/{user_id}", json=change, headers=admin)).status == 200

    async def status(sub: str, iat: float | None, role: str = "agent", path: str = "/api/v1/conversations") -> int:
        headers = {"Authorization": f"Bearer {_issued_at(harness, sub, role, iat)}"}
        return (await harness.client.get(path, headers=headers)).status

    assert [await status(user_id, iat) for iat in (second, second + 0.999, second + 1)] == [200, 200, 200]
    assert [await status(user_id, iat) for iat in (second - 1, second - 0.001, None)] == [401, 401, 401]
    await _refused(harness, _issued_at(harness, user_id, "agent", second - 1))
    await _socket(harness, _issued_at(harness, user_id, "agent", second))
    assert await status(await _account(harness), None) == 200  # never deactivated nor given a new password
    assert await status(uid("cust"), None, "customer", "/api/v1/me/conversations") == 200


async def test_a_demoted_admin_is_refused_everywhere_and_a_refresh_gives_the_new_role(harness_factory,
                                                                                      mysql_database_url):
    a, b, user_id, tokens, ws, bearer = await _signed_in_on_two(harness_factory, mysql_database_url, "admin")
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
