"""Schema upgrades on MariaDB and SQLite."""

from chat.store.schema import LATEST_VERSION, table_names


async def test_upgrade_is_idempotent(store):
    assert await store.migrations.upgrade() == []
    assert await store.migrations.version() == LATEST_VERSION
    for table in table_names():
        assert await store.db.fetchone(f"SELECT COUNT(*) FROM {table}") is not None
