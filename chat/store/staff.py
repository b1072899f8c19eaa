"""Users: every token holder the service has seen, and the agents among them."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple

from chat.store.db import Database, DuplicateKey, marks
from states.clock import now_ms

STAFF_ROLES = ("agent", "admin")
_IDS_PER_QUERY = 500


class StaffMember(NamedTuple):
    """An agent or admin known to the service."""

    id: str
    role: str
    active: bool
    max_chats: int | None


class Standing(NamedTuple):
    """What `users` says of a token holder: may its tokens be used, with which role, and from when (PROTOCOL 2.1)."""

    active: bool = True
    role: str | None = None  # an account with a password: the role its admins set; None: its tokens' role
    # the whole second of `tokens_after_ms` (its last deactivation or new password); None: every token counts
    tokens_after_s: int | None = None

    def admits(self, role: str) -> bool:
        """May a token with this role in?"""
        return self.active and self.role in (None, role)

    def predates(self, iat: float | None) -> bool:
        """Was a token with this `iat` (None: it has none) issued before the account's tokens count from?
        `iat` has whole seconds, so the change's second is compared: a token issued in that second counts,
        whether just before the change or just after it (a login right after a new password must work)."""
        return self.tokens_after_s is not None and (iat is None or iat < self.tokens_after_s)


class Staff:
    """Every SQL statement on users."""

    def __init__(self, db: Database):
        self.db = db
        self._users = db.tables.users
        self._members = db.tables.team_members

    async def remember(self, user_id: str, role: str, name: str | None) -> None:
        """Record (or refresh) a token holder in `users` (agents must exist to be assigned); the role and
        name of an account that has a password are left as its admins set them."""
        now = now_ms()
        try:
            async with self.db.transaction() as tx:
                await tx.execute(
                    f"INSERT INTO {self._users} (id, role, name, active, created_ms, updated_ms) "
                    "VALUES (%s, %s, %s, 1, %s, %s)",
                    (user_id, role, name, now, now),
                )
        except DuplicateKey:
            # an account with a password is managed by its admins (chat/store/accounts.py): an older
            # token of it (say, from before a demotion) must not write its role back
            await self.db.execute(
                f"UPDATE {self._users} SET role = %s, name = COALESCE(%s, name), updated_ms = %s "
                "WHERE id = %s AND password_hash IS NULL",
                (role, name, now, user_id),
            )

    async def agent_exists(self, agent_id: str) -> bool:
        """Is there an active agent (or admin) with this id?"""
        row = await self.db.fetchone(
            f"SELECT 1 FROM {self._users} WHERE id = %s AND role IN (%s, %s) AND active = 1", (agent_id, *STAFF_ROLES)
        )
        return row is not None

    async def list_staff(self) -> list[StaffMember]:
        """Every agent and admin known to the service, by id."""
        rows = await self.db.fetchall(
            f"SELECT id, role, active, max_chats FROM {self._users} WHERE role IN (%s, %s) ORDER BY id", STAFF_ROLES
        )
        return [StaffMember(r[0], r[1], bool(r[2]), int(r[3]) if r[3] is not None else None) for r in rows]

    async def teams_of(self, user_id: str) -> list[str]:
        """The teams a user is a member of (team_members)."""
        rows = await self.db.fetchall(f"SELECT team_id FROM {self._members} WHERE user_id = %s", (user_id,))
        return [r[0] for r in rows]

    async def max_chats_of(self, user_id: str) -> int | None:
        """A user's own capacity, when one is set."""
        row = await self.db.fetchone(f"SELECT max_chats FROM {self._users} WHERE id = %s", (user_id,))
        return int(row[0]) if row and row[0] is not None else None

    async def standing(self, user_id: str) -> Standing:
        """What `users` says of a token holder (one with no row is active, its token's role taken)."""
        row = await self.db.fetchone(f"SELECT {_STANDING} FROM {self._users} WHERE id = %s", (user_id,))
        return Standing() if row is None else _standing(row)

    async def changed_among(self, sockets: Mapping[str, Iterable[tuple[str, float | None]]]) -> dict[str, Standing]:
        """The users among these (id -> the role and `iat` of each of its open sockets' tokens) whose account
        no longer admits one of those tokens (deactivated, another role, or a token from before its last
        deactivation or new password): their standing, by id."""
        ids, found = list(sockets), dict[str, Standing]()
        for start in range(0, len(ids), _IDS_PER_QUERY):
            chunk = ids[start:start + _IDS_PER_QUERY]
            for user_id, *row in await self.db.fetchall(
                    f"SELECT id, {_STANDING} FROM {self._users} WHERE id IN ({marks(chunk)})", chunk):
                standing = _standing(row)
                if not all(standing.admits(role) and not standing.predates(iat) for role, iat in sockets[user_id]):
                    found[user_id] = standing
        return found


_STANDING = "active, role, password_hash IS NULL, tokens_after_ms"


def _standing(row: Sequence[Any]) -> Standing:
    """The columns of _STANDING as a Standing."""
    return Standing(bool(row[0]), None if row[2] else row[1], None if row[3] is None else int(row[3]) // 1000)
