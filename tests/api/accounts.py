"""What the account tests share: an admin, accounts made over REST, login calls."""

from __future__ import annotations

from typing import Any

from chat.auth import Identity
from tests.api.support import Api, uid

ADMIN = Identity("accounts-admin", "admin")  # a token-only admin that creates the accounts
PASSWORD = "correct horse battery staple"


async def make_account(api: Api, role: str = "agent", password: str | None = PASSWORD, **fields: Any) -> str:
    """A new account (over REST, as ADMIN); its id."""
    user_id = fields.pop("id", None) or uid(role)
    body = {"id": user_id, "role": role, **fields}
    if password is not None:
        body["password"] = password
    status, user = await api.call("POST", "/api/v1/users", as_=ADMIN, json=body)
    assert status == 201, user
    return user_id


async def login(api: Api, user_id: str, password: str = PASSWORD, **extra: Any) -> tuple[int, Any]:
    """POST /api/v1/auth/login."""
    return await api.call("POST", "/api/v1/auth/login", json={"user_id": user_id, "password": password, **extra})


async def refresh(api: Api, refresh_token: str) -> tuple[int, Any]:
    """POST /api/v1/auth/refresh with the token in the body."""
    return await api.call("POST", "/api/v1/auth/refresh", json={"refresh_token": refresh_token})


def bearer(token: str) -> dict[str, str]:
    """The Authorization header of an access token."""
    return {"Authorization": f"Bearer {token}"}
