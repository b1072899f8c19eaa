"""chat.cutover.backup (scripts/backup.py) against the real Redis (dbs 10-13) and MariaDB."""

from __future__ import annotations

import re

import pytest

from chat.cutover.backup import cli as backup_cli
from chat.cutover.backup import main as backup_main
from chat.cutover.backup import redis_part
from chat.cutover.backup_format import REDIS_FILE
from chat.cutover.common import mask_url
from tests.cutover.backups import HAS_MYSQLDUMP, LIVE, ROWS, manifest, run_backup, seed_redis, seed_sql
from tests.cutover.support import redis_url


def test_mysqldump_is_the_default_and_which_decides(dbs, mysql_url, tmp_path, monkeypatch):
    seed_sql(mysql_url)
    monkeypatch.setattr(backup_cli.shutil, "which", lambda name: None)  # as if not installed
    assert run_backup(tmp_path / "logical", database_url=mysql_url) == 0
    assert manifest(tmp_path / "logical")["database"]["method"] == "logical"
    monkeypatch.undo()
    assert HAS_MYSQLDUMP, "mysqldump and mysql (mariadb-client) must be installed"
    assert run_backup(tmp_path / "dump", database_url=mysql_url) == 0
    part = manifest(tmp_path / "dump")["database"]
    assert part["method"] == "mysqldump"
    assert {t: part["tables"][t]["rows"] for t in ROWS} == {t: len(r) for t, r in ROWS.items()}


def test_env_variables_are_the_defaults(dbs, mysql_url, tmp_path, monkeypatch):
    dbs[LIVE].set("session:env", "x")
    monkeypatch.setenv("REDIS_URL", redis_url(LIVE))
    monkeypatch.setenv("DATABASE_URL", mysql_url)

    assert backup_main(["--out", str(tmp_path / "bk"), "--quiet", "--no-mysqldump"]) == 0

    data = manifest(tmp_path / "bk")
    assert data["redis"]["db"] == LIVE and data["redis"]["keys"] == 1
    assert data["database"]["url"] == mask_url(mysql_url)


# --------------------------------------------------------------------------- backup details


def test_key_vanishing_between_scan_and_dump_is_skipped_and_counted(dbs, tmp_path, monkeypatch):
    seed_redis(dbs[LIVE])
    real_scan = redis_part.scan_keys

    def scan_then_delete(*args):
        for keys, fraction in real_scan(*args):
            if b"session:ttl" in keys:
                dbs[LIVE].delete("session:ttl")
            yield keys, fraction

    monkeypatch.setattr(redis_part, "scan_keys", scan_then_delete)

    assert run_backup(tmp_path / "bk") == 0

    data = manifest(tmp_path / "bk")
    assert data["redis"]["vanished"] == 1
    assert "session:ttl" not in (tmp_path / "bk" / REDIS_FILE).read_text()


def test_patterns_limit_the_keys(dbs, tmp_path):
    seed_redis(dbs[LIVE])
    assert run_backup(tmp_path / "bk", "--pattern", "presence:*", "--pattern", "agents:*") == 0
    data = manifest(tmp_path / "bk")
    assert data["redis"]["patterns"] == ["presence:*", "agents:*"]
    assert data["redis"]["keys"] == 4


def test_non_empty_out_is_refused_without_force(dbs, tmp_path, capsys):
    out = tmp_path / "bk"
    out.mkdir()
    (out / "something").write_text("x")

    assert run_backup(out) == 2
    assert not (out / "manifest.json").exists()

    assert run_backup(out, "--force") == 0
    assert (out / "manifest.json").exists()


def test_backup_dry_run_writes_nothing(dbs, mysql_url, tmp_path, capsys):
    seed_redis(dbs[LIVE])
    seed_sql(mysql_url)

    assert run_backup(tmp_path / "bk", "--dry-run", database_url=mysql_url) == 0

    assert not (tmp_path / "bk").exists()
    out = capsys.readouterr().out
    assert re.search(r"redis keys +9 +would be backed up", out)
    assert re.search(r"table messages +3", out)


def test_unreachable_database_fails_without_a_manifest_or_a_leaked_password(dbs, tmp_path, capsys):
    url = "mysql://root:s3cret-pw@127.0.0.1:1/chat_api"

    rc = run_backup(tmp_path / "bk", "--no-mysqldump", database_url=url)

    assert rc == 1
    assert not (tmp_path / "bk" / "manifest.json").exists()
    captured = capsys.readouterr()
    assert "s3cret-pw" not in captured.out + captured.err
    assert "result: FAILED" in captured.out


def test_bad_urls_and_missing_config_are_usage_errors(tmp_path):
    assert backup_main(["--out", str(tmp_path / "a"), "--redis-url", "http://x", "--skip-database"]) == 2
    assert backup_main(["--out", str(tmp_path / "a"), "--skip-redis", "--database-url", "pg://x/y"]) == 2
    assert backup_main(["--out", str(tmp_path / "a"), "--skip-redis", "--skip-database",
                        "--config", str(tmp_path / "missing.env")]) == 2
    with pytest.raises(SystemExit) as exc:
        backup_main(["--help"])
    assert exc.value.code == 0


def test_the_old_systems_tables_under_the_services_names_are_refused(dbs, tmp_path, capsys, monkeypatch):
    """Without DB_TABLE_PREFIX the service's names are the old system's `users`, `messages`...: the
    backup refuses (a rollback would restore them as if they were the service's); with it, it goes on."""
    from chat.settings import parse_database_url
    from tests.conftest import TEST_DATABASE_URL
    from tests.legacy_tables import create_legacy, fresh_mysql_database

    with fresh_mysql_database(TEST_DATABASE_URL) as url:
        create_legacy(parse_database_url(url))
        monkeypatch.delenv("DB_TABLE_PREFIX", raising=False)
        assert run_backup(tmp_path / "bare", "--no-mysqldump", database_url=url) == 1
        out = capsys.readouterr()
        assert "another shape" in out.err + out.out and "DB_TABLE_PREFIX" in out.err + out.out
        assert not (tmp_path / "bare" / "manifest.json").exists()
        monkeypatch.setenv("DB_TABLE_PREFIX", "chat_")
        assert run_backup(tmp_path / "prefixed", "--no-mysqldump", database_url=url) == 0
        assert manifest(tmp_path / "prefixed")["database"]["tables"]["chat_messages"]["absent"] is True
