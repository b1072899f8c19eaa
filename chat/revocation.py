"""Taking an account back everywhere (PROTOCOL 2.1): once a user is deactivated in SQL its access
tokens get 401 on REST within ACTIVE_CHECK_S (a cached look at `users.active`), no new socket of it
authenticates, and its open sockets close with 4403 on every instance: at once through the bus, and
within ACTIVE_CHECK_S by each instance's own look at its staff sockets should that message be lost
(Redis down at the moment, or the CLI beside an embedded-mode server, which shares no Redis).

SQL holds the truth (`users.active`), written before anything is announced; the bus only makes
it felt sooner.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from redis.exceptions import RedisError

from chat.auth import Identity
from chat.bus import Bus, Interest, UserDeactivated, publish_from_outside
from chat.hub import Hub
from chat.redis_client import create_redis
from chat.settings import Settings
from chat.store.staff import Staff

log = logging.getLogger(__name__)

CLOSE_DEACTIVATED = 4403
_PRUNE_AT = 10_000  # cached answers kept before the expired ones are dropped


class ActiveUsers:
    """`users.active`, each answer kept for at most `ttl_s` (a REST call per request must not cost a
    query per request)."""

    def __init__(self, staff: Staff, ttl_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._staff = staff
        self._ttl_s = ttl_s
        self._clock = clock
        self._answers: dict[str, tuple[bool, float]] = {}

    async def check(self, user_id: str) -> bool:
        """Is the user active (a token holder unknown to `users` is)?"""
        now = self._clock()
        cached = self._answers.get(user_id)
        if cached is not None and cached[1] > now:
            return cached[0]
        active = await self._staff.is_active(user_id)
        if len(self._answers) >= _PRUNE_AT:
            self._answers = {k: v for k, v in self._answers.items() if v[1] > now}
        self._answers[user_id] = (active, now + self._ttl_s)
        return active

    def forget(self, user_id: str) -> None:
        """The user changed: ask SQL next time."""
        self._answers.pop(user_id, None)


class AccountGuard:
    """This instance's side: refuse deactivated users, close their sockets here."""

    def __init__(self, active: ActiveUsers, hub: Hub, staff: Staff) -> None:
        self.active = active
        self._hub = hub
        self._staff = staff

    async def admits(self, identity: Identity) -> bool:
        """May this token holder in? Only staff accounts can be deactivated (customers have no account
        here), so a customer costs no query."""
        return not identity.is_agent or await self.active.check(identity.user_id)

    def apply(self, message: UserDeactivated) -> None:
        """A user was deactivated (on any instance): close its sockets here."""
        self.active.forget(message.user_id)
        self._close(message.user_id)

    async def sweep(self) -> None:
        """Close the sockets of staff members deactivated without this instance hearing of it."""
        users = self._hub.staff_users()
        if not users:
            return
        for user_id in await self._staff.inactive_among(users):
            self.active.forget(user_id)
            self._close(user_id)

    def _close(self, user_id: str) -> None:
        closed = self._hub.close_user(user_id, CLOSE_DEACTIVATED, "account deactivated")
        if closed:
            log.info("account %s deactivated: closed %d socket(s)", user_id, closed)


class Revocation:
    """What a deactivation calls after its SQL commit (REST; the CLI uses announce_deactivated)."""

    def __init__(self, bus: Bus, guard: AccountGuard) -> None:
        self._bus = bus
        self._guard = guard

    async def deactivated(self, user_id: str) -> None:
        """Close the user's sockets on every instance (this one included, at once)."""
        self._guard.active.forget(user_id)
        try:
            await self._bus.publish(UserDeactivated(user_id))  # delivered here at once, then to the others
        except RedisError as exc:  # the others' sweeps close them within ACTIVE_CHECK_S
            log.warning("could not announce the deactivation of %s: %s", user_id, type(exc).__name__)


async def announce_deactivated(settings: Settings, user_id: str) -> bool:
    """Tell the running instances from outside (the CLI); False when there is no shared Redis to
    tell them through (the embedded mode) or it does not answer: their sweeps then close the sockets
    within ACTIVE_CHECK_S."""
    if settings.redis is None:
        return False
    redis = create_redis(settings, client_name="chat-api-cli")
    try:
        await publish_from_outside(redis, Interest(settings.bus_channel), UserDeactivated(user_id))
    except RedisError as exc:
        log.warning("could not announce the deactivation of %s: %s", user_id, type(exc).__name__)
        return False
    finally:
        await redis.aclose()
    return True
