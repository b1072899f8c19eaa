"""Schema upgrades: apply the versions of chat.store.schema that the database does not have yet."""

from __future__ import annotations

import warnings

from chat.store.db import Database, DuplicateKey
from chat.store.schema import MIGRATIONS, MYSQL_TABLE_OPTIONS, SCHEMA_VERSION_TABLE, render
from states.clock import now_ms


class Migrations:
    """The schema_version table and the upgrade that fills it."""

    def __init__(self, db: Database):
        self.db = db

    async def upgrade(self) -> list[int]:
        """Create or upgrade the schema; return the versions applied (none when current)."""
        options = f" {MYSQL_TABLE_OPTIONS}" if self.db.dialect == "mysql" else ""
        with warnings.catch_warnings():  # MySQL warns "already exists" on every later run
            warnings.simplefilter("ignore")
            await self.db.execute(SCHEMA_VERSION_TABLE + options)
        current = await self.version()
        applied = []
        for version, tables in MIGRATIONS:
            if version <= current:
                continue
            for table in tables:
                for statement in render(table, self.db.dialect):
                    await self.db.execute(statement)
            try:
                await self.db.execute(
                    "INSERT INTO schema_version (version, applied_ms) VALUES (%s, %s)", (version, now_ms())
                )
            except DuplicateKey:  # another instance upgraded at the same moment
                continue
            applied.append(version)
        return applied

    async def version(self) -> int:
        """The applied schema version (0 before the first upgrade)."""
        row = await self.db.fetchone("SELECT MAX(version) FROM schema_version")
        return int(row[0] or 0) if row else 0
