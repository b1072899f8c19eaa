"""What `serve` checks beyond the variables, and its start line (issue 12.4, PROTOCOL section 7)."""

import pytest

from chat.settings import Settings, SettingsError

SECRET = "serve-secret-0123456789abcdef012345"


def server_env(tmp_path, **extra: str) -> dict[str, str]:
    return {"CHAT_DATA_DIR": str(tmp_path), "JWT_SECRET_KEY": SECRET,
            "DATABASE_URL": "mysql://app:hunter2@db.internal/chat", "REDIS_URL": "redis://:r3dis-pw@cache:6380/1",
            **extra}


def test_the_default_echo_provider_is_refused_outside_the_embedded_mode(tmp_path):
    env = server_env(tmp_path)
    settings = Settings.from_env(env)
    assert settings.ai_provider == "echo"
    for unset in (env, {**env, "AI_PROVIDER": " "}):  # blank means the default
        with pytest.raises(SettingsError, match=r"^AI_PROVIDER: no AI provider configured.*AI_PROVIDER=echo"):
            settings.check_serve(unset)


@pytest.mark.parametrize("extra", [{"AI_PROVIDER": "echo"}, {"DASHSCOPE_API_KEY": "sk-1"},
                                   {"AI_PROVIDER": "openai", "AI_BASE_URL": "http://llm/v1"}])
def test_an_explicit_provider_is_served(tmp_path, extra):
    env = server_env(tmp_path, **extra)
    Settings.from_env(env).check_serve(env)


def test_the_embedded_mode_keeps_its_echo_default(tmp_path):
    env = {"CHAT_DATA_DIR": str(tmp_path)}
    Settings.from_env(env).check_serve(env)


def test_only_serve_checks_it(tmp_path):
    """db upgrade, db adopt and token need no AI provider: reading the settings alone is fine."""
    assert not Settings.from_env(server_env(tmp_path)).embedded


def test_the_start_line_names_everything_but_no_password(tmp_path):
    settings = Settings.from_env(server_env(tmp_path, DASHSCOPE_API_KEY="sk-secret-key", AI_MODEL="qwen-plus"))
    line = settings.describe()
    assert line == ("AI provider dashscope (model qwen-plus), database mysql://app@db.internal:3306/chat, "
                    "Redis redis://cache:6380/1")
    embedded = Settings.from_env({"CHAT_DATA_DIR": str(tmp_path)}).describe()
    assert embedded == (f"AI provider echo (model qwen-turbo), database sqlite:///{tmp_path}/chat.db, "
                        "Redis embedded in-process Redis")
