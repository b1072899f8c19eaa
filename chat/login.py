"""Staff login (PROTOCOL 2.1): a password for a short access token and a rotating refresh token.

Failed logins are counted in Redis per user id and per client address (sliding windows, so the
limits hold across instances). An attempt takes its slot in both windows before the password is
checked, so concurrent guesses never pass the limit; a successful login gives its slots back. A
wrong user id, a wrong password, a deactivated account and one without a password are the same
401, at the same cost (chat.passwords verifies a dummy hash when there is nothing to verify).
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

from chat.auth import issue_token
from chat.errors import RateLimited, Unauthenticated
from chat.passwords import hash_password, needs_rehash, verify_password
from chat.quotas import SlidingWindow
from chat.settings import Settings
from chat.store import Store
from chat.store.accounts import Refreshed, User
from states import redis_keys
from states.clock import now_ms
from states.ids import new_id

log = logging.getLogger(__name__)

BAD_CREDENTIALS = "wrong user id or password"
BAD_REFRESH_TOKEN = "the refresh token is invalid, expired or revoked; log in again"


def token_digest(refresh_token: str) -> str:
    """What the store keeps of a refresh token: its hex SHA-256."""
    return hashlib.sha256(refresh_token.encode()).hexdigest()


def new_refresh_token() -> str:
    """A refresh token: 256 random bits, URL-safe."""
    return secrets.token_urlsafe(32)


@dataclass(frozen=True)
class Tokens:
    """What a login or a refresh answers."""

    access_token: str
    expires_in: int
    refresh_token: str
    refresh_expires_in: int
    user: User

    def body(self, *, with_refresh_token: bool = True) -> dict[str, Any]:
        """The JSON body (the refresh token left out when it travels in a cookie)."""
        body: dict[str, Any] = {"access_token": self.access_token, "token_type": "Bearer",
                                "expires_in": self.expires_in}
        if with_refresh_token:
            body["refresh_token"] = self.refresh_token
        body["user"] = self.user
        return body


class Login:
    """Log in, refresh, log out."""

    def __init__(self, store: Store, redis: Redis, settings: Settings) -> None:
        self.store = store
        self.settings = settings
        self.by_user = SlidingWindow(redis, settings.login_failures_per_account, settings.login_failure_window_s)
        self.by_address = SlidingWindow(redis, settings.login_failures_per_address, settings.login_failure_window_s)

    async def login(self, user_id: str, password: str, address: str) -> Tokens:
        """Tokens for an active agent or admin whose password matches; Unauthenticated (401) or RateLimited (429)."""
        user_key, address_key = redis_keys.login_failures_of_user(user_id), redis_keys.login_failures_of_address(
            address)
        user_slot = await self.by_user.take(user_key)
        if user_slot.member is None:
            log.warning("login refused: too many failed logins for one user id")
            raise RateLimited("too many failed logins for this user; try again later",
                              retry_after_s=user_slot.retry_after_s)
        address_slot = await self.by_address.take(address_key)
        if address_slot.member is None:
            await self.by_user.give_back(user_key, user_slot.member)
            log.warning("login refused: too many failed logins from one address")
            raise RateLimited("too many failed logins from this address; try again later",
                              retry_after_s=address_slot.retry_after_s)
        credentials = await self.store.accounts.credentials(user_id)
        password_hash = credentials.password_hash if credentials and credentials.active else None
        if not await verify_password(password_hash, password):
            log.info("login failed")  # which of the reasons is not logged either: the caller is told nothing more
            raise Unauthenticated(BAD_CREDENTIALS)
        assert password_hash is not None  # verify_password is False without one
        await self.by_user.give_back(user_key, user_slot.member)
        await self.by_address.give_back(address_key, address_slot.member)
        checked = await self._renewed(user_id, password_hash, password)
        refresh_token = new_refresh_token()
        if checked is None or not await self.store.accounts.add_refresh(
                token_digest(refresh_token), new_id(), user_id, now_ms() + self.settings.refresh_token_ttl_s * 1000,
                checked):
            log.info("login refused: the password changed (or the account was deactivated) while it was checked")
            raise Unauthenticated(BAD_CREDENTIALS)
        log.info("login: %s", user_id)
        return await self._tokens(user_id, refresh_token)

    async def _renewed(self, user_id: str, password_hash: str, password: str) -> str | None:
        """The hash the account must still have when the session is stored: this one, or its renewal when it
        was made with older parameters (renewed by a login at the same moment: the one stored then, if it
        holds the password; None when it no longer does)."""
        if not needs_rehash(password_hash):
            return password_hash
        renewed = await hash_password(password)
        if await self.store.accounts.rehash(user_id, password_hash, renewed):
            return renewed
        now = await self.store.accounts.credentials(user_id)
        current = now.password_hash if now and now.active else None
        return current if current and await verify_password(current, password) else None

    async def refresh(self, refresh_token: str) -> Tokens:
        """A new pair for a good refresh token (which is used up); Unauthenticated otherwise. A used
        token presented again revokes every token of its login."""
        successor = new_refresh_token()
        rotation = await self.store.accounts.rotate(token_digest(refresh_token), token_digest(successor),
                                                    now_ms() + self.settings.refresh_token_ttl_s * 1000)
        if rotation.outcome is Refreshed.REUSED:
            log.warning("a used refresh token was presented again: its session is revoked")
        if rotation.user_id is None:
            raise Unauthenticated(BAD_REFRESH_TOKEN)
        return await self._tokens(rotation.user_id, successor)

    async def logout(self, refresh_token: str) -> None:
        """Revoke the session of a refresh token (every token rotated from its login); an unknown one is no error."""
        await self.store.accounts.revoke_session(token_digest(refresh_token))

    async def _tokens(self, user_id: str, refresh_token: str) -> Tokens:
        user = await self.store.accounts.get(user_id)
        if user is None:  # removed between the check and now
            raise Unauthenticated(BAD_CREDENTIALS)
        access_token = issue_token(self.settings.jwt_secret_key, user_id, user["role"],
                                   ttl_s=self.settings.access_token_ttl_s, name=user["name"], teams=user["teams"])
        return Tokens(access_token, self.settings.access_token_ttl_s, refresh_token,
                      self.settings.refresh_token_ttl_s, user)
