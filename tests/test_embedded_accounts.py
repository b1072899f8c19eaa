"""The embedded mode's first admin and agent: made once, printed in the banner, and their banner
credentials log in; a changed password is not printed again."""

from __future__ import annotations

import re
import stat

from chat import keys
from chat.app import create_app
from chat.cli import _banner
from chat.embedded_accounts import FILE_NAME, ensure_first_accounts

LINE = re.compile(r"^\s+(admin|agent)\s+user id (\S+)\s+password (.*)$", re.M)


def _credentials(banner: str) -> dict[str, tuple[str, str]]:
    """{role: (user id, what follows "password")} as the banner prints them."""
    return {role: (user_id, rest) for role, user_id, rest in LINE.findall(banner)}


async def _login(client, user_id: str, password: str):
    resp = await client.post("/api/v1/auth/login", json={"user_id": user_id, "password": password})
    return resp.status, await resp.json()


async def test_the_banner_credentials_log_in_and_a_changed_password_is_not_shown(make_settings, aiohttp_client):
    settings = make_settings(embedded=True)
    first = await ensure_first_accounts(settings)
    banner = _banner(settings, "0.0.0.0", 8000, first)
    assert "http://127.0.0.1:8000/console/" in banner
    shown = _credentials(banner)
    assert set(shown) == {"admin", "agent"} and shown["admin"][0] == "admin" and shown["agent"][0] == "agent"
    kept = settings.data_dir / FILE_NAME
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600

    # a later start prints the same ones, and makes nothing new
    again = await ensure_first_accounts(settings)
    assert _credentials(_banner(settings, "0.0.0.0", 8000, again)) == shown

    app = create_app(settings)
    client = await aiohttp_client(app)
    tokens = {}
    for role, (user_id, password) in shown.items():
        status, body = await _login(client, user_id, password)
        assert status == 200 and body["user"]["role"] == role, body
        tokens[role] = body["access_token"]

    # the agent's password changed (over REST, by the admin): the banner says so, the admin's still shows
    resp = await client.patch("/api/v1/users/agent", json={"password": "my own password"},
                              headers={"Authorization": f"Bearer {tokens['admin']}"})
    assert resp.status == 200
    later = await ensure_first_accounts(settings)
    text = _banner(settings, "0.0.0.0", 8000, later)
    assert "agent    user id agent    password changed since the first start (not shown)" in text
    assert shown["agent"][1] not in text
    assert _credentials(text)["admin"] == shown["admin"]
    assert app[keys.SETTINGS].embedded


async def test_serve_prints_credentials_that_log_in(tmp_path):
    """The real `chat-api serve` in the embedded mode: its banner's admin logs in over HTTP."""
    import os
    import sys

    import aiohttp

    from tests.faults.servers import free_port
    from tests.test_serve_workers import Supervisor

    port = free_port()
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": os.environ.get("PYTHONPATH", ""),
           "CHAT_DATA_DIR": str(tmp_path / "data"), "LOG_FORMAT": "text"}
    server = Supervisor([sys.executable, "-m", "chat", "serve", "--host", "127.0.0.1", "--port", str(port)], env)
    try:
        server.wait_for(lambda lines: any("Running on" in line for line in lines))
        shown = _credentials("\n".join(server.lines))
        async with aiohttp.ClientSession() as session:
            for role, (user_id, password) in shown.items():
                async with session.post(f"http://127.0.0.1:{port}/api/v1/auth/login",
                                        json={"user_id": user_id, "password": password}) as resp:
                    assert resp.status == 200, await resp.text()
                    assert (await resp.json())["user"]["role"] == role
        assert set(shown) == {"admin", "agent"}
    finally:
        server.kill()
