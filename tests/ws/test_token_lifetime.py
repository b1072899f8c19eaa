"""PROTOCOL 2.3: a socket's identity expires with its token (close 4401 at `exp`) unless an `auth`
frame brought a fresher token for the same user and role. The session's clock is injected, so
the unit tests decide how far away `exp` is; the app tests use a token 1-2 s from expiry."""

import asyncio
import time

import pytest

from chat import keys
from chat.auth import issue_token, verify_token
from chat.revocation import AccountGuard
from chat.settings import Settings
from chat.ws.connection import Connection, Outbox
from chat.ws.registry import Registry
from chat.ws.session import Services, Session
from tests.ws.fakes import FakeSocket

SETTINGS = Settings()
LEFT_S = 0.02  # how long the session's clock says the first token has left


def _token(sub: str = "cust-1", role: str = "customer", ttl_s: int = 600) -> str:
    return issue_token(SETTINGS.jwt_secret_key, sub, role, ttl_s=ttl_s)


async def _session(token: str) -> tuple[Session, FakeSocket]:
    identity = verify_token(SETTINGS.jwt_secret_key, token)
    socket = FakeSocket()
    conn = Connection(socket, SETTINGS, Outbox())  # type: ignore[arg-type]
    accounts = AccountGuard(None, None, None)  # type: ignore[arg-type]  # a customer's token: `users` is not read
    services = Services(SETTINGS, None, None, Registry(), None, accounts, None, clock=lambda: identity.exp - LEFT_S)  # type: ignore[arg-type]
    return Session(conn, identity, services), socket


async def _past(loop_time: float) -> None:
    """Wait until the event loop has reached `loop_time` (an event, not a poll)."""
    reached = asyncio.Event()
    asyncio.get_running_loop().call_at(loop_time, reached.set)
    await reached.wait()


async def test_the_socket_is_closed_4401_at_exp():
    session, socket = await _session(_token())
    assert session.expires_at is not None
    assert await asyncio.wait_for(socket.closed.wait(), 2.0)
    assert socket.close_code == 4401


async def test_a_fresher_token_for_the_same_user_and_role_moves_the_expiry():
    session, socket = await _session(_token())
    first_deadline = session.expires_at
    fresh = _token(ttl_s=3600)
    await session.handle_text(f'{{"type": "auth", "id": 1, "token": "{fresh}"}}')
    reply = await socket.next_frame()
    exp = verify_token(SETTINGS.jwt_secret_key, fresh).exp
    assert reply == {"id": 1, "type": "result", "data": {"user_id": "cust-1", "role": "customer", "exp": exp}}
    assert session.identity.exp == exp and session.expires_at > first_deadline + 60
    await _past(first_deadline + LEFT_S)
    assert not socket.closed.is_set()


@pytest.mark.parametrize("sub, role, code", [("cust-2", "customer", "invalid"), ("cust-1", "agent", "invalid")])
async def test_a_token_for_another_user_or_role_is_invalid_and_changes_nothing(sub, role, code):
    session, socket = await _session(_token())
    deadline, identity = session.expires_at, session.identity
    await session.handle_text(f'{{"type": "auth", "id": 2, "token": "{_token(sub, role, 3600)}"}}')
    reply = await socket.next_frame()
    assert reply["type"] == "error" and reply["code"] == code
    assert (session.expires_at, session.identity) == (deadline, identity)
    assert await asyncio.wait_for(socket.closed.wait(), 2.0) and socket.close_code == 4401  # the old exp holds


async def test_a_bad_refresh_token_is_unauthenticated_and_the_socket_keeps_its_token():
    session, socket = await _session(_token())
    deadline = session.expires_at
    await session.handle_text('{"type": "auth", "id": 3, "token": "not-a-jwt"}')
    reply = await socket.next_frame()
    assert reply["type"] == "error" and reply["code"] == "unauthenticated"
    assert "not-a-jwt" not in reply["message"]
    assert session.expires_at == deadline and not socket.closed.is_set()


async def test_a_stopped_session_does_not_close_at_exp():
    session, socket = await _session(_token())
    deadline = session.expires_at
    session.stop()
    assert session.expires_at is None
    await _past(deadline + LEFT_S)
    assert not socket.closed.is_set()


# --- through the app ------------------------------------------------------------------------------


async def test_the_app_closes_a_socket_4401_when_its_url_token_expires(harness):
    ws = await harness.connect("cust-1", ttl_s=2)  # exp is 1 to 2 s away
    assert await ws.closed(timeout=5) == 4401


async def test_the_app_answers_a_refresh_with_the_new_exp(harness):
    ws = await harness.connect("cust-1", ttl_s=60)
    fresh = harness.token("cust-1", ttl_s=3600)
    data = await ws.ok("auth", token=fresh)
    assert data == {"user_id": "cust-1", "role": "customer", "exp": verify_token(harness.settings.jwt_secret_key,
                                                                                  fresh).exp}
    (session,) = harness.app[keys.HUB].sockets_of("cust-1")
    assert session.identity.exp == data["exp"]
    assert session.expires_at - asyncio.get_running_loop().time() > 3000
    assert abs(data["exp"] - time.time() - 3600) < 5
