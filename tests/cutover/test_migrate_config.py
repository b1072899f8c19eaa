"""scripts/migrate_config.py on realistic old .env files."""

from __future__ import annotations

import stat
import subprocess
import sys
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
from dotenv import dotenv_values
from hypothesis import given, settings
from hypothesis import strategies as st

from chat.cutover import migrate_config
from tests.cutover.support import REPO

DB_PASSWORD = "p@ss:w#rd$HOME${USER}/?%20'x"
REDIS_PASSWORD = 'r3d:s@#$"x'
JWT_SECRET = "jwt$ecret#with\"quote's and \\ backslash"
API_KEY = "sk-live-0123456789abcdef"
SECRETS = (
    DB_PASSWORD,
    REDIS_PASSWORD,
    JWT_SECRET,
    API_KEY,
    "p@ss",
    "r3d:s",
    "jwt$ecret",
    "0123456789abcdef",
)

# Written the way an operator would: quoted where the value needs it, with dotenv escapes.
_DB_QUOTED = "'" + DB_PASSWORD.replace("'", "\\'") + "'"
_REDIS_QUOTED = '"' + REDIS_PASSWORD.replace('"', '\\"') + '"'
_JWT_QUOTED = '"' + JWT_SECRET.replace("\\", "\\\\").replace('"', '\\"') + '"'

OLD_ENV = f"""\
# Node.js services: chat-core / ai-service / chat-session
NODE_ENV=production
PORT=8001

# MySQL
export DB_HOST=db.internal
export DB_PORT=3307
DB_USER="chat user"
DB_PASSWORD={_DB_QUOTED}
DB_NAME=chat_api

REDIS_HOST=cache.internal
REDIS_PASSWORD={_REDIS_QUOTED}   # auth for the cache
REDIS_DB=2
JWT_SECRET={_JWT_QUOTED}
DASHSCOPE_API_KEY={API_KEY}
LOG_LEVEL=debug
"""


def run(tmp_path: Path, text: str, *extra: str, output: Path | None = None) -> tuple[int, Path]:
    old = tmp_path / "old.env"
    old.write_text(text)
    new = output or tmp_path / "new.env"
    return migrate_config.main(["--input", str(old), "--output", str(new), *extra]), new


def assert_no_secret(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text, secret


def test_the_old_file_reads_as_intended(tmp_path):
    old = tmp_path / "old.env"
    old.write_text(OLD_ENV)
    values = dotenv_values(old, interpolate=False)
    assert values["DB_PASSWORD"] == DB_PASSWORD
    assert values["REDIS_PASSWORD"] == REDIS_PASSWORD
    assert values["JWT_SECRET"] == JWT_SECRET


@pytest.mark.parametrize("interpolate", [False, True])
def test_realistic_file_round_trips(tmp_path, capsys, interpolate):
    rc, new = run(tmp_path, OLD_ENV)

    assert rc == 0
    values = dotenv_values(new, interpolate=interpolate)
    assert list(values) == [
        "PORT",
        "DATABASE_URL",
        "REDIS_URL",
        "JWT_SECRET_KEY",
        "DASHSCOPE_API_KEY",
        "LOG_LEVEL",
    ]
    assert values["LOG_LEVEL"] == "debug"
    assert values["PORT"] == "8001"
    assert values["JWT_SECRET_KEY"] == JWT_SECRET
    assert values["DASHSCOPE_API_KEY"] == API_KEY

    database = urlsplit(values["DATABASE_URL"])
    assert (database.scheme, database.hostname, database.port, database.path) == (
        "mysql",
        "db.internal",
        3307,
        "/chat_api",
    )
    assert unquote(database.username) == "chat user"
    assert unquote(database.password) == DB_PASSWORD

    cache = urlsplit(values["REDIS_URL"])
    assert (cache.scheme, cache.hostname, cache.port, cache.path, cache.username) == (
        "redis",
        "cache.internal",
        6379,
        "/1",
        "",
    )
    assert unquote(cache.password) == REDIS_PASSWORD

    captured = capsys.readouterr()
    assert_no_secret(captured.out + captured.err)
    assert "DATABASE_URL=mysql://chat%20user:***@db.internal:3307/chat_api" in captured.out
    assert "REDIS_URL=redis://:***@cache.internal:6379/1" in captured.out
    assert "JWT_SECRET_KEY=***" in captured.out
    assert "not mapped, left out: NODE_ENV (chat-api has no environment switch" in captured.out
    assert stat.S_IMODE(new.stat().st_mode) == 0o600


def test_refuses_to_overwrite_without_force(tmp_path, capsys):
    existing = tmp_path / "new.env"
    existing.write_text("KEEP=me\n")

    rc, _ = run(tmp_path, OLD_ENV, output=existing)

    assert rc == 1
    assert existing.read_text() == "KEEP=me\n"
    assert "exists: not overwritten (use --force)" in capsys.readouterr().err

    rc, _ = run(tmp_path, OLD_ENV, "--force", output=existing)
    assert rc == 0
    assert dotenv_values(existing)["PORT"] == "8001"
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_dry_run_masks_and_writes_nothing(tmp_path, capsys):
    rc, new = run(tmp_path, OLD_ENV, "--dry-run")

    assert rc == 0
    assert not new.exists()
    out = capsys.readouterr()
    assert_no_secret(out.out + out.err)
    assert "# Not migrated: NODE_ENV (chat-api has no environment switch" in out.out
    assert "\nJWT_SECRET_KEY=***\n" in out.out
    assert "\nDASHSCOPE_API_KEY=***\n" in out.out


def test_defaults_follow_the_guide(tmp_path):
    rc, new = run(tmp_path, "DB_NAME=chat_api\nREDIS_PORT=6380\n")

    assert rc == 0
    values = dotenv_values(new)
    assert values["DATABASE_URL"] == "mysql://root:@localhost:3306/chat_api"
    assert values["REDIS_URL"] == "redis://localhost:6380/1"
    assert "PORT" not in values and "JWT_SECRET_KEY" not in values


def test_new_style_variables_are_carried_over(tmp_path):
    rc, new = run(
        tmp_path, "REDIS_URL=redis://cache:6379/3\nAI_MODEL=qwen-plus\nJWT_SECRET_KEY=abc\n"
    )

    assert rc == 0
    assert dotenv_values(new) == {
        "REDIS_URL": "redis://cache:6379/1",  # the migration's target, not the old db (see below)
        "JWT_SECRET_KEY": "abc",
        "AI_MODEL": "qwen-plus",
    }


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("REDIS_URL=redis://a:6379/0\nREDIS_HOST=b\n", "both REDIS_URL and REDIS_HOST are set"),
        ("JWT_SECRET=one\nJWT_SECRET_KEY=two\n", "both JWT_SECRET and JWT_SECRET_KEY are set"),
        ("DB_PORT=33o6\n", "DB_PORT is not a port number: '33o6'"),
        ("REDIS_DB=two\n", "REDIS_DB is not a database number"),
        ("DB_HOST=db host\n", "DB_HOST is not a host name"),
        ("PORT=http\n", "PORT is not a port number"),
        ("PORT=1\nDB_PASSWORD='unterminated\n", "could not parse statement starting at line 2"),
    ],
)
def test_problems_fail_and_write_nothing(tmp_path, capsys, text, message):
    rc, new = run(tmp_path, text)

    assert rc == 1
    assert not new.exists()
    captured = capsys.readouterr()
    assert message in captured.err
    assert "unterminated" not in captured.out + captured.err


def test_ipv6_hosts_are_bracketed(tmp_path):
    rc, new = run(tmp_path, "DB_HOST=::1\nREDIS_HOST=[fe80::1]\n")
    assert rc == 0
    values = dotenv_values(new)
    assert urlsplit(values["DATABASE_URL"]).hostname == "::1"
    assert values["REDIS_URL"] == "redis://[fe80::1]:6379/1"


def test_missing_input_and_same_file(tmp_path, capsys):
    assert (
        migrate_config.main(
            ["--input", str(tmp_path / "nope.env"), "--output", str(tmp_path / "o.env")]
        )
        == 1
    )
    assert "cannot read" in capsys.readouterr().err
    old = tmp_path / "old.env"
    old.write_text("PORT=1\n")
    assert migrate_config.main(["--input", str(old), "--output", str(old), "--force"]) == 2
    assert old.read_text() == "PORT=1\n"
    with pytest.raises(SystemExit) as exc:
        migrate_config.main(["--input", str(old)])
    assert exc.value.code == 2


def test_runs_as_a_script(tmp_path):
    old = tmp_path / "old.env"
    old.write_text(OLD_ENV)
    done = subprocess.run(
        [
            sys.executable,
            "scripts/migrate_config.py",
            "--input",
            str(old),
            "--output",
            str(tmp_path / "new.env"),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert_no_secret(done.stdout + done.stderr)
    assert dotenv_values(tmp_path / "new.env")["JWT_SECRET_KEY"] == JWT_SECRET


# Any value a .env file can hold (everything but NUL and lone surrogates), and strings made
# of the characters that matter most to a dotenv parser.
env_text = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=40
) | st.text(alphabet="\\'\"$#{} =\n\rab", max_size=16)


@settings(max_examples=300, deadline=None)
@given(env_text)
def test_quoted_values_read_back_identically(tmp_path_factory, value):
    path = tmp_path_factory.mktemp("rt") / "x.env"
    path.write_text(
        f"JWT_SECRET_KEY={migrate_config.quote_value(value)}\nNEXT=line\n", encoding="utf-8"
    )
    expected = {"JWT_SECRET_KEY": value, "NEXT": "line"}
    assert dotenv_values(path, interpolate=False) == expected
    if "${" not in value:  # python-dotenv has no escape for ${...}; the script warns about it
        assert dotenv_values(path) == expected


@settings(max_examples=200, deadline=None)
@given(password=env_text, user=env_text.filter(bool))
def test_urls_carry_any_password(password, user):
    url = migrate_config.migrate({"DB_USER": user, "DB_PASSWORD": password})
    parts = urlsplit(url.values["DATABASE_URL"])
    assert unquote(parts.username) == user
    assert unquote(parts.password) == password
    assert parts.hostname == "localhost" and parts.port == 3306


@pytest.mark.parametrize(
    ("value", "written"),
    [
        ("sk-live-0123456789abcdef", "sk-live-0123456789abcdef"),
        ("mysql://root:p%40ss@db:3306/chat_api", "mysql://root:p%40ss@db:3306/chat_api"),
        ("jwt$ecret #1 @home", "'jwt$ecret #1 @home'"),  # literal for every dotenv dialect
        ('say "hi"', "'say \"hi\"'"),
        ("it's", '"it\'s"'),
        ("C:\\path\\", '"C:\\\\path\\\\"'),
        ("", "''"),
    ],
)
def test_values_are_written_in_the_most_portable_form(value, written):
    assert migrate_config.quote_value(value) == written


# Issue 12.2: the URL names the migration's target database, not the old REDIS_DB.
@pytest.mark.parametrize(("extra", "db"), [((), 1), (("--redis-db", "4"), 4)])
def test_redis_url_names_the_migration_target(tmp_path, capsys, extra, db):
    rc, new = run(tmp_path, "REDIS_HOST=cache\nREDIS_DB=0\n", *extra)

    assert rc == 0
    assert dotenv_values(new)["REDIS_URL"] == f"redis://cache:6379/{db}"
    assert f"REDIS_DB=0 is the old services' database: REDIS_URL names db {db}" in capsys.readouterr().err


# A carried-over REDIS_URL names the migration's target too (PROTOCOL 8), its password untouched.
@pytest.mark.parametrize(("text", "extra", "written"), [
    ("REDIS_URL=redis://:pw%40x@10.0.0.5:6379/0\n", (), "redis://:pw%40x@10.0.0.5:6379/1"),
    ("REDIS_URL=redis://:pw%40x@10.0.0.5:6379/0\n", ("--redis-db", "1"), "redis://:pw%40x@10.0.0.5:6379/1"),
    ("REDIS_URL='rediss://u:pw%40x@cache:6380?db=0&ssl_cert_reqs=none'\n", ("--redis-db", "5"),
     "rediss://u:pw%40x@cache:6380/5?ssl_cert_reqs=none"),
    ("REDIS_URL=unix:///run/redis.sock?db=0\n", (), "unix:///run/redis.sock?db=1"),
])
def test_a_carried_redis_url_names_the_migration_target(tmp_path, capsys, text, extra, written):
    rc, new = run(tmp_path, text, *extra)

    assert rc == 0
    assert dotenv_values(new)["REDIS_URL"] == written
    err = capsys.readouterr().err
    assert "names db 0, the old services' database: rewritten to db" in err and "pw%40x" not in err


def test_a_carried_redis_url_already_on_the_target_is_kept(tmp_path, capsys):
    rc, new = run(tmp_path, "REDIS_URL=redis://cache:6379/1\n")
    assert rc == 0 and dotenv_values(new)["REDIS_URL"] == "redis://cache:6379/1"
    assert "rewritten" not in capsys.readouterr().err


# Issue 12.3: LOG_LEVEL and DASHSCOPE_MODEL are carried over; every other variable is listed with why.
def test_log_level_and_model_are_mapped_and_the_rest_explained(tmp_path, capsys):
    rc, new = run(
        tmp_path, "LOG_LEVEL=warn\nDASHSCOPE_MODEL=qwen-plus\nNODE_ENV=production\nSENTRY_DSN=x\n"
    )

    assert rc == 0
    assert dotenv_values(new) == {"AI_MODEL": "qwen-plus", "LOG_LEVEL": "warning"}
    out = capsys.readouterr().out
    assert "AI_MODEL=qwen-plus  (from DASHSCOPE_MODEL)" in out
    assert "not mapped, left out: NODE_ENV (chat-api has no environment switch" in out
    assert "not mapped, left out: SENTRY_DSN (no chat-api equivalent)" in out
    assert "# Not migrated: SENTRY_DSN (no chat-api equivalent)" in new.read_text()


def test_unknown_log_level_is_a_problem(tmp_path, capsys):
    rc, new = run(tmp_path, "LOG_LEVEL=loud\n")
    assert rc == 1
    assert not new.exists()
    assert "LOG_LEVEL is not a level chat-api knows: 'loud'" in capsys.readouterr().err
