"""The store's small SQL interface (Database, Tx, the errors) and how a backend is opened: MySQL/MariaDB
(chat/store/mysql.py: asyncmy or aiomysql) or SQLite (chat/store/sqlite.py).

Queries are written once with `%s` placeholders in SQL that runs unchanged on MySQL 8,
MariaDB 10.11 and SQLite; the SQLite backend rewrites the placeholders. Parameters only,
never string formatting of values.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any

from chat.settings import DatabaseConfig
from chat.store.schema import Tables

Params = Sequence[Any]
Row = tuple[Any, ...]  # one result row, columns in the order the query names them


def marks(values: Sequence[Any]) -> str:
    """`%s, %s, ...`: one placeholder per value of an IN (...) list."""
    return ", ".join(["%s"] * len(values))


class DatabaseError(Exception):
    """The database failed or cannot be reached."""


class IntegrityError(DatabaseError):
    """A constraint refused the write."""


class DuplicateKey(IntegrityError):
    """A UNIQUE or PRIMARY KEY constraint refused the write."""


class CannotConnect(DatabaseError):
    """The backend could not be opened. `reason`: why, in short (the driver's error, without the address);
    `lasting`: waiting will not change it (a wrong password, an unknown database, a refused certificate)."""

    def __init__(self, where: str, reason: str, *, lasting: bool) -> None:
        super().__init__(f"cannot connect to {where}: {reason}")
        self.reason = reason
        self.lasting = lasting


class RolledBack(DatabaseError):
    """The server rolled the transaction back itself (a deadlock, a lock wait timeout): nothing of it was
    written, and it may be tried again."""


class Tx(ABC):
    """The statements of one transaction (or of one autocommitted statement)."""

    @abstractmethod
    async def execute(self, sql: str, params: Params = ()) -> int:
        """Run a statement; return the number of rows it changed."""

    @abstractmethod
    async def executemany(self, sql: str, rows: Sequence[Params]) -> None:
        """Run a statement once per parameter row."""

    @abstractmethod
    async def fetchone(self, sql: str, params: Params = ()) -> Row | None:
        """The first row of a query, or None."""

    @abstractmethod
    async def fetchall(self, sql: str, params: Params = ()) -> list[Row]:
        """Every row of a query."""

    @property
    def last_insert_id(self) -> int:
        """MySQL's LAST_INSERT_ID() after the last statement (0 elsewhere)."""
        return 0

    async def execute_then_fetchall(self, write: str, write_params: Params, read: str,
                                    read_params: Params) -> tuple[int, list[Row]]:
        """A write, then a read: the rows the write changed and the rows the read found (in one round trip
        where the backend can)."""
        return await self.execute(write, write_params), await self.fetchall(read, read_params)

    async def executemany_and_commit(self, sql: str, rows: Sequence[Params]) -> None:
        """`executemany` as the transaction's last statement, sent with the COMMIT where the backend can (one
        round trip less); nothing may follow it in the transaction."""
        await self.executemany(sql, rows)

    async def fetchall_and_commit(self, sql: str, params: Params = ()) -> list[Row]:
        """`fetchall` as the transaction's last statement, sent with the COMMIT where the backend can."""
        return await self.fetchall(sql, params)


class Database(ABC):
    """A connection pool (MySQL) or a serialized connection (SQLite), and the names of the
    service's tables in it (`DB_TABLE_PREFIX` applied): every query takes them from `tables`."""

    dialect: str
    tables: Tables = Tables()

    @abstractmethod
    def transaction(self) -> AbstractAsyncContextManager[Tx]:
        """`async with db.transaction() as tx:` commits on success, rolls back on an exception."""

    @abstractmethod
    async def close(self) -> None:
        """Close every connection."""

    async def execute(self, sql: str, params: Params = ()) -> int:
        """One statement in its own transaction."""
        async with self.transaction() as tx:
            return await tx.execute(sql, params)

    async def fetchone(self, sql: str, params: Params = ()) -> Row | None:
        """One row (the first), outside any explicit transaction."""
        rows = await self.fetchall(sql, params)
        return rows[0] if rows else None

    async def fetchall(self, sql: str, params: Params = ()) -> list[Row]:
        """All rows, outside any explicit transaction (on MySQL one round trip: the query with its COMMIT)."""
        async with self.transaction() as tx:
            return await tx.fetchall_and_commit(sql, params)

    async def ping(self) -> None:
        """Raise DatabaseError unless `SELECT 1` answers."""
        row = await self.fetchone("SELECT 1")
        if not row or row[0] != 1:
            raise DatabaseError("SELECT 1 did not answer 1")


async def connect(config: DatabaseConfig, pool_size: int = 10) -> Database:
    """Open the backend the configuration names (its driver module is imported here: each imports
    this one's interface)."""
    if config.kind == "sqlite":
        from chat.store.sqlite import SQLiteDatabase

        return await SQLiteDatabase.connect(config)
    from chat.store.mysql import MySQLDatabase

    return await MySQLDatabase.connect(config, pool_size=pool_size)


RETRY_EVERY_S = 1.0


async def connect_waiting(
    config: DatabaseConfig,
    *,
    pool_size: int = 10,
    timeout_s: float,
    on_wait: Callable[[int, str], None],
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> Database:
    """Open the backend, waiting up to `timeout_s` for a MySQL server that cannot be reached yet.

    `on_wait(attempt, reason)` is called after each failed attempt that another follows (its number,
    from 1, and CannotConnect.reason: why it failed); when the time is up the last CannotConnect is
    raised. An error that waiting will not change (CannotConnect.lasting: access denied, an unknown
    database) is raised at once, and SQLite is not waited for (a file that cannot be opened will not
    open later by itself)."""
    if config.kind == "sqlite":
        return await connect(config, pool_size)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    attempt = 1
    while True:
        try:
            async with asyncio.timeout(max(deadline - loop.time(), RETRY_EVERY_S)):  # a silent host: give up
                return await connect(config, pool_size)
        except CannotConnect as exc:
            error = exc
        except TimeoutError:
            error = CannotConnect(config.describe(), "no answer", lasting=False)
        if error.lasting or loop.time() >= deadline:
            raise error
        on_wait(attempt, error.reason)
        attempt += 1
        await sleep(min(RETRY_EVERY_S, max(deadline - loop.time(), 0.0)))
