"""The chat-api command line through `python -m chat`."""

import io
import os
import subprocess
import sys
import uuid
from pathlib import Path

import jwt
import pytest

from chat.cli import main
from chat.store.schema import MIGRATIONS
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
    assert list(tmp_path.iterdir()) == []  # the secret given: none made, no instance's data needed


@pytest.mark.parametrize("args, problem", [
    (["--sub", ""], "sub must be"), (["--sub", "x" * 65], "sub must be"), (["--sub", "a\nb"], "sub must be"),
    (["--sub", "u", "--ttl-s", "-100"], "--ttl-s: must be >= 1"),
    (["--sub", "u", "--ttl-s", "0"], "--ttl-s: must be >= 1"),
])
def test_token_never_prints_one_the_service_would_refuse(args, problem, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("JWT_SECRET_KEY", SECRET)
    monkeypatch.setenv("CHAT_DATA_DIR", str(tmp_path))
    try:
        code = main(["--env-file", "/dev/null", "token", "--role", "customer", *args])
    except SystemExit as exit_:  # argparse's refusal of the option
        code = exit_.code
    out, err = capsys.readouterr()
    assert code == 2 and out == "" and problem in err


@pytest.fixture
def embedded_cwd(tmp_path, monkeypatch):
    """An empty folder as the working directory, in the embedded mode with the default CHAT_DATA_DIR (./data)."""
    for name in ("JWT_SECRET_KEY", "DATABASE_URL", "REDIS_URL", "CHAT_DATA_DIR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def exit_code(argv):
    """cli.main's exit code, whether returned or raised (a refusal while the settings are read)."""
    try:
        return main(argv)
    except SystemExit as exit_:
        return exit_.code


LEGACY_MAPPING = str(Path(__file__).parents[1] / "docs" / "legacy-mapping.example.toml")
READERS = [  # every command that reads or writes an embedded instance's data, but `serve` and `db upgrade`
    ["export", "--out", "out.ndjson"], ["stats", "rebuild"], ["stats", "rebuild", "--repair"], ["token", "--sub", "x",
    "--role", "admin"], ["users", "list"], ["users", "add", "--id", "ann", "--role", "agent", "--password-stdin"],
    ["users", "passwd", "ann", "--password-stdin"], ["users", "deactivate", "ann"], ["users", "activate", "ann"],
    ["db", "adopt"], ["db", "import-legacy", "--mapping", LEGACY_MAPPING, "--dry-run"],
]


@pytest.mark.parametrize("argv", READERS, ids=" ".join)
def test_embedded_commands_refuse_where_no_instance_keeps_its_data_and_make_nothing(argv, embedded_cwd, capsys,
                                                                                    monkeypatch):
    """Run outside the directory `serve` runs in, they read an empty database they made (export failed on it,
    stats rebuild said all was well) or signed with a new secret the instance refuses: refused, nothing made."""
    monkeypatch.setattr(sys, "stdin", io.StringIO("a password\n"))
    assert exit_code(argv) == 2
    out, err = capsys.readouterr()
    command = " ".join(argv[:1] if argv[0] in ("token", "export") else argv[:2])
    assert out == "" and err == (
        f"chat-api {command}: no embedded instance's data in {embedded_cwd.resolve() / 'data'}: run it in the "
        "directory `chat-api serve` runs in (`./dev serve`: the repository's), or set CHAT_DATA_DIR, or REDIS_URL "
        "and DATABASE_URL\n")
    assert list(embedded_cwd.iterdir()) == []  # no data directory, chat.db or jwt-secret


@pytest.mark.parametrize("workers, problem", [("2", "--workers needs REDIS_URL and a MySQL DATABASE_URL: "),
                                              ("0", "--workers must be 1 or more, got 0")])
def test_serve_with_workers_is_refused_in_the_embedded_mode_before_anything_is_made(workers, problem, embedded_cwd,
                                                                                    capsys):
    """It made ./data and the embedded secret in it, then refused."""
    assert exit_code(["serve", "--workers", workers]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.startswith(f"chat-api: {problem}") and len(err.splitlines()) == 1, err
    assert list(embedded_cwd.iterdir()) == []  # no data directory, jwt-secret or chat.db


def test_embedded_commands_work_beside_the_data_serve_made(embedded_cwd, capsys):
    import asyncio

    from chat.embedded_accounts import ensure_first_accounts
    from chat.settings import Settings

    asyncio.run(ensure_first_accounts(Settings.from_env()))  # what `serve` makes before it listens
    secret = (embedded_cwd / "data" / "jwt-secret").read_text().strip()
    capsys.readouterr()
    assert exit_code(["token", "--sub", "admin-1", "--role", "admin"]) == 0
    assert jwt.decode(capsys.readouterr().out.strip(), secret, algorithms=["HS256"])["sub"] == "admin-1"
    assert exit_code(["users", "list"]) == 0
    assert [line.split()[:2] for line in capsys.readouterr().out.splitlines()[1:]] == [["admin", "admin"],
                                                                                       ["agent", "agent"]]
    assert exit_code(["stats", "rebuild"]) == 0 and "checked 0 conversations" in capsys.readouterr().out
    assert exit_code(["export", "--out", "out.ndjson"]) == 0 and (embedded_cwd / "out.ndjson").read_bytes() == b""
    assert exit_code(["db", "adopt"]) == 2 and "db adopt needs REDIS_URL" in capsys.readouterr().err  # as before
    assert (embedded_cwd / "data" / "jwt-secret").read_text().strip() == secret


def test_states_diagram_matches_the_table():
    proc = run("states", "diagram")
    assert proc.returncode == 0 and proc.stdout == mermaid_diagram()


def test_db_upgrade_is_idempotent_on_sqlite(tmp_path):
    env = {"DATABASE_URL": f"sqlite:///{tmp_path}/x.db", "JWT_SECRET_KEY": SECRET, "CHAT_DATA_DIR": str(tmp_path)}
    first = run("db", "upgrade", env_extra=env)
    second = run("db", "upgrade", env_extra=env)
    assert first.returncode == 0 and f"applied schema version(s) {[v for v, _ in MIGRATIONS]}" in first.stdout
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
    # the same, but for the header naming what the operator ran
    assert command.stdout.replace("chat-api migrate-config", "migrate_config.py") == script.stdout
    assert "generated by chat-api migrate-config from" in command.stdout and "s3cret" not in command.stdout
    listed = run("--help").stdout
    for name in ("migrate-redis", "migrate-config", "backup", "rollback", "monitor"):
        assert name in listed
        helped = run(name, "--help")
        assert helped.returncode == 0 and helped.stdout.startswith(f"usage: chat-api {name} ")


def test_cutover_usage_errors_keep_their_exit_code():
    assert run("migrate-redis", "--batch", "0").returncode == 2
    for command in (("stats", "rebuild"), ("db", "adopt"), ("db", "import-legacy", "--mapping", "m.toml")):
        for batch in ("0", "-5"):  # 0 read nothing and said all was well; -5 is no limit on SQLite
            refused = run(*command, "--batch", batch)
            assert refused.returncode == 2 and "must be >= 1" in refused.stderr, (command, batch)
    assert run("monitor", "--url", "ftp://example.invalid/").returncode == 2


# --- chat-api users ... (in-process: cli.main, the password on a fake stdin or prompt) -------------


@pytest.fixture
def users_env(monkeypatch, database_url, tmp_path):
    """The environment of `chat-api users` on MariaDB or SQLite; `cli(*args, stdin=...)` runs it."""
    import io

    from chat import cli

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("REDIS_URL", raising=False)
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("JWT_SECRET_KEY", SECRET)
    monkeypatch.setenv("CHAT_DATA_DIR", str(tmp_path / "data"))

    def call(*args: str, stdin: str = "") -> int:
        monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
        return cli.main(["users", *args])

    return call, database_url


def _account(database_url: str, user_id: str):
    import asyncio

    from chat.settings import parse_database_url
    from chat.store import Store, connect

    async def read():
        db = await connect(parse_database_url(database_url))
        try:
            store = Store(db)
            await store.migrations.upgrade()  # bad input exits before the command touches the database
            return await store.accounts.credentials(user_id), await store.accounts.get(user_id)
        finally:
            await db.close()

    return asyncio.run(read())


def _verifies(password_hash: str | None, password: str) -> bool:
    import asyncio

    from chat.passwords import verify_password

    return asyncio.run(verify_password(password_hash, password))


def test_users_add_list_passwd_deactivate_activate(users_env, capsys, monkeypatch):
    cli, database_url = users_env
    user_id = f"ann-{uuid.uuid4().hex[:8]}"
    assert cli("add", "--id", user_id, "--role", "agent", "--name", "Ann", "--max-chats", "4", "--password-stdin",
               stdin="first password\n") == 0
    credentials, user = _account(database_url, user_id)
    assert credentials.role == "agent" and credentials.active and _verifies(credentials.password_hash, "first password")
    assert user["name"] == "Ann" and user["max_chats"] == 4
    assert cli("add", "--id", user_id, "--role", "admin", "--password-stdin", stdin="x\n") == 1  # duplicate
    assert "already in use" in capsys.readouterr().err
    assert cli("list") == 0
    line = next(line for line in capsys.readouterr().out.splitlines() if line.startswith(user_id))
    assert line.split()[:5] == [user_id, "agent", "yes", "set", "4"] and "first password" not in line

    # a prompt, asked twice
    answers = iter(["second password", "second password"])
    monkeypatch.setattr("getpass.getpass", lambda prompt="": next(answers))
    assert cli("passwd", user_id) == 0
    assert _verifies(_account(database_url, user_id)[0].password_hash, "second password")
    answers = iter(["one", "another"])
    assert cli("passwd", user_id) == 2
    assert "differ" in capsys.readouterr().err
    assert _verifies(_account(database_url, user_id)[0].password_hash, "second password")  # unchanged

    assert cli("deactivate", user_id) == 0
    assert _account(database_url, user_id)[0].active is False
    assert cli("activate", user_id) == 0
    assert _account(database_url, user_id)[0].active is True
    for command in (("deactivate", "nobody-x"), ("activate", "nobody-x"), ("passwd", "nobody-x", "--password-stdin")):
        assert cli(*command, stdin="pw\n") == 1
        assert "no agent or admin" in capsys.readouterr().err


@pytest.mark.parametrize(("args", "stdin"), [
    (("--id", "ok-id", "--role", "agent"), "\n"),  # an empty password
    (("--id", "ok-id", "--role", "agent"), "x" * 10_000 + "\n"),
    (("--id", "bad\u0001id", "--role", "agent"), "pw\n"),
    (("--id", "x" * 65, "--role", "agent"), "pw\n"),
    (("--id", "ok-id", "--role", "agent", "--max-chats", "0"), "pw\n"),
])
def test_users_add_refuses_bad_input_with_exit_2(users_env, capsys, args, stdin):
    cli, database_url = users_env
    assert cli("add", *args, "--password-stdin", stdin=stdin) == 2
    assert capsys.readouterr().err.startswith("chat-api: ")
    assert _account(database_url, args[1])[0] is None


def test_no_terminal_and_nothing_on_stdin_is_one_line_and_exit_2(users_env, capsys, monkeypatch):
    cli, database_url = users_env

    def no_terminal(prompt: str = "") -> str:
        raise EOFError  # what getpass's fallback to stdin raises on an empty stdin (`users add </dev/null`)

    monkeypatch.setattr("getpass.getpass", no_terminal)
    assert cli("add", "--id", "no-tty", "--role", "agent") == 2
    assert capsys.readouterr().err.strip() == (
        "chat-api: no password given (without a terminal, use --password-stdin)")
    assert _account(database_url, "no-tty")[0] is None


def test_a_password_is_never_an_argument(users_env):
    cli, _ = users_env
    with pytest.raises(SystemExit) as usage:
        cli("add", "--id", "pw-arg", "--role", "agent", "--password", "secret")
    assert usage.value.code == 2


async def test_freeze_heap_collects_then_moves_what_is_alive_out_of_the_collectors_reach():
    import gc

    from chat.cli import freeze_heap

    class Cycle:
        pass

    garbage = Cycle()
    garbage.me = garbage  # a cycle only the collector frees
    garbage_id = id(garbage)
    del garbage
    alive = [object()]
    try:
        await freeze_heap(None)
        assert gc.get_freeze_count() > 0
        assert not any(id(o) == garbage_id and type(o) is Cycle for o in gc.get_objects())  # collected first
        assert alive[0] is not None  # kept, and out of the generations the collector walks
        assert all(o is not alive for o in gc.get_objects(generation=2))
    finally:
        gc.unfreeze()
