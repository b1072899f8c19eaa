"""Settings from the environment, and the one-line exit-2 failure of the CLI."""

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest

from chat import cli
from chat.settings import (
    DEFAULT_HANDOFF_PHRASES,
    DatabaseConfig,
    Settings,
    SettingsError,
    settings_table,
)
from chat.store import Store, connect
from states.redis_keys import EVENTS_CHANNEL

# fields that depend on the data directory or on embedded mode, not on their own variable
DERIVED = {"data_dir", "database", "jwt_secret_key", "embedded", "anonymous_visitors", "host"}


def test_embedded_default(tmp_path):
    s = Settings.from_env({"CHAT_DATA_DIR": str(tmp_path)})
    assert s.embedded and s.redis is None and s.database.kind == "sqlite"
    assert s.ai_provider == "echo" and s.port == 8000 and s.ai_model == "qwen-turbo"
    assert s.jwt_secret_key == Settings.from_env({"CHAT_DATA_DIR": str(tmp_path)}).jwt_secret_key


def test_the_embedded_mode_listens_on_this_machine_only_unless_told(tmp_path):
    """Its banner shows an admin password and tokens: 0.0.0.0 put them within reach of any network."""
    assert Settings.from_env({"CHAT_DATA_DIR": str(tmp_path)}).host == "127.0.0.1"
    assert Settings.from_env({"CHAT_DATA_DIR": str(tmp_path), "HOST": "0.0.0.0"}).host == "0.0.0.0"
    served = Settings.from_env({"DATABASE_URL": "mysql://root@db/chat", "JWT_SECRET_KEY": "k" * 32})
    assert served.host == "0.0.0.0"


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
        ({"AI_PROVIDER": "openai"}, "AI_BASE_URL"),
    ],
)
def test_bad_values_name_the_variable(env, variable, tmp_path):
    with pytest.raises(SettingsError) as err:
        Settings.from_env({"CHAT_DATA_DIR": str(tmp_path), **env})
    assert err.value.variable == variable


def test_cli_prints_one_clear_line_and_exits_2(tmp_path):
    env = {**os.environ, "DATABASE_URL": "mysql://root:hunter2@h:3306", "JWT_SECRET_KEY": "s",
           "CHAT_DATA_DIR": str(tmp_path)}
    env.pop("REDIS_URL", None)
    proc = subprocess.run(
        [sys.executable, "-m", "chat", "db", "upgrade"], env=env, capture_output=True, text=True, timeout=60,
        check=False,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "DATABASE_URL" in lines[0] and "Traceback" not in proc.stderr
    assert "hunter2" not in proc.stderr + proc.stdout


@pytest.mark.parametrize(
    "env, variable",
    [({"LOG_LEVEL": "chatty"}, "LOG_LEVEL"), ({"WS_HEARTBEAT_S": "0"}, "WS_HEARTBEAT_S"),
     ({"PRESENCE_TTL_S": "0"}, "PRESENCE_TTL_S"), ({"PORT": "65536"}, "PORT"),
     ({"DASHSCOPE_API_KEY": "k", "DASHSCOPE_BASE_URL": "not a url"}, "DASHSCOPE_BASE_URL"),
     ({"AI_PROVIDER": "openai", "AI_BASE_URL": "ftp://models.example.com/v1"}, "AI_BASE_URL"),
     ({"AI_PROVIDER": "openai", "AI_BASE_URL": "https:///v1"}, "AI_BASE_URL"),
     ({"AI_PROVIDER": "openai", "AI_BASE_URL": "http://models.example.com:99999/v1"}, "AI_BASE_URL")],
)
def test_values_that_would_break_the_service_are_refused(env, variable, tmp_path):
    with pytest.raises(SettingsError) as err:
        Settings.from_env({"CHAT_DATA_DIR": str(tmp_path), **env})
    assert err.value.variable == variable


def test_a_port_above_65535_is_refused_not_wrapped_around(tmp_path, capsys):
    """PORT=70000 once listened on 4464 (70000 - 65536) under a banner that said 70000."""
    assert Settings.from_env({"CHAT_DATA_DIR": str(tmp_path), "PORT": "65535"}).port == 65535
    with pytest.raises(SettingsError, match=r"^PORT: must be >= 0 and <= 65535, got 70000$"):
        Settings.from_env({"CHAT_DATA_DIR": str(tmp_path), "PORT": "70000"})
    with pytest.raises(SystemExit) as exit_:
        cli.main(["--env-file", "/dev/null", "serve", "--port", "70000"])
    assert exit_.value.code == 2 and "--port: must be >= 0 and <= 65535, got 70000" in capsys.readouterr().err


def test_every_field_but_embedded_is_a_row_with_its_own_variable():
    rows = settings_table()
    assert [row.attribute for row in rows] == [f.name for f in dataclasses.fields(Settings) if f.name != "embedded"]
    assert len({row.spec.env for row in rows}) == len(rows)


def test_unset_variables_give_the_declared_defaults(tmp_path):
    s = Settings.from_env({"CHAT_DATA_DIR": str(tmp_path)})
    declared = Settings()
    for row in settings_table():
        if row.attribute not in DERIVED:
            assert getattr(s, row.attribute) == getattr(declared, row.attribute) == row.default, row.attribute
    assert s.database == DatabaseConfig(kind="sqlite", path=str(tmp_path / "chat.db"))
    assert s.bus_channel == EVENTS_CHANNEL and s.log_level == "INFO"


def test_empty_and_blank_values_mean_the_default_except_handoff_phrases(tmp_path):
    blank = {row.spec.env: " " for row in settings_table() if row.spec.env != "HANDOFF_PHRASES"}
    unset = Settings.from_env({"CHAT_DATA_DIR": str(tmp_path)})
    assert Settings.from_env({**blank, "CHAT_DATA_DIR": str(tmp_path)}) == unset
    assert Settings.from_env({"CHAT_DATA_DIR": str(tmp_path), "HANDOFF_PHRASES": ""}).handoff_phrases == ()
    s = Settings.from_env({"CHAT_DATA_DIR": str(tmp_path), "HANDOFF_PHRASES": " a | |b "})
    assert s.handoff_phrases == ("a", "b") and Settings().handoff_phrases == DEFAULT_HANDOFF_PHRASES


def test_values_are_parsed_checked_and_normalized(tmp_path):
    s = Settings.from_env({
        "CHAT_DATA_DIR": str(tmp_path), "PORT": "9000", "LOG_LEVEL": " Debug", "ROUTING": "MANUAL",
        "AI_PROVIDER": "openai", "AI_BASE_URL": "http://llm:8080/v1/", "WS_HEARTBEAT_S": "2.5",
        "DASHSCOPE_BASE_URL": "https://dashscope-intl.aliyuncs.com/api/v1/",
    })
    assert (s.port, s.log_level, s.routing, s.ai_provider, s.ai_base_url, s.ws_heartbeat_s) == (
        9000, "DEBUG", "manual", "openai", "http://llm:8080/v1", 2.5
    )
    assert s.dashscope_base_url == "https://dashscope-intl.aliyuncs.com/api/v1"
    with pytest.raises(SettingsError, match=r"^AI_CONTEXT_CHARS: must be >= 100, got 99$"):
        Settings.from_env({"CHAT_DATA_DIR": str(tmp_path), "AI_CONTEXT_CHARS": "99"})
    with pytest.raises(SettingsError, match=r"^AI_RETRY_BASE_S: must be a number, got 'soon'$"):
        Settings.from_env({"CHAT_DATA_DIR": str(tmp_path), "AI_RETRY_BASE_S": "soon"})


def test_servers_leave_embedded_mode_and_need_a_secret(tmp_path):
    key = "k" * 32
    s = Settings.from_env({"CHAT_DATA_DIR": str(tmp_path), "REDIS_URL": "redis://h:6380/2", "JWT_SECRET_KEY": key})
    assert not s.embedded and (s.redis and s.redis.describe()) == "redis://h:6380/2" and s.database.kind == "sqlite"
    assert s.jwt_secret_key == key and not (tmp_path / "jwt-secret").exists()
    assert Path(s.database.path) == tmp_path / "chat.db"


def test_secrets_stay_out_of_repr_and_replace_keeps_working(tmp_path):
    s = Settings.from_env({"CHAT_DATA_DIR": str(tmp_path), "AI_API_KEY": "sk-ai", "JWT_SECRET_KEY": "jwt-s"})
    assert "sk-ai" not in repr(s) and "jwt-s" not in repr(s)
    moved = dataclasses.replace(s, port=1, bus_channel="elsewhere")
    assert (moved.port, moved.bus_channel, moved.ai_api_key) == (1, "elsewhere", "sk-ai")


@pytest.mark.parametrize("key", ["k", "x" * 31, "字" * 10])  # 30 bytes of UTF-8
@pytest.mark.parametrize("server", [{"REDIS_URL": "redis://h:6379/0"}, {"DATABASE_URL": "mysql://u@h/db"}])
def test_a_short_jwt_secret_is_refused_outside_the_embedded_mode(tmp_path, key, server):
    with pytest.raises(SettingsError, match=r"^JWT_SECRET_KEY: must be at least 32 bytes") as err:
        Settings.from_env({"CHAT_DATA_DIR": str(tmp_path), "JWT_SECRET_KEY": key, **server})
    assert key not in str(err.value)  # the message never echoes the secret
    for enough in ("x" * 32, "字" * 11):
        assert Settings.from_env({"CHAT_DATA_DIR": str(tmp_path), "JWT_SECRET_KEY": enough, **server}).jwt_secret_key
    assert Settings.from_env({"CHAT_DATA_DIR": str(tmp_path), "JWT_SECRET_KEY": key}).embedded  # a dev key is fine


def test_the_cli_refuses_a_short_secret_with_one_line(tmp_path):
    env = {**os.environ, "REDIS_URL": "redis://127.0.0.1:6379/9", "JWT_SECRET_KEY": "s",
           "CHAT_DATA_DIR": str(tmp_path)}
    env.pop("DATABASE_URL", None)
    proc = subprocess.run([sys.executable, "-m", "chat", "serve", "--port", "0"], env=env, capture_output=True,
                          text=True, timeout=60, check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [
        "chat-api: configuration error: JWT_SECRET_KEY: must be at least 32 bytes when DATABASE_URL or REDIS_URL "
        "is set, got 1"]


@pytest.fixture
def no_umask():
    """Files get exactly the mode they are created with (a umask would hide a world-readable one)."""
    old = os.umask(0)
    yield
    os.umask(old)


def mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


async def test_embedded_mode_files_are_private_from_their_first_byte(tmp_path, no_umask, monkeypatch):
    def no_chmod(*_args, **_kw):
        raise AssertionError("chmod after creating: the file was readable by others for a moment")

    monkeypatch.setattr(os, "chmod", no_chmod)
    monkeypatch.setattr(Path, "chmod", no_chmod)
    data = tmp_path / "data"
    s = Settings.from_env({"CHAT_DATA_DIR": str(data)})
    db = await connect(s.database)
    try:
        await Store(db).migrations.upgrade()
    finally:
        await db.close()
    secret = data / "jwt-secret"
    assert mode(data) == 0o700 and mode(secret) == 0o600 and mode(data / "chat.db") == 0o600
    assert secret.read_text() == s.jwt_secret_key and len(s.jwt_secret_key) >= 32
    assert sorted(p.name for p in data.iterdir() if p.name.startswith(".")) == []  # no temporary file left
    assert Settings.from_env({"CHAT_DATA_DIR": str(data)}).jwt_secret_key == s.jwt_secret_key  # kept


@pytest.mark.parametrize("content", ["", "  \n\t"])
def test_an_empty_or_blank_secret_file_is_replaced_by_a_new_secret(tmp_path, no_umask, content):
    (tmp_path / "jwt-secret").write_text(content)
    s = Settings.from_env({"CHAT_DATA_DIR": str(tmp_path)})
    assert len(s.jwt_secret_key) >= 32 and (tmp_path / "jwt-secret").read_text() == s.jwt_secret_key
    assert mode(tmp_path / "jwt-secret") == 0o600


def test_an_unreadable_secret_file_is_one_clear_settings_error(tmp_path):
    (tmp_path / "jwt-secret").mkdir()  # not a file: reading it fails whoever runs the test (root too)
    with pytest.raises(SettingsError, match=r"^CHAT_DATA_DIR: cannot keep the JWT secret in .*jwt-secret"):
        Settings.from_env({"CHAT_DATA_DIR": str(tmp_path)})


def test_previous_jwt_secrets_verify_after_the_current_one_and_stay_out_of_repr(tmp_path):
    old, older = "o" * 32, "字" * 11
    s = Settings.from_env({"CHAT_DATA_DIR": str(tmp_path), "REDIS_URL": "redis://h:6379/0", "JWT_SECRET_KEY": "k" * 32,
                           "JWT_PREVIOUS_SECRET_KEYS": f" {old} ,, {older},"})
    assert s.jwt_previous_secret_keys == (old, older)
    assert s.jwt_verification_keys == ("k" * 32, old, older)  # the current key first: it alone signs
    assert old not in repr(s) and older not in repr(s)
    assert Settings.from_env({"CHAT_DATA_DIR": str(tmp_path)}).jwt_previous_secret_keys == ()


def test_a_short_previous_jwt_secret_is_refused_outside_the_embedded_mode(tmp_path):
    env = {"CHAT_DATA_DIR": str(tmp_path), "JWT_SECRET_KEY": "k" * 32, "JWT_PREVIOUS_SECRET_KEYS": "o" * 32 + ",short"}
    with pytest.raises(SettingsError, match=r"^JWT_PREVIOUS_SECRET_KEYS: each key must be at least 32 bytes") as err:
        Settings.from_env({**env, "REDIS_URL": "redis://h:6379/0"})
    assert "short" not in str(err.value)
    assert Settings.from_env(env).jwt_previous_secret_keys == ("o" * 32, "short")  # the embedded mode takes any


def test_anonymous_visitors_are_on_by_default_in_the_embedded_mode_only(tmp_path):
    embedded = {"CHAT_DATA_DIR": str(tmp_path)}
    server = {**embedded, "REDIS_URL": "redis://h:6379/0", "JWT_SECRET_KEY": "k" * 32}
    assert Settings.from_env(embedded).anonymous_visitors and not Settings.from_env(server).anonymous_visitors
    assert not Settings.from_env({**embedded, "ANONYMOUS_VISITORS": "false"}).anonymous_visitors
    assert Settings.from_env({**server, "ANONYMOUS_VISITORS": "true"}).anonymous_visitors
