"""Review of the cut-over tooling: DB_TABLE_PREFIX from the .env, --restore-saved's order, newer rows and
labels, the prefix known rather than guessed, blank variables, an unreadable ./.env. Real Redis
(dbs 10-13), MariaDB and SQLite."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pymysql

from chat.cutover.backup import main as backup_main
from chat.cutover.backup_format import DEFAULT_REDIS_URL
from chat.cutover.rollback import main as rollback_main
from chat.cutover.rollback.backed_up import BackedUp
from chat.cutover.rollback.checks import load_backup
from chat.cutover.rollback.saved import save_since_backup
from chat.cutover.targets import Variables
from chat.settings import DatabaseConfig
from chat.store.schema import Tables, render, schema_tables
from tests.cutover.backups import LIVE, manifest, mysql_connection, run_backup, seed_sql
from tests.cutover.support import redis_url


def sqlite_schema(path: Path, prefix: str) -> None:
    """The service's schema under `prefix` in a new SQLite file."""
    conn = sqlite3.connect(path)
    for table in schema_tables():
        for statement in render(table, "sqlite", Tables(prefix)):
            conn.execute(statement)
    conn.commit()
    conn.close()


def live_rows(url: str, sql: str) -> list[dict[str, Any]]:
    conn = mysql_connection(url)
    try:
        with conn.cursor(pymysql.cursors.DictCursor) as cur:
            cur.execute(sql)
            return list(cur.fetchall())
    finally:
        conn.close()


def execute(url: str, *statements: str) -> None:
    conn = mysql_connection(url)
    try:
        with conn.cursor() as cur:
            for statement in statements:
                cur.execute(statement)
        conn.commit()
    finally:
        conn.close()


def saved_file(path: Path, rows: list[tuple[str, dict[str, Any]]], prefix: str | None = "") -> Path:
    header: dict[str, Any] = {"type": "saved", "backup_ms": 1, "saved_ms": 2, "counts": {}}
    if prefix is not None:
        header["table_prefix"] = prefix
    lines = [header, *({"type": "row", "table": t, "row": r} for t, r in rows)]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


def restore(path: Path, url: str) -> int:
    return rollback_main(["--restore-saved", str(path), "--database-url", url])


def test_backup_and_rollback_take_db_table_prefix_from_the_dotenv(monkeypatch, tmp_path, capsys):
    for name in ("REDIS_URL", "DATABASE_URL", "DB_TABLE_PREFIX"):
        monkeypatch.delenv(name, raising=False)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    db = tmp_path / "chat.db"
    sqlite_schema(db, "chat_")
    conn = sqlite3.connect(db)
    conn.execute("INSERT INTO chat_users (id, role, created_ms, updated_ms) VALUES ('u-1', 'agent', 1, 1)")
    conn.commit()
    conn.close()
    (work / ".env").write_text(f"DATABASE_URL=sqlite:///{db}\nDB_TABLE_PREFIX=chat_\n")

    assert backup_main(["--out", str(tmp_path / "bk"), "--skip-redis", "--quiet"]) == 0
    part = manifest(tmp_path / "bk")["database"]
    assert part["tables"]["chat_users"] == {"rows": 1} and part["table_prefix"] == "chat_"
    conn = sqlite3.connect(db)
    conn.execute("INSERT INTO chat_users (id, role, created_ms, updated_ms) VALUES ('u-2', 'agent', ?, ?)",
                 (manifest(tmp_path / "bk")["backup_ms"] + 1,) * 2)
    conn.commit()
    conn.close()
    capsys.readouterr()

    assert rollback_main(["--from", str(tmp_path / "bk"), "--skip-redis", "--yes", "--quiet"]) == 0
    assert "saved since the backup: 1 chat_users" in capsys.readouterr().out


def test_restore_saved_writes_parents_first_whatever_the_files_order(dbs, mysql_url, tmp_path):
    seed_sql(mysql_url)
    execute(mysql_url,
            "INSERT INTO conversations VALUES ('conv-9', 'cust-1', 'ai', 'ai', NULL, NULL, 1, 0, NULL, NULL, 5, 5)",
            "INSERT INTO conversation_events VALUES ('e-9', 'conv-9', 1, 'close', 'ai', 'closed', 'agent', "
            "'agent-1', NULL, NULL, NULL, 6)")
    conversation = live_rows(mysql_url, "SELECT * FROM conversations WHERE id = 'conv-9'")[0]
    event = live_rows(mysql_url, "SELECT * FROM conversation_events WHERE id = 'e-9'")[0]
    execute(mysql_url, "DELETE FROM conversation_events WHERE id = 'e-9'",
            "DELETE FROM conversations WHERE id = 'conv-9'")
    # a mysqldump backup lists its tables alphabetically: the events before their conversations
    path = saved_file(tmp_path / "saved.jsonl", [("conversation_events", event), ("conversations", conversation)])

    assert restore(path, mysql_url) == 0
    assert live_rows(mysql_url, "SELECT id FROM conversation_events WHERE id = 'e-9'") == [{"id": "e-9"}]


def test_restore_saved_never_overwrites_a_newer_row(dbs, mysql_url, tmp_path):
    seed_sql(mysql_url)
    older = live_rows(mysql_url, "SELECT * FROM conversations WHERE id = 'conv-1'")[0]
    execute(mysql_url, "UPDATE conversations SET state = 'closed', version = 4, updated_ms = updated_ms + 1000 "
                       "WHERE id = 'conv-1'")
    newer_version = {**older, "updated_ms": older["updated_ms"] + 2000, "state": "ai"}  # yet version 3 < 4
    path = saved_file(tmp_path / "a.jsonl", [("conversations", older)])
    assert restore(path, mysql_url) == 0
    path = saved_file(tmp_path / "b.jsonl", [("conversations", newer_version)])
    assert restore(path, mysql_url) == 0

    assert live_rows(mysql_url, "SELECT state, version FROM conversations WHERE id = 'conv-1'") == [
        {"state": "closed", "version": 4}]


def test_restore_saved_leaves_exactly_the_saved_labels(dbs, mysql_url, tmp_path):
    seed_sql(mysql_url)  # conv-1 has label-1 in the backup; it was removed after it
    conversation = live_rows(mysql_url, "SELECT * FROM conversations WHERE id = 'conv-1'")[0]
    saved = {**conversation, "updated_ms": conversation["updated_ms"] + 1000}
    path = saved_file(tmp_path / "saved.jsonl", [("conversations", saved)])  # its saved set: no label

    assert restore(path, mysql_url) == 0
    assert live_rows(mysql_url, "SELECT * FROM conversation_labels WHERE conversation_id = 'conv-1'") == []


def test_the_save_knows_the_prefix_rather_than_guessing_it(tmp_path, monkeypatch):
    prefix = "xconversation_"  # "xconversation_labels" ends like "conversation_labels"
    db = tmp_path / "chat.db"
    sqlite_schema(db, prefix)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DB_TABLE_PREFIX", prefix)
    assert backup_main(["--out", str(tmp_path / "bk"), "--skip-redis", "--skip-config", "--database-url",
                        f"sqlite:///{db}", "--quiet"]) == 0
    backup = load_backup(tmp_path / "bk")
    conn = sqlite3.connect(db)
    conn.execute(f"INSERT INTO {prefix}labels VALUES ('l-1', 'vip', NULL, NULL, 100)")
    conn.commit()
    conn.close()
    tables = Tables(prefix).all()

    saved = save_since_backup(tmp_path, tables, 50, DatabaseConfig(kind="sqlite", path=str(db), table_prefix=prefix),
                              BackedUp(backup))

    assert saved.counts[f"{prefix}labels"] == 1


def test_a_blank_variable_hides_the_dotenv_and_the_source_says_so(tmp_path):
    (tmp_path / ".env").write_text("REDIS_URL=redis://127.0.0.1:1/5\n")
    url, source = Variables(None, {"REDIS_URL": " "}, tmp_path).source("REDIS_URL", "--redis-url", None)
    assert url == DEFAULT_REDIS_URL
    assert "REDIS_URL in" not in source and "$REDIS_URL set empty" in source


def test_an_unreadable_dotenv_stops_only_a_run_that_needs_it(dbs, monkeypatch, tmp_path, capsys):
    for name in ("REDIS_URL", "DATABASE_URL", "DB_TABLE_PREFIX"):
        monkeypatch.delenv(name, raising=False)
    assert run_backup(tmp_path / "bk") == 0
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    (work / ".env").write_bytes(b"REDIS_URL=\xff\xfe\n")
    capsys.readouterr()

    assert rollback_main(["--from", str(tmp_path / "bk"), "--redis-url", redis_url(LIVE), "--skip-database",
                          "--dry-run", "--quiet"]) == 0
    assert backup_main(["--out", str(tmp_path / "bk2"), "--redis-url", redis_url(LIVE), "--skip-database",
                        "--skip-config", "--dry-run", "--quiet"]) == 0

    assert backup_main(["--out", str(tmp_path / "bk3"), "--skip-database", "--dry-run", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert f"{work / '.env'}: not UTF-8" in err and "--env-file" not in err.split("error:")[-1]
