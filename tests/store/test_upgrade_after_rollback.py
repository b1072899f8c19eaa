"""`chat-api db upgrade` after a rollback emptied the service's tables: no driver warnings shown.

A rollback empties every table, the record of schema versions with them; the next upgrade runs every
version again over tables that exist, and MySQL warns "Table ... already exists" for each CREATE TABLE
IF NOT EXISTS. The operator must see the upgrade's own line, not Python's warning machinery.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pymysql

from chat.settings import parse_database_url
from tests.conftest import TEST_DATABASE_URL
from tests.legacy_tables import fresh_mysql_database


def db_upgrade(url: str, cwd) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "DB_", "REDIS_", "PYTHONWARN"))}
    env.update(DATABASE_URL=url, DB_TABLE_PREFIX="chat_", JWT_SECRET_KEY="k" * 32)
    return subprocess.run([sys.executable, "-m", "chat", "db", "upgrade"], cwd=cwd, env=env,
                          capture_output=True, text=True, check=False)


def empty_every_table(url: str) -> None:
    config = parse_database_url(url)
    conn = pymysql.connect(host=config.host, port=config.port, user=config.user, password=config.password,
                           database=config.database, autocommit=True)
    try:
        with conn.cursor() as cur:
            cur.execute("SHOW TABLES")
            for (name,) in cur.fetchall():
                cur.execute(f"DELETE FROM `{name}`")
    finally:
        conn.close()


def test_upgrade_over_emptied_tables_prints_no_warning(tmp_path):
    with fresh_mysql_database(TEST_DATABASE_URL) as url:
        first = db_upgrade(url, tmp_path)
        assert first.returncode == 0, first.stderr
        empty_every_table(url)  # what a rollback to a backup taken before the cut-over does

        again = db_upgrade(url, tmp_path)

    assert again.returncode == 0, again.stderr
    assert "applied schema version(s)" in again.stdout
    assert "Warning" not in again.stderr and "already exists" not in again.stderr, again.stderr
