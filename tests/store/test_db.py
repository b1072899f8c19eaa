"""The two backends behind one interface: transactions, errors, placeholders."""

import asyncio
import sqlite3
import threading
import uuid

import pytest

from chat.settings import parse_database_url
from chat.store import DatabaseError, DuplicateKey, connect
from chat.store import sqlite as sqlite_backend
from chat.store.db import marks
from chat.store.sqlite import _sqlite_sql


async def test_a_closed_database_raises_database_error(database_url):
    db = await connect(parse_database_url(database_url))
    await db.close()
    with pytest.raises(DatabaseError):
        await db.ping()


async def test_a_failed_block_rolls_back_and_a_duplicate_is_duplicate_key(store):
    db, a, b, title = store.db, str(uuid.uuid4()), str(uuid.uuid4()), str(uuid.uuid4())
    insert = f"INSERT INTO {db.tables.labels} (id, title, created_ms) VALUES (%s, %s, %s)"
    with pytest.raises(RuntimeError):
        async with db.transaction() as tx:
            await tx.execute(insert, (a, title, 1))
            raise RuntimeError("boom")
    assert await db.fetchone(f"SELECT id FROM {db.tables.labels} WHERE id = %s", (a,)) is None
    await db.execute(insert, (a, title, 1))
    with pytest.raises(DuplicateKey):
        await db.execute(insert, (b, title, 1))


def test_marks_and_sqlite_placeholders():
    assert marks(["a", "b", "c"]) == "%s, %s, %s"
    assert _sqlite_sql("SELECT 1 WHERE a = %s AND b LIKE '%%x'") == "SELECT 1 WHERE a = ? AND b LIKE '%x'"


async def test_sqlite_waits_for_another_process_write_lock_without_blocking_the_loop(tmp_path, monkeypatch):
    """A `chat-api db upgrade` run beside the service holds the write lock: the transaction waits
    for it (the loop keeps running meanwhile), and gives up with DatabaseError after BUSY_TIMEOUT_S."""
    db = await connect(parse_database_url(f"sqlite:///{tmp_path}/chat.db"))
    other = sqlite3.connect(tmp_path / "chat.db", isolation_level=None)
    try:
        await db.execute("CREATE TABLE t (n INTEGER)")
        other.execute("BEGIN IMMEDIATE")
        other.execute("INSERT INTO t VALUES (1)")
        write = asyncio.create_task(db.execute("INSERT INTO t VALUES (2)"))
        ticks = 0
        while ticks < 20:  # the loop turns while the write waits
            await asyncio.sleep(0)
            ticks += 1
        assert not write.done()
        other.execute("COMMIT")
        assert await write == 1
        assert await db.fetchall("SELECT n FROM t ORDER BY n") == [(1,), (2,)]
        monkeypatch.setattr(sqlite_backend, "BUSY_TIMEOUT_S", 0.0)
        other.execute("BEGIN IMMEDIATE")
        with pytest.raises(DatabaseError, match="locked"):
            await db.execute("INSERT INTO t VALUES (3)")
        other.execute("ROLLBACK")
        assert await db.fetchone("SELECT COUNT(*) FROM t") == (2,)
    finally:
        other.close()
        await db.close()


async def test_sqlite_checkpoints_the_wal_off_the_loop_every_so_many_commits(tmp_path, monkeypatch):
    monkeypatch.setattr(sqlite_backend, "CHECKPOINT_EVERY", 4)
    path = tmp_path / "chat.db"
    db = await connect(parse_database_url(f"sqlite:///{path}"))
    try:
        header = path.stat().st_size
        assert await db.fetchone("PRAGMA wal_autocheckpoint") == (0,)  # never inside a COMMIT on the loop
        await db.execute("CREATE TABLE t (n INTEGER)")
        await db.execute("INSERT INTO t VALUES (1)")
        assert path.stat().st_size == header  # three commits: everything is still in the WAL
        await db.execute("INSERT INTO t VALUES (2)")  # the fourth: a checkpoint starts
        await db._checkpointer.wait()
        assert path.stat().st_size > header  # the pages were copied into the database file
        copy = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        assert copy.execute("SELECT COUNT(*) FROM t").fetchone() == (2,)
        copy.close()
    finally:
        await db.close()


async def test_sqlite_wal_starts_over_after_a_checkpoint_that_commits_ran_during(tmp_path, monkeypatch):
    """Commits made while a checkpoint copies the WAL are copied too, with the service's writes held
    back: the next commit writes the WAL from its beginning again instead of growing it without end."""
    monkeypatch.setattr(sqlite_backend, "CHECKPOINT_EVERY", 4)
    copied, go_on = threading.Event(), threading.Event()
    passes = []
    checkpoint = sqlite_backend._Checkpointer._checkpoint

    def first_pass_then_wait(self):
        checkpoint(self)
        passes.append(self._writes.locked())
        if len(passes) == 1:
            copied.set()  # the first pass is done: the test commits before it returns
            go_on.wait(5)

    monkeypatch.setattr(sqlite_backend._Checkpointer, "_checkpoint", first_pass_then_wait)
    path = tmp_path / "chat.db"
    db = await connect(parse_database_url(f"sqlite:///{path}"))
    try:
        await db.execute("CREATE TABLE t (n INTEGER)")
        for n in range(3):  # the fourth commit starts a checkpoint
            await db.execute("INSERT INTO t VALUES (%s)", (n,))
        assert await asyncio.to_thread(copied.wait, 5)
        for n in range(3, 23):  # twenty commits the first pass did not see
            await db.execute("INSERT INTO t VALUES (%s)", (n,))
        go_on.set()
        await db._checkpointer.wait()
        assert passes == [False, True]  # the second pass ran with the writes held
        await db.execute("INSERT INTO t VALUES (23)")
        other = sqlite3.connect(path)
        _, frames, _ = other.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        assert other.execute("SELECT COUNT(*) FROM t").fetchone() == (24,)
        other.close()
        assert frames <= 2  # the last commit's pages only: the WAL was started over
    finally:
        go_on.set()
        await db.close()


async def test_a_file_another_process_is_setting_up_is_opened_once_it_lets_go(tmp_path):
    """Two instances started at once on a new SQLite file: one switching it to WAL holds a lock the other's
    start-up needs for a moment; the other waits for it instead of exiting with "database is locked"."""
    path = tmp_path / "chat.db"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")  # the other process, mid set-up
    opening = asyncio.ensure_future(connect(parse_database_url(f"sqlite:///{path}")))
    for _ in range(5):
        await asyncio.sleep(0)
    assert not opening.done()  # waiting, not failed
    holder.execute("COMMIT")
    holder.close()
    db = await opening
    assert await db.fetchone("PRAGMA journal_mode") == ("wal",)
    await db.close()
