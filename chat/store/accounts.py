"""Staff accounts (PROTOCOL 2.1): the password hash in `users`, team memberships, and the rotating
refresh tokens in `refresh_tokens`.

A refresh token is stored only as the hex SHA-256 of its text, so a copy of the database logs no
one in. Every token rotated from one login shares a family id: a rotation marks the presented
token used and inserts its successor in one transaction, and presenting a used token again revokes
the whole family (it was stolen, or the client is confused: either way the session ends).
Deactivating a user or changing its password revokes its refresh tokens in the same transaction, and
sets `users.tokens_after_ms` to now there too: its access tokens issued before that second are refused
from then on, after a reactivation as well (chat/revocation.py).

Two rules hold inside the transaction of a change: a deactivated account joins no team (it keeps the
ones it is in), and, when the caller asks (REST; not the CLI, the way back in), the last active admin
stays one.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from chat import render
from chat.store.db import Database, DuplicateKey, Tx, marks
from chat.store.staff import STAFF_ROLES
from states.clock import now_ms

USER_FIELDS = ("id", "role", "name", "active", "max_chats", "created_at")
USER_COLUMNS = "id, role, name, active, max_chats, created_ms"
User = dict[str, Any]  # USER_FIELDS + teams + has_password (chat.api.users.UserOut documents it)
EDITABLE = ("role", "name", "active", "max_chats")


class Credentials(NamedTuple):
    """What a login checks: the role, whether the account is active, its hash (None: no password)."""

    role: str
    active: bool
    password_hash: str | None


class LastAdmin(Exception):
    """The change would leave no active admin; nothing of it was written."""


class InactiveJoins(Exception):
    """Teams were to be joined by an account that is, or is becoming, deactivated; nothing was written."""

    def __init__(self, teams: list[str]):
        super().__init__(f"a deactivated account joins no team: {', '.join(teams)}")
        self.teams = teams


class Refreshed(enum.Enum):
    """How presenting a refresh token ended."""

    ROTATED = "rotated"  # it was good: its successor is stored
    REUSED = "reused"  # it had been used before: its family is revoked now
    REFUSED = "refused"  # unknown, expired, revoked, or its user can no longer log in


@dataclass(frozen=True)
class Rotation:
    """The outcome of a rotation: the user it belongs to when ROTATED."""

    outcome: Refreshed
    user_id: str | None = None


class Accounts:
    """Every SQL statement on accounts and refresh tokens."""

    def __init__(self, db: Database):
        self.db = db
        t = db.tables
        self._users, self._members, self._tokens = t.users, t.team_members, t.refresh_tokens

    # --- users -------------------------------------------------------------------------------

    async def _users_of(self, rows: Sequence[tuple[Any, ...]]) -> list[User]:
        """The public objects of user rows (USER_COLUMNS, password_hash), with their teams."""
        if not rows:
            return []
        ids = [r[0] for r in rows]
        teams: dict[str, list[str]] = {}
        for user_id, team_id in await self.db.fetchall(
            f"SELECT user_id, team_id FROM {self._members} WHERE user_id IN ({marks(ids)}) ORDER BY team_id", ids
        ):
            teams.setdefault(user_id, []).append(team_id)
        users = []
        for row in rows:
            user = render.row_object(USER_FIELDS, row[:-1])
            user["active"] = bool(user["active"])
            user["teams"] = teams.get(row[0], [])
            user["has_password"] = row[-1] is not None
            users.append(user)
        return users

    async def get(self, user_id: str) -> User | None:
        """One agent or admin, or None (customers are no accounts)."""
        row = await self.db.fetchone(
            f"SELECT {USER_COLUMNS}, password_hash FROM {self._users} WHERE id = %s AND role IN (%s, %s)",
            (user_id, *STAFF_ROLES),
        )
        return (await self._users_of([row]))[0] if row else None

    async def all(self) -> list[User]:
        """Every agent and admin, by id."""
        rows = await self.db.fetchall(
            f"SELECT {USER_COLUMNS}, password_hash FROM {self._users} WHERE role IN (%s, %s) ORDER BY id", STAFF_ROLES
        )
        return await self._users_of(rows)

    async def create(self, user_id: str, role: str, *, name: str | None = None, max_chats: int | None = None,
                     password_hash: str | None = None, teams: Sequence[str] = ()) -> User:
        """A new account; DuplicateKey when the id is in use: a row of `users` (an account, a token-only user,
        an imported customer), or a customer's, known by a conversation or a contact row. IntegrityError for an
        unknown team."""
        now = now_ms()
        t = self.db.tables
        async with self.db.transaction() as tx:
            if await tx.fetchone(f"SELECT 1 FROM {t.conversations} WHERE user_id = %s UNION ALL "
                                 f"SELECT 1 FROM {t.customer_contacts} WHERE user_id = %s LIMIT 1", (user_id, user_id)):
                raise DuplicateKey(f"{user_id!r} is a customer's id")
            await tx.execute(
                f"INSERT INTO {self._users} (id, role, name, active, max_chats, password_hash, created_ms, updated_ms) "
                "VALUES (%s, %s, %s, 1, %s, %s, %s, %s)",
                (user_id, role, name, max_chats, password_hash, now, now),
            )
            await self._set_teams(tx, user_id, teams, now)
        user = await self.get(user_id)
        assert user is not None  # just written
        return user

    async def update(self, user_id: str, changes: dict[str, Any], *, keep_an_admin: bool = False) -> User | None:
        """Change role, name, active, max_chats, teams and/or password_hash (an agent's or admin's);
        None when there is no such account. Deactivating or a new password revokes its refresh tokens
        and sets its tokens_after_ms to now in the same transaction. IntegrityError for an unknown team;
        InactiveJoins when a deactivated account (one staying or becoming so) would join a team; with
        `keep_an_admin`, LastAdmin when no active admin would be left."""
        now = now_ms()
        sets = [f"{column} = %s" for column in EDITABLE if column in changes]
        params: list[Any] = [changes[column] for column in EDITABLE if column in changes]
        if "password_hash" in changes:
            sets.append("password_hash = %s")
            params.append(changes["password_hash"])
        ends_tokens = changes.get("active") is False or "password_hash" in changes
        if ends_tokens:  # its access tokens issued before now no longer count (PROTOCOL 2.1)
            sets.append("tokens_after_ms = %s")
            params.append(now)
        async with self.db.transaction() as tx:
            if not await self._allowed(tx, user_id, changes, keep_an_admin):
                return None
            await tx.execute(
                f"UPDATE {self._users} SET {', '.join([*sets, 'updated_ms = %s'])} WHERE id = %s",
                [*params, now, user_id],
            )
            if "teams" in changes:
                await tx.execute(f"DELETE FROM {self._members} WHERE user_id = %s", (user_id,))
                await self._set_teams(tx, user_id, changes["teams"], now)
            if ends_tokens:
                await self._revoke_user(tx, user_id, now)
        return await self.get(user_id)

    async def _allowed(self, tx: Tx, user_id: str, changes: dict[str, Any], keep_an_admin: bool) -> bool:
        """Check a change under the locks it needs (MySQL; SQLite has one writer): False when there is no such
        account, LastAdmin or InactiveJoins when the rules refuse it."""
        lock = " FOR UPDATE" if self.db.dialect == "mysql" else ""
        admins: list[str] = []
        if keep_an_admin and (changes.get("role", "admin") != "admin" or changes.get("active") is False):
            # the active admins first, in index order: two admins demoting themselves at once take these locks
            # one after the other, and the second one counts what the first one left
            admins = [r[0] for r in await tx.fetchall(
                f"SELECT id FROM {self._users} WHERE role = %s AND active = 1 ORDER BY id{lock}", ("admin",))]
        row = await tx.fetchone(
            f"SELECT active FROM {self._users} WHERE id = %s AND role IN (%s, %s){lock}", (user_id, *STAFF_ROLES))
        if row is None:
            return False
        if admins == [user_id]:
            raise LastAdmin(user_id)
        if "teams" in changes and not changes.get("active", bool(row[0])):
            kept = {r[0] for r in await tx.fetchall(f"SELECT team_id FROM {self._members} WHERE user_id = %s",
                                                     (user_id,))}
            if joined := [team for team in dict.fromkeys(changes["teams"]) if team not in kept]:
                raise InactiveJoins(joined)
        return True

    async def _set_teams(self, tx: Tx, user_id: str, teams: Sequence[str], now: int) -> None:
        await tx.executemany(
            f"INSERT INTO {self._members} (team_id, user_id, created_ms) VALUES (%s, %s, %s)",
            [(team_id, user_id, now) for team_id in dict.fromkeys(teams)],
        )

    async def credentials(self, user_id: str) -> Credentials | None:
        """The role, active flag and password hash of an agent or admin, or None."""
        row = await self.db.fetchone(
            f"SELECT role, active, password_hash FROM {self._users} WHERE id = %s AND role IN (%s, %s)",
            (user_id, *STAFF_ROLES),
        )
        return Credentials(row[0], bool(row[1]), row[2]) if row else None

    async def rehash(self, user_id: str, old_hash: str, new_hash: str) -> bool:
        """Replace a hash made with older parameters (after a successful login), unless it changed meanwhile
        (False then: another login renewed it first, or the password changed)."""
        return bool(await self.db.execute(
            f"UPDATE {self._users} SET password_hash = %s WHERE id = %s AND password_hash = %s",
            (new_hash, user_id, old_hash)))

    # --- refresh tokens ------------------------------------------------------------------------

    async def add_refresh(self, token_hash: str, family_id: str, user_id: str, expires_ms: int,
                          password_hash: str) -> bool:
        """Store a new token (the first of a family, at login) while the account is active and its password
        is still the one the login checked (`password_hash`); False, storing nothing, when it changed
        meanwhile: a new password revokes the tokens it finds, and one stored after that would outlive it.
        The user's long-expired rows go."""
        now = now_ms()
        async with self.db.transaction() as tx:
            await tx.execute(f"DELETE FROM {self._tokens} WHERE user_id = %s AND expires_ms < %s", (user_id, now))
            # the read of the users row waits for a password change that holds it (InnoDB's INSERT ... SELECT
            # locks what it reads at MySQL's default REPEATABLE READ, which the service keeps; SQLite has one
            # writer), so it sees the new hash
            return bool(await tx.execute(
                f"INSERT INTO {self._tokens} (token_hash, family_id, user_id, created_ms, expires_ms) "
                f"SELECT %s, %s, %s, %s, %s FROM {self._users} WHERE id = %s AND active = 1 AND password_hash = %s",
                (token_hash, family_id, user_id, now, expires_ms, user_id, password_hash),
            ))

    async def rotate(self, token_hash: str, new_hash: str, expires_ms: int) -> Rotation:
        """Use a token once: mark it used and store `new_hash` in its family (ROTATED), or revoke the
        family when it was used before (REUSED), or refuse it (REFUSED: unknown, expired, revoked, or
        its user is inactive, has no password or is no longer staff)."""
        now = now_ms()
        async with self.db.transaction() as tx:
            # the conditional UPDATE is the lock: of two concurrent uses exactly one matches
            taken = await tx.execute(
                f"UPDATE {self._tokens} SET used_ms = %s "
                "WHERE token_hash = %s AND used_ms IS NULL AND revoked_ms IS NULL AND expires_ms > %s",
                (now, token_hash, now),
            )
            row = await tx.fetchone(f"SELECT family_id, user_id, used_ms, revoked_ms FROM {self._tokens} "
                                    "WHERE token_hash = %s", (token_hash,))
            if row is None:
                return Rotation(Refreshed.REFUSED)
            family_id, user_id, used_ms, revoked_ms = row
            if not taken:
                if used_ms is not None and revoked_ms is None:
                    await self._revoke_family(tx, family_id, now)
                    return Rotation(Refreshed.REUSED)
                return Rotation(Refreshed.REFUSED)
            user = await tx.fetchone(
                f"SELECT 1 FROM {self._users} WHERE id = %s AND active = 1 AND password_hash IS NOT NULL "
                "AND role IN (%s, %s)", (user_id, *STAFF_ROLES),
            )
            if user is None:  # deactivated meanwhile (its tokens were revoked; this closes any gap)
                await self._revoke_family(tx, family_id, now)
                return Rotation(Refreshed.REFUSED)
            await tx.execute(
                f"INSERT INTO {self._tokens} (token_hash, family_id, user_id, created_ms, expires_ms) "
                "VALUES (%s, %s, %s, %s, %s)",
                (new_hash, family_id, user_id, now, expires_ms),
            )
            return Rotation(Refreshed.ROTATED, user_id)

    async def revoke_session(self, token_hash: str) -> bool:
        """Revoke the family of a token (logout); False when the token is unknown."""
        now = now_ms()
        async with self.db.transaction() as tx:
            row = await tx.fetchone(f"SELECT family_id FROM {self._tokens} WHERE token_hash = %s", (token_hash,))
            if row is None:
                return False
            await self._revoke_family(tx, row[0], now)
            return True

    async def revoke_user(self, user_id: str) -> None:
        """Revoke every refresh token of a user."""
        async with self.db.transaction() as tx:
            await self._revoke_user(tx, user_id, now_ms())

    async def _revoke_family(self, tx: Tx, family_id: str, now: int) -> None:
        await tx.execute(f"UPDATE {self._tokens} SET revoked_ms = %s WHERE family_id = %s AND revoked_ms IS NULL",
                         (now, family_id))

    async def _revoke_user(self, tx: Tx, user_id: str, now: int) -> None:
        await tx.execute(f"UPDATE {self._tokens} SET revoked_ms = %s WHERE user_id = %s AND revoked_ms IS NULL",
                         (now, user_id))
