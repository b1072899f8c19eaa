"""What the REST tests share that is not a fixture: ids, the Api client, the error check."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from chat import keys
from chat.auth import Identity, issue_token
from chat.conversations import Operations
from chat.store import Store

LISTER = Identity("admin-lister", "admin")  # the admin of the `lister` fixture


def uid(prefix: str) -> str:
    """A fresh id (the MariaDB database is shared by every test of the run)."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


@dataclass
class Api:
    """An app on the real servers and a client, with a token per identity."""

    app: Any
    client: Any

    def token(self, identity: Identity) -> str:
        return issue_token(self.app[keys.SETTINGS].jwt_secret_key, identity.user_id, identity.role)

    async def call(self, method: str, path: str, *, as_: Identity | None = None, json: Any = None,
                   data: Any = None, headers: dict[str, str] | None = None) -> tuple[int, Any]:
        headers = dict(headers or {})
        if as_ is not None:
            headers["Authorization"] = f"Bearer {self.token(as_)}"
        resp = await self.client.request(method, path, json=json, data=data, headers=headers)
        body = await resp.json() if resp.content_type == "application/json" else await resp.text()
        return resp.status, body

    @property
    def ops(self) -> Operations:
        return self.app[keys.OPERATIONS]

    @property
    def store(self) -> Store:
        return self.app[keys.STORE]


def assert_error(status: int, body: Any, expected_status: int, code: str) -> None:
    assert status == expected_status, body
    assert isinstance(body, dict) and set(body) == {"error"}, body
    assert body["error"]["code"] == code and isinstance(body["error"]["message"], str), body
