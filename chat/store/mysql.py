"""The MySQL 8 / MariaDB backend, on either of two drivers with the same pool and cursor API.

asyncmy (Cython) parses the wire protocol in compiled code and is the default of `mysql://`;
aiomysql (pure Python, on PyMySQL) stays selectable with `mysql+aiomysql://`. Both are driven
the same way: a pool, one cursor per transaction, commit or rollback, and a connection whose
state is unknown (cancelled, broken) is closed instead of going back to the pool. Their errors
map to the store's DatabaseError / IntegrityError / DuplicateKey.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import re
import warnings
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from ssl import SSLCertVerificationError, SSLContext
from typing import Any

import aiomysql
import asyncmy
import asyncmy.errors
import pymysql  # type: ignore[import-untyped]  # no types-PyMySQL in the dev dependencies

from chat.settings import DatabaseConfig
from chat.store.db import (
    CannotConnect,
    Database,
    DatabaseError,
    DuplicateKey,
    IntegrityError,
    Params,
    RolledBack,
    Row,
    Tx,
)
from chat.store.schema import Tables
from chat.store.tls import offers_tls, ssl_context

_FOUND_ROWS = 2  # CLIENT.FOUND_ROWS (the same flag in both drivers): rowcount = rows matched, as in SQLite
_IN_TRANS = 1  # SERVER_STATUS_IN_TRANS
_MYSQL_DUPLICATE = 1062
_MYSQL_ROLLED_BACK = frozenset({1205, 1213})  # ER_LOCK_WAIT_TIMEOUT, ER_LOCK_DEADLOCK
_MYSQL_LASTING = frozenset({  # the server's refusals of a connection that waiting will not change
    1044, 1045,  # ER_DBACCESS_DENIED_ERROR, ER_ACCESS_DENIED_ERROR (a wrong password)
    1698,  # ER_ACCESS_DENIED_NO_PASSWORD_ERROR (MySQL), MariaDB's access denied to an unknown user
    1049,  # ER_BAD_DB_ERROR: an unknown database
    1129, 1130,  # ER_HOST_IS_BLOCKED (until FLUSH HOSTS), ER_HOST_NOT_PRIVILEGED
    1251,  # ER_NOT_SUPPORTED_AUTH_MODE
    1820, 1862,  # ER_MUST_CHANGE_PASSWORD, ER_MUST_CHANGE_PASSWORD_LOGIN
    3118, 4151,  # ER_ACCOUNT_HAS_BEEN_LOCKED (MySQL 8, MariaDB)
})
# Both drivers always ask for CLIENT.MULTI_STATEMENTS: a query may be several statements separated by `;` (the
# parameters are escaped into its text by the driver, as for every query). _MySQLTx sends a write with the read
# after it, and a transaction's last INSERT or its only read with the COMMIT, as one query each (docs/store.md).
_VALUES = re.compile(r"^(.*\bVALUES\s*)(\(.*\))\s*$", re.DOTALL | re.IGNORECASE)  # INSERT ... VALUES (row)


@functools.lru_cache(maxsize=64)  # the store's few INSERTs, split once each (the writer's on every batch)
def _insert_parts(sql: str) -> tuple[str, str] | None:
    """`INSERT ... VALUES ` and its `(row)`, or None for another statement."""
    match = _VALUES.match(sql)
    return None if match is None else (match[1], match[2])


@dataclass(frozen=True)
class Driver:
    """What differs between the two drivers: how a pool is made and which exceptions they raise."""

    name: str
    error: type[Exception]  # the driver's base class of server and protocol errors
    integrity: type[Exception]  # its IntegrityError (a constraint refused the write)

    async def create_pool(self, config: DatabaseConfig, size: int, tls: SSLContext | None) -> Any:
        """A pool of `size` connections at most, each in a transaction until commit/rollback."""
        options: dict[str, Any] = {
            "host": config.host, "port": config.port, "user": config.user, "password": config.password,
            "charset": "utf8mb4",
            # every statement runs in a transaction() that commits or rolls back: the first
            # statement opens it implicitly, which saves a BEGIN round trip each time
            "autocommit": False,
            "minsize": 1, "maxsize": size, "pool_recycle": 3600,
            "init_command": "SET SESSION time_zone = '+00:00'",
            "client_flag": _FOUND_ROWS,
            "ssl": tls,
        }
        if self.name == "asyncmy":
            return await asyncmy.create_pool(database=config.database, **options)
        return await aiomysql.create_pool(db=config.database, **options)

    def wrap(self, exc: Exception) -> DatabaseError:
        """The store's error for one of the driver's."""
        if isinstance(exc, self.integrity):
            code = exc.args[0] if exc.args else None
            return (DuplicateKey if code == _MYSQL_DUPLICATE else IntegrityError)(str(exc))
        if exc.args and exc.args[0] in _MYSQL_ROLLED_BACK:
            return RolledBack(str(exc))
        return DatabaseError(str(exc))


def _connect_error(where: str, exc: Exception) -> CannotConnect:
    """The store's error for a connection that failed: the server's code and message (`1045 Access denied
    for user ...`) and the cause the driver's message may leave out (aiomysql's `Can't connect` says nothing
    of a refused connection or certificate); lasting for the refusals above and a refused certificate."""
    code = exc.args[0] if len(exc.args) == 2 and isinstance(exc.args[0], int) else None
    reason = f"{code} {exc.args[1]}" if code is not None else str(exc) or type(exc).__name__
    cause = exc.__cause__ or exc.__context__
    if isinstance(cause, OSError) and str(cause) not in reason:  # ssl.SSLError is an OSError
        reason += f" ({type(cause).__name__}: {cause})"
    lasting = code in _MYSQL_LASTING or isinstance(cause or exc, SSLCertVerificationError)
    return CannotConnect(where, reason, lasting=lasting)


class _ServerWarnings(logging.Filter):
    """asyncmy logs the server's warnings (what SHOW WARNINGS lists) where aiomysql issues them as
    Python warnings: they are issued the same way here, so a caller expecting one silences it the
    same way on both drivers (chat/store/migrations.py: "table already exists" on every start)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno != logging.WARNING:
            return True
        warnings.warn(record.getMessage(), pymysql.err.Warning, stacklevel=2)
        return False


logging.getLogger("asyncmy").addFilter(_ServerWarnings())

DRIVERS = {
    "asyncmy": Driver("asyncmy", asyncmy.errors.MySQLError, asyncmy.errors.IntegrityError),
    "aiomysql": Driver("aiomysql", pymysql.err.MySQLError, pymysql.err.IntegrityError),
}


class _MySQLTx(Tx):
    def __init__(self, cursor: Any, driver: Driver):
        self._cur = cursor
        self._driver = driver
        self.committed = False  # by a statement sent with the COMMIT: the transaction is over

    @property
    def last_insert_id(self) -> int:
        return int(self._cur.lastrowid or 0)

    async def execute(self, sql: str, params: Params = ()) -> int:
        if self.committed:
            raise RuntimeError("a statement after the COMMIT would run outside the transaction")
        try:
            return int(await self._cur.execute(sql, tuple(params) or None))
        except self._driver.error as exc:
            raise self._driver.wrap(exc) from exc

    async def executemany(self, sql: str, rows: Sequence[Params]) -> None:
        if not rows:
            return
        try:
            await self._cur.executemany(sql, [tuple(r) for r in rows])
        except self._driver.error as exc:
            raise self._driver.wrap(exc) from exc

    async def fetchone(self, sql: str, params: Params = ()) -> Row | None:
        await self.execute(sql, params)
        row: Row | None = await self._cur.fetchone()
        return row

    async def fetchall(self, sql: str, params: Params = ()) -> list[Row]:
        await self.execute(sql, params)
        return list(await self._cur.fetchall())

    def _text(self, sql: str, params: Params) -> str:
        """The statement with its parameters escaped into it, as the driver sends it."""
        return str(self._cur.mogrify(sql, tuple(params))) if params else sql

    async def _next(self) -> None:
        """On to the answer of the query's next statement (an error in one stops the query there)."""
        try:
            await self._cur.nextset()
        except self._driver.error as exc:
            raise self._driver.wrap(exc) from exc

    async def _commit_answered(self) -> None:
        await self._next()
        self.committed = True
        # asyncmy keeps a status only when it is not 0, and with autocommit off the COMMIT's is 0: the
        # connection would still say "in a transaction" (the statement before) and its pool would close it
        self._cur.connection.server_status &= ~_IN_TRANS

    async def execute_then_fetchall(self, write: str, write_params: Params, read: str,
                                    read_params: Params) -> tuple[int, list[Row]]:
        changed = await self.execute(f"{self._text(write, write_params)};\n{self._text(read, read_params)}")
        await self._next()
        return changed, list(await self._cur.fetchall())

    async def fetchall_and_commit(self, sql: str, params: Params = ()) -> list[Row]:
        await self.execute(f"{self._text(sql, params)};\nCOMMIT")
        rows = list(await self._cur.fetchall())
        await self._commit_answered()
        return rows

    async def executemany_and_commit(self, sql: str, rows: Sequence[Params]) -> None:
        parts = _insert_parts(sql)
        if parts is None or not rows:
            await self.executemany(sql, rows)
            return
        head, values = parts
        await self.execute(head + ",".join(self._text(values, row) for row in rows) + ";\nCOMMIT")
        await self._commit_answered()


class MySQLDatabase(Database):
    """MySQL 8 / MariaDB through a pool of the configured driver (DatabaseConfig.driver)."""

    dialect = "mysql"

    def __init__(self, pool: Any, size: int, driver: Driver, tables: Tables | None = None):
        self._pool = pool
        self.driver = driver
        self.tables = tables or Tables()
        # a FIFO queue in front of the pool: the pools let a newcomer take a freed connection
        # before the tasks already waiting, which under load starves some of them for seconds
        self._slots = asyncio.Semaphore(size)

    @classmethod
    async def connect(cls, config: DatabaseConfig, pool_size: int = 10) -> MySQLDatabase:
        """Open the pool; raise CannotConnect if the server cannot be reached or refuses the connection
        (or its TLS certificate is refused, or it offers no TLS when TLS is asked for: both drivers would
        quietly stay on plain TCP)."""
        driver = DRIVERS[config.driver]
        where = config.describe()
        try:
            tls = ssl_context(config.tls) if config.tls else None
        except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError: a file that is not PEM
            raise CannotConnect(where, f"cannot use the TLS files of DATABASE_URL: {exc}", lasting=True) from None
        try:
            if tls is not None and not await offers_tls(config.host, config.port):
                raise CannotConnect(where, "the server does not offer TLS", lasting=True)
            pool = await driver.create_pool(config, pool_size, tls)
        except (driver.error, OSError, RuntimeError, ValueError) as exc:  # RuntimeError: an auth plugin's package
            raise _connect_error(where, exc) from None
        return cls(pool, pool_size, driver, Tables(config.table_prefix))

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Tx]:
        async with self._slots, self._transaction() as tx:
            yield tx

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[Tx]:
        driver = self.driver
        try:
            conn = await self._pool.acquire()
        except (driver.error, OSError, RuntimeError) as exc:  # RuntimeError: the pool is closed
            raise DatabaseError(f"cannot get a database connection: {exc}") from None
        try:
            async with conn.cursor() as cur:
                tx = _MySQLTx(cur, driver)
                try:
                    yield tx
                except asyncio.CancelledError:
                    # cancelled mid-query: the connection's state is unknown, so it is not reused;
                    # the server rolls the transaction back when the connection closes
                    conn.close()
                    raise
                except BaseException:
                    await conn.rollback()
                    raise
                if not tx.committed:
                    await conn.commit()
        except asyncio.CancelledError:
            conn.close()  # cancelled during the commit: the same
            raise
        except (driver.error, OSError) as exc:
            conn.close()  # a broken connection must not go back to the pool
            raise driver.wrap(exc) from exc
        finally:
            self._pool.release(conn)

    async def close(self) -> None:
        self._pool.close()
        await self._pool.wait_closed()
