"""`serve` with the database unreachable: a progress line per attempt (never the password), then
exit 2 with one line after DB_CONNECT_TIMEOUT_S, no traceback (chat.store.db.connect_waiting)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest

from chat.settings import parse_database_url
from chat.store import DatabaseError
from chat.store.db import connect_waiting


def closed_port() -> int:
    """A port nothing listens on (bound for a moment to find it, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_connect_waiting_retries_until_the_deadline_then_raises():
    config = parse_database_url(f"mysql://u:hunter2@127.0.0.1:{closed_port()}/db")
    attempts: list[int] = []
    with pytest.raises(DatabaseError, match="cannot connect") as err:
        await connect_waiting(config, timeout_s=0.0, on_wait=attempts.append)
    assert attempts == [] and "hunter2" not in str(err.value)  # no time to wait: one attempt, its error
    with pytest.raises(DatabaseError, match="cannot connect"):  # one wait of 0.2 s (never more than the deadline)
        await connect_waiting(config, timeout_s=0.2, on_wait=attempts.append)
    assert attempts == [2]


async def test_sqlite_is_not_waited_for(tmp_path):
    (tmp_path / "dir").write_text("a file where a directory should be")
    attempts: list[int] = []
    with pytest.raises(DatabaseError):
        await connect_waiting(parse_database_url(f"sqlite:///{tmp_path}/dir/chat.db"), timeout_s=30,
                              on_wait=attempts.append)
    assert attempts == []


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
    assert waits and f"waiting for the database at mysql://u@127.0.0.1:{port}/db (attempt 2)..." in waits[0]
    assert "chat-api starting: AI provider echo" in lines[0]  # the start line (PROTOCOL 7)
    assert len(waits) == len(lines) - 2  # nothing else on stderr


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
