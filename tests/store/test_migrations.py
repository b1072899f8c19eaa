"""Schema upgrades on MariaDB and SQLite, and the check that refuses another system's tables."""

import contextlib
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import replace

import pymysql  # type: ignore[import-untyped]  # no stubs installed (types-PyMySQL)
import pytest

from chat import cli
from chat.settings import parse_database_url
from chat.store import Database, Store, connect
from chat.store.migrations import ForeignSchema, type_family
from chat.store.schema import LATEST_VERSION, MIGRATIONS, Tables
from chat.store.staff import Standing
from states.clock import now_ms
from tests.conftest import TEST_DATABASE_URL, new_id, redis_url
from tests.legacy_tables import LEGACY_ROWS, create_legacy, fresh_mysql_database

ALL_VERSIONS = [version for version, _ in MIGRATIONS]  # what an upgrade of an empty database applies


async def test_upgrade_is_idempotent(store):
    assert await store.migrations.upgrade() == []
    assert await store.migrations.version() == LATEST_VERSION
    for table in store.db.tables.all():
        assert await store.db.fetchone(f"SELECT COUNT(*) FROM {table}") is not None


@contextlib.asynccontextmanager
async def tables_of_their_own(database_url: str, name: str) -> AsyncIterator[tuple[Database, Store]]:
    """A database and Store under a prefix of their own (the versions applied are the test's); dropped after."""
    db = await connect(replace(parse_database_url(database_url), table_prefix=f"{name}_{os.getpid()}_"))
    try:
        yield db, Store(db)
    finally:
        for table in reversed(db.tables.all()):
            await db.execute(f"DROP TABLE IF EXISTS {table}")
        await db.close()


async def test_a_version_1_database_gets_the_accounts_columns_and_keeps_its_rows(database_url, monkeypatch):
    """Version 2 adds users.password_hash (ALTER TABLE) and refresh_tokens to a database made by version 1."""
    from chat.store import migrations

    async with tables_of_their_own(database_url, "v1") as (db, store):
        monkeypatch.setattr(migrations, "MIGRATIONS", MIGRATIONS[:1])
        assert await store.migrations.upgrade() == [1]
        await db.execute(f"INSERT INTO {db.tables.users} (id, role, active, created_ms, updated_ms) "
                         "VALUES ('old-agent', 'agent', 1, 1, 1)")
        monkeypatch.setattr(migrations, "MIGRATIONS", MIGRATIONS)
        assert await store.migrations.differences() == []  # the missing column is the upgrade's to add
        assert await store.migrations.upgrade() == ALL_VERSIONS[1:]
        assert await store.migrations.upgrade() == []
        assert await db.fetchone(f"SELECT id, password_hash FROM {db.tables.users}") == ("old-agent", None)
        assert await db.fetchone(f"SELECT COUNT(*) FROM {db.tables.refresh_tokens}") == (0,)
        await store.migrations._add_column(MIGRATIONS[1][1][0])  # a rerun (another instance) finds it there


async def test_version_6_makes_a_version_5_databases_client_msg_ids_exact(database_url, monkeypatch):
    """Before version 6, MySQL's utf8mb4_bin (PAD SPACE) took `k1 ` for a resend of `k1`: acknowledged, not stored."""
    from chat.store import migrations

    async with tables_of_their_own(database_url, "v5") as (db, store):
        monkeypatch.setattr(migrations, "MIGRATIONS", MIGRATIONS[:5])
        assert await store.migrations.upgrade() == ALL_VERSIONS[:5]
        cid = new_id()
        await db.execute(f"INSERT INTO {db.tables.conversations} (id, user_id, state, agent_type, version, last_seq, "
                         "created_ms, updated_ms) VALUES (%s, 'u1', 'ai', 'ai', 0, 0, 1, 1)", (cid,))
        first, _ = await store.messages.append(cid, sender_type="customer", sender_id="u1", content="a",
                                               client_msg_id="k1")
        monkeypatch.setattr(migrations, "MIGRATIONS", MIGRATIONS[:6])
        assert await store.migrations.upgrade() == [6]
        await store.migrations._exact_column(MIGRATIONS[5][1][0])  # a rerun (another instance) changes nothing
        second, created = await store.messages.append(cid, sender_type="customer", sender_id="u1", content="b",
                                                      client_msg_id="k1 ")
        assert created and second.id != first.id
        assert [m.content for m in await store.messages.list_of(cid)] == ["a", "b"]


async def test_version_7_gives_a_version_6_databases_users_tokens_after_ms(database_url, monkeypatch):
    """Version 7 adds users.tokens_after_ms (ALTER TABLE): NULL in the rows there, whose tokens all still
    count, and set by a deactivation or a new password from then on."""
    from chat.store import migrations

    async with tables_of_their_own(database_url, "v6") as (db, store):
        monkeypatch.setattr(migrations, "MIGRATIONS", MIGRATIONS[:6])
        assert await store.migrations.upgrade() == ALL_VERSIONS[:6]
        await db.execute(f"INSERT INTO {db.tables.users} (id, role, active, password_hash, created_ms, updated_ms) "
                         "VALUES ('old-admin', 'admin', 1, 'a-hash', 1, 1)")
        monkeypatch.setattr(migrations, "MIGRATIONS", MIGRATIONS)
        assert await store.migrations.differences() == []  # the missing column is the upgrade's to add
        assert await store.migrations.upgrade() == [7]
        await store.migrations._add_column(MIGRATIONS[6][1][0])  # a rerun (another instance) finds it there
        assert await store.migrations.upgrade() == []
        assert await db.fetchone(f"SELECT tokens_after_ms FROM {db.tables.users} WHERE id = 'old-admin'") == (None,)
        assert await store.staff.standing("old-admin") == Standing(True, "admin", None)
        before = now_ms()
        await store.accounts.update("old-admin", {"active": False})
        (mark,) = await db.fetchone(f"SELECT tokens_after_ms FROM {db.tables.users} WHERE id = 'old-admin'")
        assert before <= mark <= now_ms()
        assert await store.staff.standing("old-admin") == Standing(False, "admin", mark // 1000)


async def test_a_version_missing_below_the_highest_is_applied(database_url, monkeypatch):
    """Versions from two branches may land in either order: one recorded above another never skips it."""
    from chat.store import migrations

    async with tables_of_their_own(database_url, "gap") as (db, store):
        missing = MIGRATIONS[-2]
        monkeypatch.setattr(migrations, "MIGRATIONS", [m for m in MIGRATIONS if m is not missing])
        assert missing[0] not in await store.migrations.upgrade()
        monkeypatch.setattr(migrations, "MIGRATIONS", MIGRATIONS)
        assert await store.migrations.upgrade() == [missing[0]]
        assert await store.migrations.upgrade() == []
        assert await store.migrations.differences() == []


@pytest.fixture(params=["mysql", "sqlite"])
def legacy_config(request, tmp_path):
    """A new database holding only the old system's tables and rows."""
    if request.param == "sqlite":
        config = parse_database_url(f"sqlite:///{tmp_path}/old.db")
        create_legacy(config)
        yield config
        return
    with fresh_mysql_database(TEST_DATABASE_URL) as url:
        config = parse_database_url(url)
        create_legacy(config)
        yield config


async def _tables_and_rows(db) -> dict[str, int]:
    if db.dialect == "mysql":
        names = [r[0] for r in await db.fetchall("SELECT TABLE_NAME FROM information_schema.TABLES "
                                                 "WHERE TABLE_SCHEMA = DATABASE()")]
    else:
        names = [r[0] for r in await db.fetchall("SELECT name FROM sqlite_master WHERE type = 'table'")]
    return {name: (await db.fetchone(f"SELECT COUNT(*) FROM {name}"))[0] for name in sorted(names)}


async def test_the_old_systems_tables_stop_the_upgrade_before_anything_is_written(legacy_config):
    db = await connect(legacy_config)
    try:
        before = await _tables_and_rows(db)
        with pytest.raises(ForeignSchema) as refused:
            await Store(db).migrations.upgrade()
        assert await _tables_and_rows(db) == before  # not one table created, not one row changed
    finally:
        await db.close()
    text = str(refused.value)
    lines = {d.table: d for d in refused.value.differences}
    assert set(lines) == {"users", "customer_contacts", "teams", "labels", "conversations", "messages"}
    conversations = lines["conversations"]
    assert {"state", "agent_type", "version", "last_seq", "created_ms"} <= set(conversations.missing)
    assert {"status", "assignee_id", "contact_id", "created_at"} <= set(conversations.extra)
    assert conversations.mismatched[0][:2] == ("id", "VARCHAR(64)")
    assert "conversations: missing column(s) user_id, state" in text
    assert "DB_TABLE_PREFIX" in text and "nothing was written" in text


async def test_with_a_prefix_the_service_tables_live_beside_the_old_ones(legacy_config):
    db = await connect(replace(legacy_config, table_prefix="chat_"))
    try:
        before = await _tables_and_rows(db)
        store = Store(db)
        assert await store.migrations.upgrade() == ALL_VERSIONS
        after = await _tables_and_rows(db)
        assert {name: rows for name, rows in after.items() if name in before} == before  # old ones untouched
        assert sorted(set(after) - set(before)) == sorted(db.tables.all())
        assert await store.migrations.upgrade() == []
    finally:
        await db.close()


async def test_a_table_of_our_shape_with_extra_columns_is_used(tmp_path):
    config = parse_database_url(f"sqlite:///{tmp_path}/x.db")
    db = await connect(config)
    try:
        await db.execute("CREATE TABLE labels (id VARCHAR(64) NOT NULL PRIMARY KEY, title VARCHAR(191) NOT NULL, "
                         "description TEXT NULL, color VARCHAR(16) NULL, created_ms BIGINT NOT NULL, note TEXT NULL)")
        assert await Store(db).migrations.upgrade() == ALL_VERSIONS
    finally:
        await db.close()


def test_types_compare_by_family():
    assert type_family("VARCHAR(64)") == type_family("varchar(191)") == "varchar"
    assert type_family("INTEGER") == type_family("int(11)") == "int"
    assert type_family("bigint(20) unsigned") == "bigint"


def test_a_prefix_is_an_identifier_part_only():
    assert Tables("chat_").conversations == "chat_conversations"
    assert Tables("chat_").of("schema_version") == "chat_schema_version"
    with pytest.raises(ValueError):
        Tables("x; DROP TABLE users")


def test_db_upgrade_on_the_old_tables_exits_2_and_lists_them(tmp_path, monkeypatch, capsys):
    create_legacy(parse_database_url(f"sqlite:///{tmp_path}/old.db"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path}/old.db")
    monkeypatch.setenv("REDIS_URL", redis_url())
    monkeypatch.setenv("JWT_SECRET_KEY", "test-secret-0123456789abcdef0123456789")
    assert cli.main(["db", "upgrade"]) == 2
    err = capsys.readouterr().err
    assert "conversations: missing column(s)" in err and "DB_TABLE_PREFIX" in err
    monkeypatch.setenv("DB_TABLE_PREFIX", "chat_")
    assert cli.main(["db", "upgrade"]) == 0
    assert f"applied schema version(s) {ALL_VERSIONS}" in capsys.readouterr().out


def test_serve_on_the_old_mysql_tables_exits_2_having_written_nothing(tmp_path):
    with fresh_mysql_database(TEST_DATABASE_URL) as url:
        create_legacy(parse_database_url(url))
        env = {"PATH": os.environ["PATH"], "DATABASE_URL": url, "REDIS_URL": redis_url(),
               "JWT_SECRET_KEY": "test-secret-0123456789abcdef0123456789", "AI_PROVIDER": "echo"}
        proc = subprocess.run([sys.executable, "-m", "chat", "serve", "--host", "127.0.0.1", "--port", "0"],
                              env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False)
        assert proc.returncode == 2, proc.stderr
        assert "conversations: missing column(s)" in proc.stderr and "nothing was written" in proc.stderr
        conn = pymysql.connect(**_admin(url))
        try:
            with conn.cursor() as cur:
                cur.execute("SHOW TABLES")
                assert sorted(r[0] for r in cur.fetchall()) == sorted(LEGACY_ROWS)  # no schema_version either
        finally:
            conn.close()


def test_serve_on_the_old_sqlite_tables_exits_2_and_does_not_hang(tmp_path):
    """SQLite's connection thread is closed when the upgrade is refused: the process ends (it hung before)."""
    create_legacy(parse_database_url(f"sqlite:///{tmp_path}/old.db"))
    env = {"PATH": os.environ["PATH"], "DATABASE_URL": f"sqlite:///{tmp_path}/old.db", "REDIS_URL": redis_url(),
           "JWT_SECRET_KEY": "test-secret-0123456789abcdef0123456789", "AI_PROVIDER": "echo"}
    proc = subprocess.run([sys.executable, "-m", "chat", "serve", "--host", "127.0.0.1", "--port", "0"],
                          env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 2, proc.stderr
    assert "conversations: missing column(s)" in proc.stderr


def _admin(url: str) -> dict[str, object]:
    c = parse_database_url(url)
    return {"host": c.host, "port": c.port, "user": c.user, "password": c.password, "database": c.database}
