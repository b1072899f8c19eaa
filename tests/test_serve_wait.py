"""`serve` with the database unreachable: a progress line per failed attempt saying why (never the password),
then exit 2 with one line after DB_CONNECT_TIMEOUT_S, no traceback (chat.store.db.connect_waiting); an error
that waiting will not change (access denied, an unknown database) ends it at once, on both drivers."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import uuid
from urllib.parse import urlsplit

import asyncmy.errors
import pymysql
import pytest

from chat.settings import parse_database_url
from chat.store import DatabaseError
from chat.store.db import CannotConnect, connect_waiting
from chat.store.mysql import Driver
from tests.conftest import TEST_DATABASE_URL

SERVER = urlsplit(TEST_DATABASE_URL).hostname, urlsplit(TEST_DATABASE_URL).port or 3306  # the test MariaDB
USER = urlsplit(TEST_DATABASE_URL).username  # an account there (its password is not "hunter2")


def closed_port() -> int:
    """A port nothing listens on (bound for a moment to find it, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize("driver", ["mysql", "mysql+aiomysql"])
async def test_connect_waiting_retries_until_the_deadline_then_raises(driver):
    config = parse_database_url(f"{driver}://u:hunter2@127.0.0.1:{closed_port()}/db")
    waits: list[tuple[int, str]] = []
    with pytest.raises(CannotConnect, match="cannot connect") as err:
        await connect_waiting(config, timeout_s=0.0, on_wait=lambda *wait: waits.append(wait))
    assert waits == [] and "hunter2" not in str(err.value)  # no time to wait: one attempt, its error
    with pytest.raises(CannotConnect, match="cannot connect") as err:  # one wait of 0.2 s (never past the deadline)
        await connect_waiting(config, timeout_s=0.2, on_wait=lambda *wait: waits.append(wait))
    assert not err.value.lasting and [attempt for attempt, _ in waits] == [1]
    assert waits[0][1].startswith("2003 Can't connect to MySQL server") and "Errno 111" in waits[0][1]  # why


async def never_sleep(seconds: float) -> None:
    raise AssertionError(f"waited {seconds} s for an error that waiting will not change")


@pytest.mark.parametrize("driver", ["mysql", "mysql+aiomysql"])
@pytest.mark.parametrize("account, database, error", [
    (f"{USER}:hunter2", "db", f"1045 Access denied for user '{USER}'"),  # a wrong password
    ("chat_no_such_user:hunter2", "db", "(1045|1698) Access denied for user 'chat_no_such_user'"),  # MariaDB: 1698
    (USER, f"chat_no_such_db_{uuid.uuid4().hex[:8]}", "1049 Unknown database 'chat_no_such_db_"),
], ids=["wrong password", "unknown user", "unknown database"])
async def test_an_error_waiting_will_not_change_is_raised_at_once(driver, account, database, error):
    host, port = SERVER
    waits: list[tuple[int, str]] = []
    with pytest.raises(CannotConnect, match=error) as err:
        await connect_waiting(parse_database_url(f"{driver}://{account}@{host}:{port}/{database}"), timeout_s=30,
                              on_wait=lambda *wait: waits.append(wait), sleep=never_sleep)
    assert err.value.lasting and waits == [] and "hunter2" not in str(err.value)


@pytest.mark.parametrize("driver, error", [("asyncmy", asyncmy.errors.OperationalError),
                                           ("aiomysql", pymysql.err.OperationalError)])
async def test_errors_that_can_pass_are_waited_for(driver, error, mysql_database_url, monkeypatch):
    """Too many connections, a server shutting down (a restart): each said, then the server is reached."""
    failures = [error(1040, "Too many connections"), error(1053, "Server shutdown in progress")]
    create_pool = Driver.create_pool

    async def failing_first(self: Driver, *args: object) -> object:
        if failures:
            raise failures.pop(0)
        return await create_pool(self, *args)

    monkeypatch.setattr(Driver, "create_pool", failing_first)
    waits: list[tuple[int, str]] = []
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    db = await connect_waiting(parse_database_url(mysql_database_url.replace("mysql://", f"mysql+{driver}://")),
                               timeout_s=30, on_wait=lambda *wait: waits.append(wait), sleep=sleep)
    await db.close()
    assert waits == [(1, "1040 Too many connections"), (2, "1053 Server shutdown in progress")] and slept == [1.0, 1.0]


async def test_sqlite_is_not_waited_for(tmp_path):
    (tmp_path / "dir").write_text("a file where a directory should be")
    waits: list[tuple[int, str]] = []
    with pytest.raises(DatabaseError):
        await connect_waiting(parse_database_url(f"sqlite:///{tmp_path}/dir/chat.db"), timeout_s=30,
                              on_wait=lambda *wait: waits.append(wait))
    assert waits == []


def test_serve_waits_then_exits_2_with_one_line(tmp_path):
    port = closed_port()
    env = {**os.environ, "DATABASE_URL": f"mysql://u:hunter2@127.0.0.1:{port}/db", "JWT_SECRET_KEY": "k" * 32,
           "DB_CONNECT_TIMEOUT_S": "0.3", "CHAT_DATA_DIR": str(tmp_path), "LOG_FORMAT": "text",
           "AI_PROVIDER": "echo"}  # outside the embedded mode the offline provider must be asked for
    env.pop("REDIS_URL", None)
    proc = subprocess.run([sys.executable, "-m", "chat", "serve", "--port", "0"], env=env, capture_output=True,
                          text=True, timeout=60, check=False)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and "hunter2" not in proc.stderr + proc.stdout
    lines = proc.stderr.strip().splitlines()
    assert lines[-1].startswith("chat-api: gave up on the database after 0.3 s (DB_CONNECT_TIMEOUT_S): ")
    assert f"mysql://u@127.0.0.1:{port}/db" in lines[-1]
    waits = [line for line in lines[:-1] if "waiting for the database at" in line]
    assert waits and (f"waiting for the database at mysql://u@127.0.0.1:{port}/db after attempt 1: 2003 Can't "
                      "connect to MySQL server on '127.0.0.1' (") in waits[0]  # why it waits, from the first
    assert "chat-api starting: AI provider echo" in lines[0]  # the start line (PROTOCOL 7)
    assert len(waits) == len(lines) - 2  # nothing else on stderr


def test_serve_gives_up_at_once_on_a_wrong_password(tmp_path):
    host, port = SERVER
    env = {**os.environ, "DATABASE_URL": f"mysql://{USER}:hunter2@{host}:{port}/db", "JWT_SECRET_KEY": "k" * 32,
           "DB_CONNECT_TIMEOUT_S": "30", "CHAT_DATA_DIR": str(tmp_path), "LOG_FORMAT": "text", "AI_PROVIDER": "echo"}
    env.pop("REDIS_URL", None)
    proc = subprocess.run([sys.executable, "-m", "chat", "serve", "--port", "0"], env=env, capture_output=True,
                          text=True, timeout=60, check=False)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert "chat-api starting: AI provider echo" in lines[0] and len(lines) == 2, lines  # no waiting line
    assert lines[1].startswith(f"chat-api: gave up on the database at once (waiting will not change this): cannot "
                               f"connect to mysql://{USER}@{host}:{port}/db: 1045 Access denied for user '{USER}'")
    assert "hunter2" not in proc.stderr + proc.stdout


def test_serve_on_a_sqlite_file_it_cannot_open_exits_2_without_claiming_it_waited(tmp_path):
    (tmp_path / "dir").write_text("a file where a directory should be")
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{tmp_path}/dir/chat.db", "JWT_SECRET_KEY": "k" * 32,
           "CHAT_DATA_DIR": str(tmp_path), "LOG_FORMAT": "text", "AI_PROVIDER": "echo"}
    env.pop("REDIS_URL", None)
    proc = subprocess.run([sys.executable, "-m", "chat", "serve", "--port", "0"], env=env, capture_output=True,
                          text=True, timeout=60, check=False)
    assert proc.returncode == 2, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith(f"chat-api: gave up on the database: cannot open sqlite:///{tmp_path}/dir/chat.db"), last
