"""Settings from the environment, and the one-line exit-2 failure of the CLI."""

import os
import subprocess
import sys

import pytest

from chat.settings import Settings, SettingsError, parse_database_url


@pytest.mark.parametrize(
    "url",
    [
        "mysql://chat:p%40ss%3Aw%2Fd@db.example:3307/chat_api",
        "mysql+aiomysql://chat:p%40ss%3Aw%2Fd@db.example:3307/chat_api",
        "mysql+asyncmy://chat:p%40ss%3Aw%2Fd@db.example:3307/chat_api",
    ],
)
def test_mysql_urls_with_percent_encoded_credentials(url):
    cfg = parse_database_url(url)
    assert (cfg.kind, cfg.host, cfg.port, cfg.user, cfg.password, cfg.database) == (
        "mysql",
        "db.example",
        3307,
        "chat",
        "p@ss:w/d",
        "chat_api",
    )
    assert "p@ss" not in cfg.describe() and "p@ss" not in repr(cfg)


def test_sqlite_urls():
    assert parse_database_url("sqlite:///data/chat.db").path == "data/chat.db"
    assert parse_database_url("sqlite:////tmp/chat.db").path == "/tmp/chat.db"


def test_embedded_default(tmp_path):
    s = Settings.from_env({"CHAT_DATA_DIR": str(tmp_path)})
    assert s.embedded and s.redis is None and s.database.kind == "sqlite"
    assert s.ai_provider == "echo" and s.port == 8000 and s.ai_model == "qwen-turbo"
    assert s.jwt_secret_key == Settings.from_env({"CHAT_DATA_DIR": str(tmp_path)}).jwt_secret_key


def test_dashscope_key_selects_dashscope(tmp_path):
    s = Settings.from_env({"CHAT_DATA_DIR": str(tmp_path), "DASHSCOPE_API_KEY": "sk-x"})
    assert s.ai_provider == "dashscope" and "sk-x" not in repr(s)


@pytest.mark.parametrize(
    "env, variable",
    [
        ({"DATABASE_URL": "postgres://x@h/db", "JWT_SECRET_KEY": "s"}, "DATABASE_URL"),
        ({"DATABASE_URL": "mysql://root@h", "JWT_SECRET_KEY": "s"}, "DATABASE_URL"),
        ({"DATABASE_URL": "mysql://root@h:notaport/db", "JWT_SECRET_KEY": "s"}, "DATABASE_URL"),
        ({"REDIS_URL": "http://h:6379/0", "JWT_SECRET_KEY": "s"}, "REDIS_URL"),
        ({"REDIS_URL": "redis://h:6379/zero", "JWT_SECRET_KEY": "s"}, "REDIS_URL"),
        ({"REDIS_URL": "redis://h:6379/0"}, "JWT_SECRET_KEY"),
        ({"PORT": "eighty"}, "PORT"),
        ({"AI_PROVIDER": "dashscope"}, "DASHSCOPE_API_KEY"),
        ({"AI_PROVIDER": "skynet"}, "AI_PROVIDER"),
    ],
)
def test_bad_values_name_the_variable(env, variable, tmp_path):
    with pytest.raises(SettingsError) as err:
        Settings.from_env({"CHAT_DATA_DIR": str(tmp_path), **env})
    assert err.value.variable == variable


def test_cli_prints_one_clear_line_and_exits_2(tmp_path):
    env = {**os.environ, "DATABASE_URL": "mysql://root:hunter2@h:3306", "JWT_SECRET_KEY": "s", "CHAT_DATA_DIR": str(tmp_path)}
    env.pop("REDIS_URL", None)
    proc = subprocess.run(
        [sys.executable, "-m", "chat", "db", "upgrade"], env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "DATABASE_URL" in lines[0] and "Traceback" not in proc.stderr
    assert "hunter2" not in proc.stderr + proc.stdout


@pytest.mark.parametrize("env, variable", [({"LOG_LEVEL": "chatty"}, "LOG_LEVEL"), ({"WS_HEARTBEAT_S": "0"}, "WS_HEARTBEAT_S"),
                                           ({"PRESENCE_TTL_S": "0"}, "PRESENCE_TTL_S")])
def test_values_that_would_break_the_service_are_refused(env, variable, tmp_path):
    with pytest.raises(SettingsError) as err:
        Settings.from_env({"CHAT_DATA_DIR": str(tmp_path), **env})
    assert err.value.variable == variable
