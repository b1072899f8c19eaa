"""The MySQL backend's contract on both drivers (asyncmy, the default of mysql://, and aiomysql):
every Tx and Database method, every error mapping, transactions, last_insert_id, a connection
killed under the pool, TLS asked of a server without it, and the FIFO queue in front of the pool.

The store tests (tests/store) run on the default driver; this module runs each of them on both."""

import asyncio
import uuid
import warnings
from collections.abc import AsyncIterator

import pytest

from chat.settings import parse_database_url
from chat.store import Database, DatabaseError, DuplicateKey, IntegrityError, connect
from chat.store.db import CannotConnect
from chat.store.mysql import MySQLDatabase
from tests.test_tls import cipher_of, pki, tls_mariadb  # noqa: F401  (fixtures: a private MariaDB with TLS)


@pytest.fixture(params=["asyncmy", "aiomysql"])
def driver(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def url_for(mysql_database_url: str, driver: str) -> str:
    return mysql_database_url.replace("mysql://", f"mysql+{driver}://", 1)


@pytest.fixture
async def db(mysql_database_url: str, driver: str) -> AsyncIterator[Database]:
    database = await connect(parse_database_url(url_for(mysql_database_url, driver)), pool_size=4)
    yield database
    await database.close()


@pytest.fixture
async def tables(db: Database) -> AsyncIterator[tuple[str, str]]:
    """A parent table (AUTO_INCREMENT id, UNIQUE name) and a child with a foreign key to it."""
    suffix = uuid.uuid4().hex[:8]
    parent, child = f"drv_parent_{suffix}", f"drv_child_{suffix}"
    await db.execute(f"CREATE TABLE {parent} (id BIGINT AUTO_INCREMENT PRIMARY KEY, name VARCHAR(64) NOT NULL, "
                     "n INTEGER NOT NULL DEFAULT 0, UNIQUE (name)) ENGINE=InnoDB")
    await db.execute(f"CREATE TABLE {child} (id BIGINT PRIMARY KEY, parent_id BIGINT NOT NULL, "
                     f"FOREIGN KEY (parent_id) REFERENCES {parent} (id)) ENGINE=InnoDB")
    yield parent, child
    await db.execute(f"DROP TABLE {child}")
    await db.execute(f"DROP TABLE {parent}")


async def test_the_url_scheme_picks_the_driver(db: Database, driver: str, mysql_database_url: str):
    assert isinstance(db, MySQLDatabase) and db.driver.name == driver
    assert parse_database_url(mysql_database_url).driver == "asyncmy"  # mysql:// is asyncmy
    assert parse_database_url(mysql_database_url.replace("mysql://", "mariadb://")).driver == "asyncmy"


async def test_every_method_and_last_insert_id(db: Database, tables: tuple[str, str]):
    parent, _ = tables
    async with db.transaction() as tx:
        assert await tx.execute(f"INSERT INTO {parent} (name) VALUES (%s)", ("a",)) == 1
        first = tx.last_insert_id
        await tx.execute(f"INSERT INTO {parent} (name) VALUES (%s)", ("b",))
        assert tx.last_insert_id == first + 1
        await tx.executemany(f"INSERT INTO {parent} (name, n) VALUES (%s, %s)", [("c", 3), ("d", 4)])
        await tx.executemany(f"INSERT INTO {parent} (name) VALUES (%s)", [])  # nothing to do
        assert await tx.fetchone(f"SELECT name, n FROM {parent} WHERE name = %s", ("d",)) == ("d", 4)
    assert await db.fetchall(f"SELECT name FROM {parent} ORDER BY id") == [("a",), ("b",), ("c",), ("d",)]
    assert await db.fetchone(f"SELECT name FROM {parent} WHERE name = %s", ("zz",)) is None
    # rowcount is rows matched (FOUND_ROWS), as in SQLite: an UPDATE that changes nothing still counts
    assert await db.execute(f"UPDATE {parent} SET n = n WHERE name IN (%s, %s)", ("a", "b")) == 2
    assert await db.fetchone("SELECT %s LIKE 'x%%'", ("xy",)) == (1,)  # %% is a literal %
    await db.ping()


async def test_a_failed_block_rolls_back_everything(db: Database, tables: tuple[str, str]):
    parent, _ = tables
    with pytest.raises(RuntimeError):
        async with db.transaction() as tx:
            await tx.execute(f"INSERT INTO {parent} (name) VALUES (%s)", ("gone",))
            raise RuntimeError("boom")
    assert await db.fetchall(f"SELECT name FROM {parent}") == []


async def test_errors_map_to_the_store_errors(db: Database, tables: tuple[str, str]):
    parent, child = tables
    await db.execute(f"INSERT INTO {parent} (name) VALUES (%s)", ("x",))
    with pytest.raises(DuplicateKey):
        await db.execute(f"INSERT INTO {parent} (name) VALUES (%s)", ("x",))
    with pytest.raises(IntegrityError) as refused:  # a foreign key: an integrity error, not a duplicate
        await db.execute(f"INSERT INTO {child} (id, parent_id) VALUES (%s, %s)", (1, 999999))
    assert not isinstance(refused.value, DuplicateKey)
    with pytest.raises(DatabaseError) as bad:
        await db.fetchall("SELECT no_such_column FROM " + parent)
    assert not isinstance(bad.value, IntegrityError)
    assert await db.fetchone(f"SELECT COUNT(*) FROM {parent}") == (1,)  # each failure rolled back, pool fine


async def test_a_server_warning_is_a_python_warning_on_both_drivers(db: Database, tables: tuple[str, str], caplog):
    """What the schema upgrade silences on every start ("already exists"); never a log line."""
    parent, _ = tables
    with pytest.warns(Warning, match="already exists"):
        await db.execute(f"CREATE TABLE IF NOT EXISTS {parent} (id BIGINT PRIMARY KEY)")
    assert not [r for r in caplog.records if "already exists" in r.getMessage()]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        await db.execute(f"UPDATE {parent} SET n = n + 1")  # no warning: nothing issued


async def test_statements_travel_together_and_stay_one_transaction(db: Database, tables: tuple[str, str]):
    parent, _ = tables
    await db.execute(f"INSERT INTO {parent} (name) VALUES (%s)", ("a",))
    async with db.transaction() as tx:
        changed, rows = await tx.execute_then_fetchall(
            f"UPDATE {parent} SET n = n + %s WHERE name IN (%s, %s)", (5, "a", "nobody"),
            f"SELECT name, n FROM {parent} ORDER BY id", ())
        assert (changed, rows) == (1, [("a", 5)])  # the read sees the write before it
        # a value holding `;`, quotes and `%` stays a value (the driver escapes it into the text)
        await tx.executemany_and_commit(f"INSERT INTO {parent} (name, n) VALUES (%s, %s)",
                                        [("b'; DROP TABLE x; -- 100%", 1), ("c", 2)])
        with pytest.raises(RuntimeError, match="after the COMMIT"):
            await tx.execute(f"INSERT INTO {parent} (name) VALUES (%s)", ("late",))
    assert await db.fetchall(f"SELECT name, n FROM {parent} ORDER BY id") == [
        ("a", 5), ("b'; DROP TABLE x; -- 100%", 1), ("c", 2)]


async def test_a_refused_insert_sent_with_its_commit_commits_nothing(db: Database, tables: tuple[str, str]):
    parent, _ = tables
    await db.execute(f"INSERT INTO {parent} (name) VALUES (%s)", ("taken",))
    with pytest.raises(DuplicateKey):
        async with db.transaction() as tx:
            await tx.execute_then_fetchall(f"UPDATE {parent} SET n = 7", (), "SELECT 1", ())
            await tx.executemany_and_commit(f"INSERT INTO {parent} (name) VALUES (%s)", [("new",), ("taken",)])
    # neither the UPDATE before it nor the first row: the COMMIT after the refused INSERT never ran
    assert await db.fetchall(f"SELECT name, n FROM {parent}") == [("taken", 0)]


async def test_a_read_outside_a_transaction_ends_its_snapshot(mysql_database_url: str, driver: str,
                                                                tables: tuple[str, str]):
    """db.fetchall sends the query with its COMMIT: the pooled connection leaves no transaction open, so
    its next read sees what others committed since (REPEATABLE READ would keep the old snapshot)."""
    parent, _ = tables
    url = parse_database_url(url_for(mysql_database_url, driver))
    reader, writer = await connect(url, pool_size=1), await connect(url, pool_size=1)
    try:
        assert await reader.fetchall(f"SELECT COUNT(*) FROM {parent}") == [(0,)]
        await writer.execute(f"INSERT INTO {parent} (name) VALUES (%s)", ("new; it's 100%",))
        assert await reader.fetchone(f"SELECT COUNT(*) FROM {parent}") == (1,)
        assert await reader.fetchall(f"SELECT name FROM {parent} WHERE name = %s", ("new; it's 100%",)) == [
            ("new; it's 100%",)]
        assert await reader.fetchone(f"SELECT name FROM {parent} WHERE name = %s", ("none",)) is None
        with pytest.raises(DatabaseError):  # an error in the query: its COMMIT never ran, the pool is fine
            await reader.fetchall(f"SELECT no_such_column FROM {parent}")
        assert await reader.fetchone(f"SELECT COUNT(*) FROM {parent}") == (1,)
    finally:
        await reader.close()
        await writer.close()


async def test_the_pool_keeps_a_connection_whose_commit_went_with_a_statement(mysql_database_url: str, driver: str,
                                                                               tables: tuple[str, str]):
    """asyncmy keeps a server status only when it is not 0, and after a COMMIT with autocommit off it is 0: unless
    the in-transaction mark is cleared, its pool closes the connection and every such query pays a new one."""
    parent, _ = tables
    db = await connect(parse_database_url(url_for(mysql_database_url, driver)), pool_size=1)
    try:
        first = await db.fetchone("SELECT CONNECTION_ID()")
        async with db.transaction() as tx:
            await tx.execute_then_fetchall(f"UPDATE {parent} SET n = 1", (), "SELECT 1", ())
            await tx.executemany_and_commit(f"INSERT INTO {parent} (name) VALUES (%s)", [("kept",)])
        assert await db.fetchone("SELECT CONNECTION_ID()") == first
    finally:
        await db.close()


async def test_a_killed_connection_is_an_error_then_the_pool_recovers(db: Database):
    reached = False
    with pytest.raises(DatabaseError):
        async with db.transaction() as tx:
            victim = await tx.fetchone("SELECT CONNECTION_ID()")
            assert victim is not None
            async with db.transaction() as other:  # a second pooled connection kills the first
                await other.execute(f"KILL {int(victim[0])}")
            reached = True
            await tx.fetchone("SELECT 1")
    assert reached
    for _ in range(6):  # more than the pool holds: the dead connection was not put back
        assert await db.fetchone("SELECT 1") == (1,)


async def test_waiting_transactions_get_the_connections_in_order(db: Database):
    order: list[int] = []
    release = asyncio.Event()

    async def hold(i: int) -> None:
        async with db.transaction() as tx:
            order.append(i)
            await tx.fetchone("SELECT 1")
            await release.wait()

    tasks = [asyncio.create_task(hold(i)) for i in range(10)]
    while len(order) < 4:  # the pool's 4 connections are taken
        await asyncio.sleep(0)
    release.set()
    await asyncio.gather(*tasks)
    assert order == list(range(10))


async def test_a_closed_database_raises_database_error(db: Database):
    await db.close()
    with pytest.raises(DatabaseError):
        await db.ping()


async def test_tls_asked_of_a_server_without_it_is_refused(mysql_database_url: str, driver: str):
    """The shared test MariaDB has no certificate: the greeting says so before any driver connects."""
    url = url_for(mysql_database_url, driver) + "?ssl=true&ssl_verify=none"
    with pytest.raises(CannotConnect, match="does not offer TLS") as refused:
        await connect(parse_database_url(url))
    assert refused.value.lasting  # not waited for at start (chat.store.db.connect_waiting)


async def test_an_unreachable_server_is_database_error(driver: str):
    with pytest.raises(CannotConnect, match="cannot connect to mysql://root@127.0.0.1:1/x") as refused:
        await connect(parse_database_url(f"mysql+{driver}://root@127.0.0.1:1/x"))
    assert not refused.value.lasting and "[Errno 111]" in refused.value.reason  # why, also where aiomysql hides it


async def test_both_drivers_talk_tls_and_check_the_certificate(tls_mariadb, pki, driver: str):  # noqa: F811
    base = f"mysql+{driver}://root@127.0.0.1:{tls_mariadb.port}/tls"
    assert await cipher_of(f"{base}?ssl=true&ssl_ca={pki.ca}")
    assert await cipher_of(f"{base}?ssl=1&ssl_verify=false")
    with pytest.raises(CannotConnect, match="certif") as refused:
        await cipher_of(f"{base}?ssl=true&ssl_ca={pki.other_ca}")
    assert refused.value.lasting


def test_a_deadlock_or_a_lock_wait_timeout_is_a_rolled_back_transaction():
    import asyncmy.errors
    import pymysql

    from chat.store.db import DatabaseError, RolledBack
    from chat.store.mysql import DRIVERS

    for name, error in (("asyncmy", asyncmy.errors.OperationalError), ("aiomysql", pymysql.err.OperationalError)):
        wrap = DRIVERS[name].wrap
        assert isinstance(wrap(error(1213, "Deadlock found when trying to get lock")), RolledBack)
        assert isinstance(wrap(error(1205, "Lock wait timeout exceeded")), RolledBack)
        lost = wrap(error(2013, "Lost connection to MySQL server during query"))
        assert isinstance(lost, DatabaseError) and not isinstance(lost, RolledBack)
