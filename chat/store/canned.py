"""Canned responses (canned_responses): saved replies agents insert by short code."""

from __future__ import annotations

from typing import Any

from chat import render
from chat.store.db import Database, Row
from states.clock import now_ms
from states.ids import new_id

CANNED_FIELDS = ("id", "short_code", "content", "created_at", "updated_at")
_COLUMNS = "id, short_code, content, created_ms, updated_ms"
Canned = dict[str, Any]  # CANNED_FIELDS (chat.api.canned.CannedOut documents it)


def _canned(row: Row) -> Canned:
    return render.row_object(CANNED_FIELDS, row)


class CannedResponses:
    """Every SQL statement on canned_responses."""

    def __init__(self, db: Database):
        self.db = db
        self._table = db.tables.canned_responses

    async def all(self) -> list[Canned]:
        """Every canned response, by short code (a team keeps tens or hundreds of them)."""
        rows = await self.db.fetchall(f"SELECT {_COLUMNS} FROM {self._table} ORDER BY short_code")
        return [_canned(r) for r in rows]

    async def get(self, canned_id: str) -> Canned | None:
        """One canned response, or None."""
        row = await self.db.fetchone(f"SELECT {_COLUMNS} FROM {self._table} WHERE id = %s", (canned_id,))
        return _canned(row) if row else None

    async def create(self, short_code: str, content: str) -> Canned:
        """A new canned response; DuplicateKey when the short code is taken."""
        now = now_ms()
        row = (new_id(), short_code, content, now, now)
        await self.db.execute(f"INSERT INTO {self._table} ({_COLUMNS}) VALUES (%s, %s, %s, %s, %s)", row)
        return _canned(row)

    async def update(self, canned_id: str, changes: dict[str, str]) -> Canned | None:
        """Change the short code and/or the content; None when there is no such response, DuplicateKey
        when the new short code is taken."""
        sets = [f"{column} = %s" for column in changes if column in ("short_code", "content")]
        values = [changes[column] for column in changes if column in ("short_code", "content")]
        async with self.db.transaction() as tx:
            await tx.execute(f"UPDATE {self._table} SET {', '.join([*sets, 'updated_ms = %s'])} WHERE id = %s",
                             [*values, now_ms(), canned_id])
            row = await tx.fetchone(f"SELECT {_COLUMNS} FROM {self._table} WHERE id = %s", (canned_id,))
        return _canned(row) if row is not None else None

    async def delete(self, canned_id: str) -> bool:
        """Delete one; False when there was none."""
        return bool(await self.db.execute(f"DELETE FROM {self._table} WHERE id = %s", (canned_id,)))
