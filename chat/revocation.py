"""Taking an account back everywhere (PROTOCOL 2.1). Once a user is deactivated in SQL, given a new
password, or its account given another role, the access tokens it no longer admits (all of a deactivated
user's; those issued before its last deactivation or new password, by their `iat`, also once it is active
again; a role change: those naming the old role) get 401 on REST within ACTIVE_CHECK_S (a cached look at
`users`), no new socket with one authenticates, and the open sockets with one close on every instance:
with 4403 for a deactivated account (the client stops), with 4401 for the others (as for an expired
token: the client gets a new token, by a refresh or a login, and reconnects). At once through the bus,
and within ACTIVE_CHECK_S by each instance's own look at its staff sockets should that message be lost
(Redis down at the moment, or the CLI beside an embedded-mode server, which shares no Redis).

SQL holds the truth (`users.active`, `users.role`, `users.tokens_after_ms`), written before anything is
announced; the bus only makes it felt sooner. Only an account with a password has its role compared: a
token-only user's role is its tokens' (they write it into `users`), and a token holder with no row in
`users` is admitted.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from redis.exceptions import RedisError

from chat.auth import Identity
from chat.bus import AccountChanged, Bus, Interest, publish_from_outside
from chat.errors import ChatError, Forbidden, Unauthenticated, log_failure
from chat.hub import Hub
from chat.redis_client import create_redis
from chat.settings import Settings
from chat.store.staff import Staff, Standing

log = logging.getLogger(__name__)

CLOSE_DEACTIVATED = 4403
CLOSE_ROLE_CHANGED = 4401  # the code of an expired token (PROTOCOL 2.3): a refreshed token is good again
CLOSE_TOKEN_REVOKED = 4401  # the same: a new token (from a login, the refresh tokens being revoked too) is good
_PRUNE_AT = 10_000  # cached answers kept before the expired ones are dropped


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why `users` no longer lets a staff token in: how its sockets close and what the client is told."""

    code: int  # the close code
    reason: str  # the close reason
    error: type[ChatError]  # the error frame of a socket refused at authentication (REST: always 401)
    message: str


DEACTIVATED = Refusal(CLOSE_DEACTIVATED, "account deactivated", Forbidden, "this account is deactivated")
ROLE_CHANGED = Refusal(CLOSE_ROLE_CHANGED, "role changed", Unauthenticated,
                       "this account's role changed: get a new token")
TOKEN_REVOKED = Refusal(CLOSE_TOKEN_REVOKED, "token revoked", Unauthenticated,
                        "this token was issued before the account was deactivated or given a new password: "
                        "log in again")


def refused(standing: Standing, identity: Identity) -> Refusal | None:
    """Why this token holder is not let in any more (None: it is; customers have no account here)."""
    if not identity.is_agent:
        return None
    if not standing.active:
        return DEACTIVATED
    if standing.predates(identity.iat):
        return TOKEN_REVOKED
    return None if standing.admits(identity.role) else ROLE_CHANGED


def _refused_for(standing: Standing, why: Refusal) -> Callable[[Identity], bool]:
    """Picks the sockets whose token the standing refuses for this reason."""
    return lambda identity: refused(standing, identity) is why


class Standings:
    """Each user's standing in `users` (active, the role an account's tokens must name, the second its
    tokens count from), each answer kept for at most `ttl_s` (a REST call per request must not cost a
    query per request)."""

    def __init__(self, staff: Staff, ttl_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._staff = staff
        self._ttl_s = ttl_s
        self._clock = clock
        self._answers: dict[str, tuple[Standing, float]] = {}
        self._forgotten: dict[str, int] = {}  # how often each user was forgotten: a read begun before is not kept

    async def check(self, user_id: str) -> Standing:
        """The user's standing (a token holder unknown to `users` is active, with any role)."""
        now = self._clock()
        cached = self._answers.get(user_id)
        if cached is not None and cached[1] > now:
            return cached[0]
        forgotten = self._forgotten.get(user_id, 0)
        standing = await self._staff.standing(user_id)
        if forgotten != self._forgotten.get(user_id, 0):  # changed while it was read: not to be kept
            return standing
        if len(self._answers) >= _PRUNE_AT:
            self._answers = {k: v for k, v in self._answers.items() if v[1] > now}
        self._answers[user_id] = (standing, now + self._ttl_s)
        return standing

    def forget(self, user_id: str) -> None:
        """The user changed: ask SQL next time (and keep no answer of a read already under way)."""
        self._answers.pop(user_id, None)
        self._forgotten[user_id] = self._forgotten.get(user_id, 0) + 1


class AccountGuard:
    """This instance's side: refuse the tokens `users` no longer admits, close their sockets here."""

    def __init__(self, standings: Standings, hub: Hub, staff: Staff) -> None:
        self.standings = standings
        self._hub = hub
        self._staff = staff
        self._rechecks: set[asyncio.Task[None]] = set()

    async def refusal(self, identity: Identity) -> Refusal | None:
        """Why this token holder may not come in (None: it may). Only staff have accounts here, so a
        customer costs no query."""
        if not identity.is_agent:
            return None
        return refused(await self.standings.check(identity.user_id), identity)

    def apply(self, message: AccountChanged) -> None:
        """An account changed (on any instance): forget its cached answer, and with staff sockets of it
        here, read it again and close those it no longer admits."""
        user_id = message.user_id
        self.standings.forget(user_id)
        if any(peer.identity.is_agent for peer in self._hub.sockets_of(user_id)):
            task = asyncio.create_task(self._recheck(user_id), name=f"account-{user_id}")
            self._rechecks.add(task)
            task.add_done_callback(self._rechecks.discard)

    async def settled(self) -> None:
        """Wait until every look at an account that a message began here is done (tests)."""
        while self._rechecks:
            await asyncio.gather(*self._rechecks, return_exceptions=True)

    async def _recheck(self, user_id: str) -> None:
        try:
            self._close(user_id, await self.standings.check(user_id))
        except Exception as exc:  # the sweep looks again within ACTIVE_CHECK_S
            log_failure(log, exc, "could not read account %s again", user_id)

    async def sweep(self) -> None:
        """Close the sockets of staff members deactivated, given a new password or another role, without
        this instance hearing of it."""
        sockets = self._hub.staff_tokens()
        if not sockets:
            return
        for user_id, standing in (await self._staff.changed_among(sockets)).items():
            self.standings.forget(user_id)
            self._close(user_id, standing)

    def _close(self, user_id: str, standing: Standing) -> None:
        """Close the user's sockets here that the standing refuses, each with the code of its refusal."""
        for why in (DEACTIVATED, TOKEN_REVOKED, ROLE_CHANGED):
            closed = self._hub.close_user(user_id, why.code, why.reason, _refused_for(standing, why))
            if closed:
                log.info("account %s: %s: closed %d socket(s)", user_id, why.reason, closed)


class Revocation:
    """What a change of an account's `active`, role or password calls after its SQL commit (REST; the
    CLI uses announce_changed)."""

    def __init__(self, bus: Bus, guard: AccountGuard) -> None:
        self._bus = bus
        self._guard = guard

    async def changed(self, user_id: str) -> None:
        """Every instance (this one at once) forgets what it cached of the user and closes the sockets
        the account no longer admits."""
        self._guard.standings.forget(user_id)
        try:
            await self._bus.publish(AccountChanged(user_id))  # delivered here at once, then to the others
        except RedisError as exc:  # the others' sweeps close them within ACTIVE_CHECK_S
            log.warning("could not announce the change of account %s: %s", user_id, type(exc).__name__)


async def announce_changed(settings: Settings, user_id: str) -> bool:
    """Tell the running instances from outside (the CLI); False when there is no shared Redis to
    tell them through (the embedded mode) or it does not answer: their sweeps then close the sockets
    within ACTIVE_CHECK_S."""
    if settings.redis is None:
        return False
    redis = create_redis(settings, client_name="chat-api-cli")
    try:
        await publish_from_outside(redis, Interest(settings.bus_channel), AccountChanged(user_id))
    except RedisError as exc:
        log.warning("could not announce the change of account %s: %s", user_id, type(exc).__name__)
        return False
    finally:
        await redis.aclose()
    return True
