"""`chat-api` reads `.env` from the working directory or `--env-file PATH`; the environment wins
(issue 12.1, PROTOCOL section 7)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from chat.envfile import EnvFile, EnvFileError, load_env_file, merged
from tests.conftest import redis_url

SECRET = "env-file-secret-0123456789abcdef0123"
REPO = Path(__file__).resolve().parents[1]
# the variables a test's .env names: none of them may leak in from the environment running the tests
OWN = ("REDIS_URL", "DATABASE_URL", "JWT_SECRET_KEY", "AI_PROVIDER", "DASHSCOPE_API_KEY", "CHAT_DATA_DIR", "AI_MODEL")


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in OWN}
    env["PYTHONPATH"] = str(REPO)  # the subprocess runs in a temporary folder
    env.update(extra)
    return env


def chat_api(*args: str, cwd: Path, **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "chat", *args], env=clean_env(**extra), cwd=cwd,
                          capture_output=True, text=True, timeout=60, check=False)


def write_env(folder: Path, **values: str) -> Path:
    path = folder / ".env"
    path.write_text("".join(f"{name}={value}\n" for name, value in values.items()))
    return path


def test_db_upgrade_uses_the_database_the_env_file_names(tmp_path):
    write_env(tmp_path, DATABASE_URL="sqlite:///from-env-file.db", JWT_SECRET_KEY=SECRET)
    proc = chat_api("db", "upgrade", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "from-env-file.db").is_file()
    assert not (tmp_path / "data").exists()  # not the embedded mode's throwaway SQLite file
    assert f"chat-api: read {tmp_path.resolve() / '.env'} (2 variable(s) used)" in proc.stderr


def test_the_environment_wins_over_the_env_file(tmp_path):
    write_env(tmp_path, DATABASE_URL="sqlite:///from-env-file.db", JWT_SECRET_KEY=SECRET)
    proc = chat_api("db", "upgrade", cwd=tmp_path, DATABASE_URL=f"sqlite:///{tmp_path}/from-environment.db")
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "from-environment.db").is_file() and not (tmp_path / "from-env-file.db").exists()
    assert "(1 variable(s) used; 1 already set in the environment: DATABASE_URL)" in proc.stderr


def test_env_file_option_names_another_file(tmp_path):
    elsewhere = tmp_path / "config"
    elsewhere.mkdir()
    path = write_env(elsewhere, DATABASE_URL=f"sqlite:///{tmp_path}/named.db", JWT_SECRET_KEY=SECRET)
    write_env(tmp_path, DATABASE_URL="sqlite:///ignored.db", JWT_SECRET_KEY=SECRET)  # ./.env is not read then
    proc = chat_api("--env-file", str(path), "db", "upgrade", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "named.db").is_file() and not (tmp_path / "ignored.db").exists()


def test_a_missing_env_file_is_one_line_and_exit_2(tmp_path):
    proc = chat_api("--env-file", str(tmp_path / "nope.env"), "db", "upgrade", cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [
        f"chat-api: cannot read the env file {tmp_path / 'nope.env'}: No such file or directory"]


def test_without_a_file_the_commands_say_so(tmp_path):
    proc = chat_api("db", "upgrade", cwd=tmp_path, CHAT_DATA_DIR=str(tmp_path / "data"))
    assert proc.returncode == 0, proc.stderr
    assert "chat-api: no .env file read" in proc.stderr


def test_db_adopt_reads_redis_url_from_the_env_file(tmp_path):
    write_env(tmp_path, REDIS_URL=redis_url(), DATABASE_URL="sqlite:///adopt.db", JWT_SECRET_KEY=SECRET)
    proc = chat_api("db", "adopt", cwd=tmp_path)
    assert "needs REDIS_URL" not in proc.stderr
    assert proc.returncode in (0, 1), proc.stderr  # 1 only when the shared test db holds an invalid record
    assert "scanned" in proc.stdout and (tmp_path / "adopt.db").is_file()


def test_serve_from_the_env_file_refuses_the_default_echo_provider(tmp_path):
    write_env(tmp_path, REDIS_URL=redis_url(), DATABASE_URL="sqlite:///serve.db", JWT_SECRET_KEY=SECRET)
    proc = chat_api("serve", "--port", "0", cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("chat-api: configuration error: AI_PROVIDER: ")
    assert not (tmp_path / "data").exists()  # never the embedded mode


def test_serve_logs_one_start_line_with_the_env_file(tmp_path):
    """Whatever LOG_LEVEL says (migrate-config writes `warning` for the old services' `warn`)."""
    write_env(tmp_path, REDIS_URL=redis_url().replace("redis://", "redis://:pw-secret@"),
              DATABASE_URL="sqlite:///serve.db", JWT_SECRET_KEY=SECRET, AI_PROVIDER="echo", LOG_LEVEL="warning")
    proc = subprocess.Popen([sys.executable, "-m", "chat", "serve", "--host", "127.0.0.1", "--port", "0"],
                            env=clean_env(LOG_FORMAT="text", REDIS_URL=redis_url()), cwd=tmp_path,
                            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    try:
        assert proc.stderr is not None
        start = next(line for line in proc.stderr if "chat-api starting" in line)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    host_db = redis_url().split("://", 1)[1]
    assert (f"chat-api starting: AI provider echo (model qwen-turbo), database sqlite:///serve.db, "
            f"Redis redis://{host_db}; read {tmp_path.resolve() / '.env'} (4 variable(s) used; "
            "1 already set in the environment: REDIS_URL)") in start
    assert "pw-secret" not in start and SECRET not in start


def test_load_env_file_reads_values_literally(tmp_path):
    path = tmp_path / "x.env"
    path.write_text("A='p@ss:w$rd'\nB=\"two words\"\nBARE\n# comment\nC=${A}\n")
    env_file = load_env_file(path, {"C": "from-environment"})
    assert env_file.values == {"A": "p@ss:w$rd", "B": "two words", "C": "${A}"}
    assert env_file.overridden == {"C"}
    assert merged(env_file, {"C": "from-environment"}) == {"A": "p@ss:w$rd", "B": "two words",
                                                          "C": "from-environment"}
    assert "p@ss" not in env_file.describe() and "p@ss" not in repr(env_file)


def test_load_env_file_defaults(tmp_path):
    assert load_env_file(None, {}, cwd=tmp_path) == EnvFile()
    assert EnvFile().describe() == "no .env file read"
    with pytest.raises(EnvFileError, match="cannot read the env file"):
        load_env_file(tmp_path / "missing.env", {})
