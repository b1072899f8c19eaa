"""The chat-api command line through `python -m chat`."""

import os
import subprocess
import sys
from pathlib import Path

import jwt

from states import mermaid_diagram

SECRET = "cli-secret-0123456789abcdef0123456"  # 32 bytes: a real deployment's minimum


def run(*args, env_extra=None, cwd=None):
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "DATABASE_URL")}
    env.update(env_extra or {})
    return subprocess.run(
        [sys.executable, "-m", "chat", *args], env=env, capture_output=True, text=True, timeout=60, cwd=cwd, check=False
    )


def test_token_is_signed_with_the_configured_secret(tmp_path):
    proc = run("token", "--sub", "agent-7", "--role", "agent", "--ttl-s", "120", "--teams", "t1,t2",
               env_extra={"JWT_SECRET_KEY": SECRET, "CHAT_DATA_DIR": str(tmp_path)})
    assert proc.returncode == 0, proc.stderr
    claims = jwt.decode(proc.stdout.strip(), "cli-secret-0123456789abcdef0123456", algorithms=["HS256"])
    assert claims["sub"] == "agent-7" and claims["role"] == "agent" and claims["teams"] == ["t1", "t2"]
    assert 110 <= claims["exp"] - claims["iat"] <= 120


def test_states_diagram_matches_the_table():
    proc = run("states", "diagram")
    assert proc.returncode == 0 and proc.stdout == mermaid_diagram()


def test_db_upgrade_is_idempotent_on_sqlite(tmp_path):
    env = {"DATABASE_URL": f"sqlite:///{tmp_path}/x.db", "JWT_SECRET_KEY": SECRET, "CHAT_DATA_DIR": str(tmp_path)}
    first = run("db", "upgrade", env_extra=env)
    second = run("db", "upgrade", env_extra=env)
    assert first.returncode == 0 and "applied schema version(s) [1, 2]" in first.stdout
    assert second.returncode == 0 and "nothing to do" in second.stdout


def test_db_upgrade_on_mariadb(mysql_database_url, tmp_path):
    env = {"DATABASE_URL": mysql_database_url.replace("mysql://", "mysql+aiomysql://"), "JWT_SECRET_KEY": SECRET,
           "CHAT_DATA_DIR": str(tmp_path)}
    first = run("db", "upgrade", env_extra=env)
    second = run("db", "upgrade", env_extra=env)
    assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
    assert "nothing to do" in second.stdout


def test_usage_error_exits_2():
    assert run("frobnicate").returncode == 2


def test_console_script_is_declared():
    text = (Path(__file__).parents[1] / "pyproject.toml").read_text()
    assert 'chat-api = "chat.cli:main"' in text


def test_cutover_programs_are_subcommands(tmp_path):
    """`chat-api migrate-config` is scripts/migrate_config.py: same options, output and exit code."""
    old_env = tmp_path / "old.env"
    old_env.write_text("PORT=8080\nDB_HOST=db\nDB_PASSWORD=s3cret\nJWT_SECRET=k\n")
    args = ["--input", str(old_env), "--output", str(tmp_path / "new.env"), "--dry-run"]
    script = subprocess.run([sys.executable, "scripts/migrate_config.py", *args], capture_output=True, text=True,
                            timeout=60, cwd=Path(__file__).parents[1], check=False)
    command = run("migrate-config", *args)
    assert command.returncode == script.returncode == 0, command.stderr
    assert command.stdout == script.stdout and "s3cret" not in command.stdout
    listed = run("--help").stdout
    for name in ("migrate-redis", "migrate-config", "backup", "rollback", "monitor"):
        assert name in listed
        helped = run(name, "--help")
        assert helped.returncode == 0 and helped.stdout.startswith(f"usage: chat-api {name} ")


def test_cutover_usage_errors_keep_their_exit_code():
    assert run("migrate-redis", "--batch", "0").returncode == 2
    assert run("monitor", "--url", "ftp://example.invalid/").returncode == 2
