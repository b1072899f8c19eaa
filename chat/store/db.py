"""Two SQL backends behind one small interface: MySQL/MariaDB (aiomysql pool) and SQLite.

Queries are written once with `%s` placeholders in SQL that runs unchanged on MySQL 8,
MariaDB 10.11 and SQLite; the SQLite backend rewrites the placeholders. Parameters only,
never string formatting of values.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager, suppress
from functools import lru_cache
from pathlib import Path
from ssl import SSLError
from typing import Any, cast

import aiomysql
import aiosqlite
import pymysql  # type: ignore[import-untyped]  # no types-PyMySQL in the dev dependencies
from pymysql.constants import CLIENT  # type: ignore[import-untyped]

from chat.settings import DatabaseConfig
from chat.store.schema import Tables
from chat.store.tls import offers_tls, ssl_context

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
        """One row, outside any explicit transaction."""
        async with self.transaction() as tx:
            return await tx.fetchone(sql, params)

    async def fetchall(self, sql: str, params: Params = ()) -> list[Row]:
        """All rows, outside any explicit transaction."""
        async with self.transaction() as tx:
            return await tx.fetchall(sql, params)

    async def ping(self) -> None:
        """Raise DatabaseError unless `SELECT 1` answers."""
        row = await self.fetchone("SELECT 1")
        if not row or row[0] != 1:
            raise DatabaseError("SELECT 1 did not answer 1")


# --- MySQL / MariaDB ---------------------------------------------------------------------

_MYSQL_DUPLICATE = 1062
_MYSQL_RETRYABLE = (1213, 1205)  # deadlock, lock wait timeout: the whole transaction may be retried


def _mysql_error(exc: Exception) -> DatabaseError:
    code = exc.args[0] if exc.args else None
    if isinstance(exc, pymysql.err.IntegrityError):
        return (DuplicateKey if code == _MYSQL_DUPLICATE else IntegrityError)(str(exc))
    return DatabaseError(str(exc))


class _MySQLTx(Tx):
    def __init__(self, cursor: aiomysql.Cursor):
        self._cur = cursor

    @property
    def last_insert_id(self) -> int:
        return int(self._cur.lastrowid or 0)

    async def execute(self, sql: str, params: Params = ()) -> int:
        try:
            return int(await self._cur.execute(sql, tuple(params) or None))
        except pymysql.err.MySQLError as exc:
            raise _mysql_error(exc) from exc

    async def executemany(self, sql: str, rows: Sequence[Params]) -> None:
        if not rows:
            return
        try:
            await self._cur.executemany(sql, [tuple(r) for r in rows])
        except pymysql.err.MySQLError as exc:
            raise _mysql_error(exc) from exc

    async def fetchone(self, sql: str, params: Params = ()) -> Row | None:
        await self.execute(sql, params)
        row: Row | None = await self._cur.fetchone()
        return row

    async def fetchall(self, sql: str, params: Params = ()) -> list[Row]:
        await self.execute(sql, params)
        return list(await self._cur.fetchall())


class MySQLDatabase(Database):
    """MySQL 8 / MariaDB through an aiomysql pool."""

    dialect = "mysql"

    def __init__(self, pool: aiomysql.Pool, size: int, tables: Tables | None = None):
        self._pool = pool
        self.tables = tables or Tables()
        # a FIFO queue in front of the pool: aiomysql lets a newcomer take a freed connection
        # before the tasks already waiting, which under load starves some of them for seconds
        self._slots = asyncio.Semaphore(size)

    @classmethod
    async def connect(cls, config: DatabaseConfig, pool_size: int = 10) -> MySQLDatabase:
        """Open the pool; raise DatabaseError if the server cannot be reached (or its TLS certificate
        is refused)."""
        try:
            tls = ssl_context(config.tls) if config.tls else None
        except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError: a file that is not PEM
            raise DatabaseError(f"cannot use the TLS files of DATABASE_URL: {exc}") from None
        try:
            pool = await aiomysql.create_pool(
                host=config.host,
                port=config.port,
                user=config.user,
                password=config.password,
                db=config.database,
                charset="utf8mb4",
                # every statement runs in a transaction() that commits or rolls back: the first
                # statement opens it implicitly, which saves a BEGIN round trip each time
                autocommit=False,
                minsize=1,
                maxsize=pool_size,
                pool_recycle=3600,
                init_command="SET SESSION time_zone = '+00:00'",
                client_flag=CLIENT.FOUND_ROWS,  # rowcount = rows matched, as in SQLite
                ssl=tls,
            )
        except (pymysql.err.MySQLError, OSError, RuntimeError) as exc:  # RuntimeError: an auth plugin's package
            cause = exc.__cause__  # aiomysql's "Can't connect" hides why: a refused certificate, say
            why = f" ({type(cause).__name__}: {cause})" if isinstance(cause, SSLError) else ""
            raise DatabaseError(f"cannot connect to {config.describe()}: {exc}{why}") from None
        if tls is not None and not await offers_tls(pool):
            pool.close()
            await pool.wait_closed()
            raise DatabaseError(f"cannot connect to {config.describe()}: the server does not offer TLS")
        return cls(pool, pool_size, Tables(config.table_prefix))

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Tx]:
        async with self._slots, self._transaction() as tx:
            yield tx

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[Tx]:
        try:
            conn = await self._pool.acquire()
        except (pymysql.err.MySQLError, OSError, RuntimeError) as exc:  # RuntimeError: the pool is closed
            raise DatabaseError(f"cannot get a database connection: {exc}") from None
        try:
            async with conn.cursor() as cur:
                try:
                    yield _MySQLTx(cur)
                except asyncio.CancelledError:
                    # cancelled mid-query: the connection's state is unknown, so it is not reused;
                    # the server rolls the transaction back when the connection closes
                    conn.close()
                    raise
                except BaseException:
                    await conn.rollback()
                    raise
                await conn.commit()
        except asyncio.CancelledError:
            conn.close()  # cancelled during the commit: the same
            raise
        except (pymysql.err.MySQLError, OSError) as exc:
            conn.close()  # a broken connection must not go back to the pool
            raise _mysql_error(exc) from exc
        finally:
            self._pool.release(conn)

    async def close(self) -> None:
        self._pool.close()
        await self._pool.wait_closed()


# --- SQLite ------------------------------------------------------------------------------


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


async def connect(config: DatabaseConfig, pool_size: int = 10) -> Database:
    """Open the backend the configuration names."""
    if config.kind == "sqlite":
        return await SQLiteDatabase.connect(config)
    return await MySQLDatabase.connect(config, pool_size=pool_size)


RETRY_EVERY_S = 1.0


async def connect_waiting(
    config: DatabaseConfig,
    *,
    pool_size: int = 10,
    timeout_s: float,
    on_wait: Callable[[int], None],
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> Database:
    """Open the backend, waiting up to `timeout_s` for a MySQL server that cannot be reached yet.

    `on_wait(attempt)` is called before each attempt after the first; when the time is up the
    last DatabaseError is raised. SQLite is not waited for (a file that cannot be opened will
    not open later by itself)."""
    if config.kind == "sqlite":
        return await connect(config, pool_size)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    attempt = 1
    while True:
        try:
            async with asyncio.timeout(max(deadline - loop.time(), RETRY_EVERY_S)):  # a silent host: give up
                return await connect(config, pool_size)
        except (DatabaseError, TimeoutError) as exc:
            error = exc if isinstance(exc, DatabaseError) else DatabaseError(f"{config.describe()} did not answer")
        if loop.time() >= deadline:
            raise error
        attempt += 1
        on_wait(attempt)
        await sleep(min(RETRY_EVERY_S, max(deadline - loop.time(), 0.0)))
