"""The backup and the rollback read their URLs as `chat-api serve` does: the option, else the
environment, else the `.env` file (--env-file, else ./.env), and say where each came from, masked
(issue 12.8 review: the runbook's rollback hook ran with no URLs and restored the defaults)."""

from __future__ import annotations

import json

import pytest

from chat.cli import main as chat_api
from chat.cutover.backup import main as backup_main
from chat.cutover.rollback import main as rollback_main
from tests.cutover.backups import LIVE, manifest, run_backup
from tests.cutover.support import redis_url


@pytest.fixture
def no_url_variables(monkeypatch, tmp_path):
    """No REDIS_URL or DATABASE_URL in the environment; the working directory a fresh one."""
    for name in ("REDIS_URL", "DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return work


def test_rollback_takes_the_urls_from_the_dotenv_in_the_working_directory(dbs, no_url_variables, tmp_path,
                                                                           capsys):
    dbs[LIVE].set("session:s1", "x")
    assert run_backup(tmp_path / "bk") == 0
    dbs[LIVE].set("session:s2", "created after the backup")
    sqlite_path = tmp_path / "chat.db"
    (no_url_variables / ".env").write_text(f"REDIS_URL={redis_url(LIVE)}\nDATABASE_URL=sqlite:///{sqlite_path}\n")
    capsys.readouterr()

    assert rollback_main(["--from", str(tmp_path / "bk"), "--quiet", "--yes"]) == 0

    err = capsys.readouterr().err
    env = no_url_variables / ".env"
    assert f"rollback.py: read {env} (2 variable(s) used)" in err
    assert f"redis {redis_url(LIVE)} (from REDIS_URL in {env})" in err
    assert f"{sqlite_path} (from DATABASE_URL in {env})" in err
    assert dbs[LIVE].exists("session:s2") == 0  # the .env's Redis was rolled back, not the default


def test_the_environment_wins_and_passwords_are_never_shown(no_url_variables, tmp_path, monkeypatch, capsys):
    env = tmp_path / "service.env"
    env.write_text("REDIS_URL=redis://:s3cret@127.0.0.1:1/1\nDATABASE_URL=mysql://u:dbs3cret@127.0.0.1:1/x\n")
    monkeypatch.setenv("DATABASE_URL", "mysql://u:envs3cret@127.0.0.1:1/y")

    assert backup_main(["--out", str(tmp_path / "bk"), "--env-file", str(env), "--dry-run", "--quiet"]) == 1

    err = capsys.readouterr().err
    assert "s3cret" not in err
    assert f"redis redis://:***@127.0.0.1:1/1 (from REDIS_URL in {env})" in err
    assert "database mysql://u:***@127.0.0.1:1/y (from $DATABASE_URL)" in err


def test_without_any_source_the_default_is_named(no_url_variables, tmp_path, capsys):
    assert backup_main(["--out", str(tmp_path / "bk"), "--skip-database", "--redis-url", redis_url(LIVE),
                        "--dry-run"]) == 0
    err = capsys.readouterr().err
    assert "no .env file read" in err and "(from --redis-url)" in err
    assert "warning: no configuration file is backed up" in err


def test_a_named_env_file_that_cannot_be_read_is_a_usage_error(no_url_variables, tmp_path, capsys):
    assert rollback_main(["--from", str(tmp_path), "--env-file", str(tmp_path / "missing.env")]) == 2
    assert "missing.env" in capsys.readouterr().err


def test_the_backup_takes_the_dotenv_it_read_along(dbs, no_url_variables, tmp_path, capsys):
    env = tmp_path / "prod.env"
    env.write_text(f"REDIS_URL={redis_url(LIVE)}\n")

    # chat-api's own --env-file, before the command, reaches the program
    assert chat_api(["--env-file", str(env), "backup", "--out", str(tmp_path / "bk"), "--skip-database",
                     "--quiet"]) == 0

    taken = manifest(tmp_path / "bk")["config"]
    assert [entry["original"] for entry in taken] == [str(env.resolve())]
    assert "warning" not in capsys.readouterr().err
    assert json.loads((tmp_path / "bk" / "manifest.json").read_text())["redis"]["url"] == redis_url(LIVE)


def test_reverse_migrate_without_a_target_warns_where_the_sessions_go(dbs, tmp_path, capsys):
    """Without --reverse-target the sessions land in the restored db, where the old services do not look."""
    assert run_backup(tmp_path / "bk") == 0
    capsys.readouterr()
    assert rollback_main(["--from", str(tmp_path / "bk"), "--redis-url", redis_url(LIVE), "--skip-database",
                          "--reverse-migrate", "--dry-run", "--quiet"]) == 0
    err = capsys.readouterr().err
    assert f"warning: --reverse-migrate without --reverse-target writes the sessions back into {redis_url(LIVE)} " \
           f"(db {LIVE})" in err
    assert rollback_main(["--from", str(tmp_path / "bk"), "--redis-url", redis_url(LIVE), "--skip-database",
                          "--reverse-migrate", "--reverse-target", redis_url(11), "--dry-run", "--quiet"]) == 0
    assert "warning" not in capsys.readouterr().err
