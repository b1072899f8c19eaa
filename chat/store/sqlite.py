"""The embedded SQLite backend: one connection, transactions serialized (a single writer)."""

from __future__ import annotations

import asyncio
import os
import sqlite3
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager, suppress
from functools import lru_cache
from pathlib import Path
from typing import cast

import aiosqlite

from chat.settings import DatabaseConfig
from chat.store.db import Database, DatabaseError, DuplicateKey, IntegrityError, Params, Row, Tx
from chat.store.schema import Tables


@lru_cache(maxsize=512)
def _sqlite_sql(sql: str) -> str:
    return sql.replace("%s", "?").replace("%%", "%")


def _sqlite_error(exc: sqlite3.Error) -> DatabaseError:
    if isinstance(exc, sqlite3.IntegrityError):
        text = str(exc)
        return (DuplicateKey if "UNIQUE" in text or "PRIMARY KEY" in text else IntegrityError)(text)
    return DatabaseError(str(exc))


class _SQLiteTx(Tx):
    def __init__(self, conn: aiosqlite.Connection):
        self._conn = conn

    async def execute(self, sql: str, params: Params = ()) -> int:
        try:
            cur = await self._conn.execute(_sqlite_sql(sql), tuple(params))
        except sqlite3.Error as exc:
            raise _sqlite_error(exc) from exc
        rowcount = cur.rowcount
        await cur.close()
        return rowcount

    async def executemany(self, sql: str, rows: Sequence[Params]) -> None:
        try:
            await self._conn.executemany(_sqlite_sql(sql), [tuple(r) for r in rows])
        except sqlite3.Error as exc:
            raise _sqlite_error(exc) from exc

    async def fetchone(self, sql: str, params: Params = ()) -> Row | None:
        try:
            async with self._conn.execute(_sqlite_sql(sql), tuple(params)) as cur:
                return cast("Row | None", await cur.fetchone())  # no row_factory: plain tuples
        except sqlite3.Error as exc:
            raise _sqlite_error(exc) from exc

    async def fetchall(self, sql: str, params: Params = ()) -> list[Row]:
        try:
            async with self._conn.execute(_sqlite_sql(sql), tuple(params)) as cur:
                return cast("list[Row]", list(await cur.fetchall()))
        except sqlite3.Error as exc:
            raise _sqlite_error(exc) from exc


def _create_private(path: Path) -> None:
    """Create a new database file 0600 in a directory made 0700 (an existing one is left as it is):
    SQLite gives its -wal and -shm files the database file's mode."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    with suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))


class SQLiteDatabase(Database):
    """The embedded default: one connection, transactions serialized by a lock (single writer)."""

    dialect = "sqlite"

    def __init__(self, conn: aiosqlite.Connection, tables: Tables | None = None):
        self._conn = conn
        self.tables = tables or Tables()
        self._lock = asyncio.Lock()

    @classmethod
    async def connect(cls, config: DatabaseConfig) -> SQLiteDatabase:
        """Open (and create) the file; WAL mode and foreign keys on."""
        try:
            if config.path != ":memory:":
                _create_private(Path(config.path))
            conn = await aiosqlite.connect(config.path, isolation_level=None)
            await conn.execute("PRAGMA foreign_keys = ON")
            await conn.execute("PRAGMA journal_mode = WAL")
            await conn.execute("PRAGMA synchronous = NORMAL")
            await conn.execute("PRAGMA busy_timeout = 5000")
        except (sqlite3.Error, OSError) as exc:
            raise DatabaseError(f"cannot open {config.describe()}: {exc}") from None
        return cls(conn, Tables(config.table_prefix))

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Tx]:
        async with self._lock:
            try:
                await self._conn.execute("BEGIN IMMEDIATE")
            except (sqlite3.Error, ValueError) as exc:
                raise DatabaseError(str(exc)) from None
            try:
                yield _SQLiteTx(self._conn)
            except BaseException:
                await self._conn.execute("ROLLBACK")
                raise
            try:
                await self._conn.execute("COMMIT")
            except sqlite3.Error as exc:
                await self._conn.execute("ROLLBACK")
                raise _sqlite_error(exc) from exc

    async def close(self) -> None:
        await self._conn.close()
