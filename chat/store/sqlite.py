"""The embedded SQLite backend: one connection, transactions serialized (a single writer).

The statements run on the event loop's own thread, through the standard library's sqlite3: a
statement on a local file in WAL mode takes microseconds, less than handing it to a worker thread
and waiting for the answer (what aiosqlite does, and what cost the embedded mode most of its CPU).
With `synchronous = NORMAL` a commit does not fsync (the WAL is synced at checkpoints): a power
loss may lose the last commits, never corrupt the file; a crash of the process loses nothing.
The write lock is taken at BEGIN IMMEDIATE; when another process holds it (a `chat-api db upgrade`
run beside the service), the transaction waits for it without blocking the loop. The WAL is copied
back into the database file (a checkpoint, with its two fsyncs) on a worker thread, not inside a
COMMIT on the loop as SQLite's automatic checkpoint would.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager, suppress
from functools import lru_cache
from pathlib import Path
from typing import cast

from chat.settings import DatabaseConfig
from chat.store.db import Database, DatabaseError, DuplicateKey, IntegrityError, Params, Row, Tx
from chat.store.schema import Tables

BUSY_TIMEOUT_S = 5.0  # how long a transaction waits for another process's write lock
BUSY_RETRY_S = 0.005
CHECKPOINT_EVERY = 100  # commits between two checkpoints (SQLite's own: about every 1,000 pages)

log = logging.getLogger(__name__)


def _ran(conn: sqlite3.Connection, statement: str, deadline: float) -> bool:
    """Run the statement; False while another process holds the lock it needs (until the deadline: then raised)."""
    try:
        conn.execute(statement)
    except sqlite3.OperationalError as exc:
        if ("locked" in str(exc) or "busy" in str(exc)) and asyncio.get_running_loop().time() < deadline:
            return False
        raise
    return True


@lru_cache(maxsize=512)
def _sqlite_sql(sql: str) -> str:
    return sql.replace("%s", "?").replace("%%", "%")


def _sqlite_error(exc: sqlite3.Error) -> DatabaseError:
    if isinstance(exc, sqlite3.IntegrityError):
        text = str(exc)
        return (DuplicateKey if "UNIQUE" in text or "PRIMARY KEY" in text else IntegrityError)(text)
    return DatabaseError(str(exc))


class _SQLiteTx(Tx):
    def __init__(self, conn: sqlite3.Connection):
        self._conn = conn

    async def execute(self, sql: str, params: Params = ()) -> int:
        try:
            return self._conn.execute(_sqlite_sql(sql), tuple(params)).rowcount
        except sqlite3.Error as exc:
            raise _sqlite_error(exc) from exc

    async def executemany(self, sql: str, rows: Sequence[Params]) -> None:
        try:
            self._conn.executemany(_sqlite_sql(sql), [tuple(r) for r in rows])
        except sqlite3.Error as exc:
            raise _sqlite_error(exc) from exc

    async def fetchone(self, sql: str, params: Params = ()) -> Row | None:
        try:
            return cast("Row | None", self._conn.execute(_sqlite_sql(sql), tuple(params)).fetchone())
        except sqlite3.Error as exc:
            raise _sqlite_error(exc) from exc

    async def fetchall(self, sql: str, params: Params = ()) -> list[Row]:
        try:
            return cast("list[Row]", self._conn.execute(_sqlite_sql(sql), tuple(params)).fetchall())
        except sqlite3.Error as exc:
            raise _sqlite_error(exc) from exc


def _create_private(path: Path) -> None:
    """Create a new database file 0600 in a directory made 0700 (an existing one is left as it is):
    SQLite gives its -wal and -shm files the database file's mode."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    with suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))


class _Checkpointer:
    """Copies the WAL into the database file every CHECKPOINT_EVERY commits, on a worker thread
    through a connection of its own (a PASSIVE checkpoint never blocks the service's writes).

    The WAL starts over from its beginning (its pages overwritten in place, not appended) only
    once a checkpoint has copied every frame of it; under a steady load the commits made during
    the checkpoint keep it from ever catching up, and the WAL would grow without end (600 MB in
    8 s of the message benchmark, each frame a new block for the file system to allocate). So a
    second pass copies what was committed during the first while `writes` (the database's lock)
    holds the service's transactions back: the next BEGIN then starts the WAL over."""

    def __init__(self, path: str, writes: asyncio.Lock):
        self._path = path
        self._writes = writes
        self._conn: sqlite3.Connection | None = None  # used by one worker thread at a time
        self._commits = 0
        self._running: asyncio.Task[None] | None = None

    def committed(self) -> None:
        """Count a commit; start a checkpoint when it is time and none is under way."""
        self._commits += 1
        if self._commits >= CHECKPOINT_EVERY and self._running is None:
            self._commits = 0
            self._running = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        try:
            await asyncio.to_thread(self._checkpoint)
            async with self._writes:  # what was committed meanwhile: only that is left to copy
                await asyncio.to_thread(self._checkpoint)
        except sqlite3.Error as exc:  # the next one copies what this one did not
            log.warning("SQLite WAL checkpoint failed: %s", exc)
        finally:
            self._running = None

    def _checkpoint(self) -> None:
        if self._conn is None:
            self._conn = sqlite3.connect(self._path, isolation_level=None, timeout=0, check_same_thread=False)
        self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)")

    async def wait(self) -> None:
        """Until the checkpoint under way (if any) is done."""
        if self._running is not None:
            await asyncio.shield(self._running)

    async def close(self) -> None:
        """Wait for the checkpoint under way, then close the connection."""
        await self.wait()
        if self._conn is not None:
            self._conn.close()


class SQLiteDatabase(Database):
    """The embedded default: one connection, transactions serialized by a lock (single writer)."""

    dialect = "sqlite"

    def __init__(self, conn: sqlite3.Connection, tables: Tables | None = None, path: str = ":memory:"):
        self._conn = conn
        self.tables = tables or Tables()
        self._lock = asyncio.Lock()
        self._checkpointer = None if path == ":memory:" else _Checkpointer(path, self._lock)  # no WAL in memory

    @classmethod
    async def connect(cls, config: DatabaseConfig) -> SQLiteDatabase:
        """Open (and create) the file; WAL mode and foreign keys on."""
        try:
            if config.path != ":memory:":
                _create_private(Path(config.path))
            # autocommit mode (isolation_level None): transaction() says BEGIN and COMMIT itself;
            # busy timeout 0: a lock held by another process is waited for in _begin, off the loop
            conn = sqlite3.connect(config.path, isolation_level=None, timeout=0, check_same_thread=False,
                                   cached_statements=512)
            deadline = asyncio.get_running_loop().time() + BUSY_TIMEOUT_S
            for pragma in ("foreign_keys = ON", "journal_mode = WAL", "synchronous = NORMAL", "wal_autocheckpoint = 0"):
                while not _ran(conn, f"PRAGMA {pragma}", deadline):  # another process is setting the file up
                    await asyncio.sleep(BUSY_RETRY_S)
        except (sqlite3.Error, OSError) as exc:
            raise DatabaseError(f"cannot open {config.describe()}: {exc}") from None
        return cls(conn, Tables(config.table_prefix), config.path)

    async def _begin(self) -> None:
        """BEGIN IMMEDIATE (the write lock), retried while another process holds it."""
        deadline = asyncio.get_running_loop().time() + BUSY_TIMEOUT_S
        try:
            while not _ran(self._conn, "BEGIN IMMEDIATE", deadline):
                await asyncio.sleep(BUSY_RETRY_S)
        except sqlite3.Error as exc:  # another error, the lock held past the deadline, or a closed connection
            raise DatabaseError(str(exc)) from None

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Tx]:
        async with self._lock:
            await self._begin()
            try:
                yield _SQLiteTx(self._conn)
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            try:
                self._conn.execute("COMMIT")
            except sqlite3.Error as exc:
                self._conn.execute("ROLLBACK")
                raise _sqlite_error(exc) from exc
        if self._checkpointer is not None:
            self._checkpointer.committed()

    async def close(self) -> None:
        if self._checkpointer is not None:
            await self._checkpointer.close()
        self._conn.close()
