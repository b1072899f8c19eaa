"""At DEBUG, no log line of a login, refresh and logout flow holds a password, a hash or a token."""

from __future__ import annotations

import logging

from tests.api.accounts import ADMIN, PASSWORD, make_account


async def test_no_password_hash_or_token_in_any_log_line(api, caplog):
    caplog.set_level(logging.DEBUG)
    wrong = "wrong-password-for-the-log-test"
    user_id = await make_account(api, "admin")
    status, _ = await api.call("POST", "/api/v1/auth/login", json={"user_id": user_id, "password": wrong})
    assert status == 401
    secrets = [PASSWORD, wrong]
    _, first = await api.call("POST", "/api/v1/auth/login", json={"user_id": user_id, "password": PASSWORD})
    _, second = await api.call("POST", "/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})
    ws = await api.client.ws_connect(f"/ws?token={second['access_token']}")  # the access log masks ?token=
    await ws.send_json({"type": "ping"})
    assert (await ws.receive_json())["type"] == "pong"
    await ws.close()
    status, _ = await api.call("POST", "/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert status == 401  # the reuse is logged as a warning: without the token
    resp = await api.client.post("/api/v1/auth/login", json={"user_id": user_id, "password": PASSWORD,
                                                             "cookie": True})
    cookie = resp.cookies["chat_refresh"].value
    third = await resp.json()
    await api.client.post("/api/v1/auth/logout", headers={"Cookie": f"chat_refresh={cookie}"})
    status, _ = await api.call("PATCH", f"/api/v1/users/{user_id}", as_=ADMIN, json={"password": "another one"})
    assert status == 200
    (password_hash,) = await api.store.db.fetchone(
        f"SELECT password_hash FROM {api.store.db.tables.users} WHERE id = %s", (user_id,))
    secrets += ["another one", password_hash, cookie, third["access_token"]]
    for tokens in (first, second):
        secrets += [tokens["access_token"], tokens["refresh_token"]]
    secrets.append(password_hash.rsplit("$", 1)[-1])  # the digest alone

    lines = [record.getMessage() for record in caplog.records] + caplog.text.splitlines()
    assert any("/api/v1/auth/login" in line for line in lines), "the access log was not captured"
    assert any("login" in line and record.levelno == logging.INFO for record in caplog.records
               for line in [record.getMessage()])
    for secret in secrets:
        assert not [line for line in lines if secret in line], "a secret reached the log"
