"""Teams and their members (team_members)."""

from __future__ import annotations

from typing import Any

from chat import render
from chat.store.db import Database, Row
from chat.store.staff import STAFF_ROLES
from states.clock import now_ms
from states.ids import new_id

TEAM_COLUMNS = "id, name, description, created_ms, updated_ms"
EDITABLE = ("name", "description")


TEAM_FIELDS = ("id", "name", "description", "created_at", "updated_at")
MEMBER_FIELDS = ("team_id", "user_id", "name", "role", "created_at")
Team = dict[str, Any]  # TEAM_FIELDS (chat.api.teams.TeamOut documents it)
Member = dict[str, Any]  # MEMBER_FIELDS (chat.api.teams.MemberOut documents it)


def _team(row: Row) -> Team:
    return render.row_object(TEAM_FIELDS, row)


def _member(row: Row) -> Member:
    return render.row_object(MEMBER_FIELDS, row)


class Teams:
    """Every SQL statement on teams and team_members."""

    def __init__(self, db: Database):
        self.db = db
        t = db.tables
        self._teams, self._members, self._users = t.teams, t.team_members, t.users
        self._member_sql = (
            f"SELECT tm.team_id, tm.user_id, u.name, u.role, tm.created_ms FROM {t.team_members} tm "
            f"LEFT JOIN {t.users} u ON u.id = tm.user_id WHERE tm.team_id = %s"
        )

    async def exists(self, team_id: str) -> bool:
        """Is there a team with this id?"""
        return await self.db.fetchone(f"SELECT 1 FROM {self._teams} WHERE id = %s", (team_id,)) is not None

    async def all(self) -> list[Team]:
        """Every team, by name."""
        rows = await self.db.fetchall(f"SELECT {TEAM_COLUMNS} FROM {self._teams} ORDER BY name")
        return [_team(r) for r in rows]

    async def get(self, team_id: str) -> Team | None:
        """One team, or None."""
        row = await self.db.fetchone(f"SELECT {TEAM_COLUMNS} FROM {self._teams} WHERE id = %s", (team_id,))
        return _team(row) if row else None

    async def create(self, name: str, description: str | None) -> Team:
        """A new team; DuplicateKey when the name is taken."""
        now = now_ms()
        row = (new_id(), name, description, now, now)
        await self.db.execute(f"INSERT INTO {self._teams} ({TEAM_COLUMNS}) VALUES (%s, %s, %s, %s, %s)", row)
        return _team(row)

    async def update(self, team_id: str, changes: dict[str, Any]) -> Team | None:
        """Change name and/or description; None when there is no such team, DuplicateKey on a taken name."""
        sets = [f"{column} = %s" for column in EDITABLE if column in changes]
        params = [changes[column] for column in EDITABLE if column in changes]
        if sets:
            changed = await self.db.execute(
                f"UPDATE {self._teams} SET {', '.join(sets)}, updated_ms = %s WHERE id = %s",
                [*params, now_ms(), team_id],
            )
            if not changed:
                return None
        return await self.get(team_id)

    async def delete(self, team_id: str) -> bool:
        """Delete a team and its memberships; conversations keep their team_id. False when none."""
        async with self.db.transaction() as tx:
            await tx.execute(f"DELETE FROM {self._members} WHERE team_id = %s", (team_id,))
            return bool(await tx.execute(f"DELETE FROM {self._teams} WHERE id = %s", (team_id,)))

    async def members(self, team_id: str) -> list[Member]:
        """The members of a team, by user id."""
        rows = await self.db.fetchall(self._member_sql + " ORDER BY tm.user_id", (team_id,))
        return [_member(r) for r in rows]

    async def add_member(self, team_id: str, user_id: str) -> Member | None:
        """Add an active agent or admin as a member; None, adding nothing, when the user is no such one (unknown,
        deactivated, a customer). DuplicateKey when it is a member already, IntegrityError when the team is gone."""
        # the user is read by the INSERT itself, so an account deactivated meanwhile is not added
        # (InnoDB's INSERT ... SELECT waits for a change that holds its users row)
        added = await self.db.execute(
            f"INSERT INTO {self._members} (team_id, user_id, created_ms) SELECT %s, %s, %s FROM {self._users} "
            "WHERE id = %s AND role IN (%s, %s) AND active = 1",
            (team_id, user_id, now_ms(), user_id, *STAFF_ROLES),
        )
        if not added:
            return None
        row = await self.db.fetchone(self._member_sql + " AND tm.user_id = %s", (team_id, user_id))
        if row is None:  # deleted again between the two statements
            raise LookupError(f"{user_id} is no longer a member of {team_id}")
        return _member(row)

    async def is_member(self, team_id: str, user_id: str) -> bool:
        """Is the user a member of the team (an active account or not)?"""
        return await self.db.fetchone(f"SELECT 1 FROM {self._members} WHERE team_id = %s AND user_id = %s",
                                      (team_id, user_id)) is not None

    async def remove_member(self, team_id: str, user_id: str) -> bool:
        """Remove a member; False when it was not one."""
        return bool(
            await self.db.execute(
                f"DELETE FROM {self._members} WHERE team_id = %s AND user_id = %s", (team_id, user_id))
        )
