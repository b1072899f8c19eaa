"""The two backends behind one interface: transactions, errors, placeholders."""

import uuid

import pytest

from chat.settings import parse_database_url
from chat.store import DatabaseError, DuplicateKey, connect
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
