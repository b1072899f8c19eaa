"""Labels and the labels of each conversation (conversation_labels)."""

from __future__ import annotations

from typing import Any

from chat import render
from chat.store.db import Database, marks
from states.clock import now_ms
from states.ids import new_id

LABEL_FIELDS = ("id", "title", "description", "color", "created_at")
Label = dict[str, Any]  # LABEL_FIELDS (chat.api.labels.LabelOut documents it)


class Labels:
    """Every SQL statement on labels and conversation_labels."""

    def __init__(self, db: Database):
        self.db = db
        self._t = db.tables

    async def all(self) -> list[Label]:
        """Every label, by title."""
        rows = await self.db.fetchall(
            f"SELECT id, title, description, color, created_ms FROM {self._t.labels} ORDER BY title")
        return [render.row_object(LABEL_FIELDS, r) for r in rows]

    async def create(self, title: str, description: str | None, color: str | None) -> Label:
        """A new label; DuplicateKey when the title is taken."""
        row = (new_id(), title, description, color, now_ms())
        await self.db.execute(
            f"INSERT INTO {self._t.labels} (id, title, description, color, created_ms) VALUES (%s, %s, %s, %s, %s)", row
        )
        return render.row_object(LABEL_FIELDS, row)

    async def delete(self, label_id: str) -> bool:
        """Delete a label (and its uses); False when there was none."""
        async with self.db.transaction() as tx:
            await tx.execute(f"DELETE FROM {self._t.conversation_labels} WHERE label_id = %s", (label_id,))
            return bool(await tx.execute(f"DELETE FROM {self._t.labels} WHERE id = %s", (label_id,)))

    async def titles_of(self, conversation_ids: list[str]) -> dict[str, list[str]]:
        """Label titles (sorted) of several conversations in one query."""
        if not conversation_ids:
            return {}
        rows = await self.db.fetchall(
            f"SELECT cl.conversation_id, l.title FROM {self._t.conversation_labels} cl "
            f"JOIN {self._t.labels} l ON l.id = cl.label_id "
            f"WHERE cl.conversation_id IN ({marks(conversation_ids)}) ORDER BY l.title",
            conversation_ids,
        )
        result: dict[str, list[str]] = {}
        for conversation_id, title in rows:
            result.setdefault(conversation_id, []).append(title)
        return result

    async def set_for(self, conversation_id: str, titles: list[str]) -> list[str]:
        """Replace a conversation's labels by title; return the titles not found (nothing changed then)."""
        wanted = sorted(set(titles))
        found: dict[str, str] = {}
        if wanted:
            rows = await self.db.fetchall(
                f"SELECT id, title FROM {self._t.labels} WHERE title IN ({marks(wanted)})", wanted)
            found = {title: label_id for label_id, title in rows}
        missing = [t for t in wanted if t not in found]
        if missing:
            return missing
        async with self.db.transaction() as tx:
            await tx.execute(
                f"DELETE FROM {self._t.conversation_labels} WHERE conversation_id = %s", (conversation_id,))
            await tx.executemany(
                f"INSERT INTO {self._t.conversation_labels} (conversation_id, label_id) VALUES (%s, %s)",
                [(conversation_id, found[t]) for t in wanted],
            )
            await tx.execute(
                f"UPDATE {self._t.conversations} SET updated_ms = %s WHERE id = %s", (now_ms(), conversation_id))
        return []
