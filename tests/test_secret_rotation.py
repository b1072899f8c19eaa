"""Rotating JWT_SECRET_KEY (PROTOCOL 2): after the switch, tokens signed with the previous secret
still work on REST and on every WebSocket way in, one signed with an unknown key does not, and every
new token is signed with the current secret alone."""

import ast
from pathlib import Path

import jwt
import pytest
from aiohttp import WSServerHandshakeError

from chat.auth import AuthError, issue_token, verify_token
from tests.test_cli import run
from tests.wsclient import WS

CURRENT = "current-secret-0123456789abcdef012345"
PREVIOUS = "previous-secret-0123456789abcdef01234"
UNKNOWN = "unknown-secret-0123456789abcdef0123456"


@pytest.fixture
async def rotated(harness_factory):
    return await harness_factory(jwt_secret_key=CURRENT, jwt_previous_secret_keys=(PREVIOUS,))


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_rest_accepts_the_previous_secret_and_refuses_an_unknown_one(rotated):
    for key in (CURRENT, PREVIOUS):
        resp = await rotated.client.get("/api/v1/agents", headers=_bearer(issue_token(key, "admin-r", "admin")))
        assert resp.status == 200, key
    resp = await rotated.client.get("/api/v1/agents", headers=_bearer(issue_token(UNKNOWN, "admin-r", "admin")))
    assert resp.status == 401
    assert (await resp.json())["error"]["code"] == "unauthenticated"


async def test_the_url_token_handshake_accepts_the_previous_secret_only(rotated):
    ws = WS(await rotated.client.ws_connect(f"/ws?token={issue_token(PREVIOUS, 'cust-r', 'customer')}"))
    assert (await ws.request("ping"))["type"] == "pong"
    with pytest.raises(WSServerHandshakeError) as err:
        await rotated.client.ws_connect(f"/ws?token={issue_token(UNKNOWN, 'cust-r', 'customer')}")
    assert err.value.status == 401


async def test_the_auth_frame_and_the_refresh_on_an_open_socket_accept_the_previous_secret(rotated):
    ws = WS(await rotated.client.ws_connect("/ws"))
    data = await ws.ok("auth", token=issue_token(PREVIOUS, "cust-r", "customer", ttl_s=60))
    assert data["user_id"] == "cust-r"
    fresher = issue_token(PREVIOUS, "cust-r", "customer", ttl_s=600)
    assert (await ws.ok("auth", token=fresher))["exp"] == verify_token(PREVIOUS, fresher).exp
    refused = await ws.request("auth", token=issue_token(UNKNOWN, "cust-r", "customer", ttl_s=900))
    assert refused["type"] == "error" and refused["code"] == "unauthenticated"

    other = WS(await rotated.client.ws_connect("/ws"))
    refused = await other.request("auth", token=issue_token(UNKNOWN, "cust-r", "customer"))
    assert refused["type"] == "error" and refused["code"] == "unauthenticated"
    assert await other.closed() == 4401


def test_the_cli_signs_with_the_current_secret_only(tmp_path):
    proc = run("token", "--sub", "agent-r", "--role", "agent",
               env_extra={"JWT_SECRET_KEY": CURRENT, "JWT_PREVIOUS_SECRET_KEYS": PREVIOUS,
                          "CHAT_DATA_DIR": str(tmp_path)})
    assert proc.returncode == 0, proc.stderr
    token = proc.stdout.strip()
    assert verify_token((CURRENT,), token).user_id == "agent-r"
    with pytest.raises(AuthError, match="Signature"):
        verify_token((PREVIOUS,), token)
    assert jwt.get_unverified_header(token)["alg"] == "HS256"


def test_every_token_the_service_issues_is_signed_with_the_current_secret():
    """No code path can sign with a previous key: each issue_token call in chat/ names JWT_SECRET_KEY."""
    calls = []
    for path in sorted((Path(__file__).resolve().parent.parent / "chat").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", "")) == "issue_token":
                calls.append((path.name, ast.unparse(node.args[0])))
    assert len(calls) >= 4  # the CLI (twice), login, visitors
    assert all(secret.endswith(".jwt_secret_key") for _, secret in calls), calls
