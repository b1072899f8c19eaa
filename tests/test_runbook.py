"""The cut-over runbook (docs/cutover.md) as one test, typed as an operator would in a temporary
folder: an old `.env` (quoted passwords with `@` and `:`), old Node.js sessions in db 0 of a private
redis-server (with and without TTLs, ISO, epoch-ms and naive times, a `human` agent, junk keys), the
old MySQL tables with rows -> backup -> migrate_config -> migrate_redis (the known junk accepted) ->
db import-legacy -> serve from that folder with only the new `.env` -> a migrated customer resumes and
gets an AI reply, an old conversation is visible over REST -> new conversations and messages ->
rollback with the reverse migration -> the old records are back with their TTLs, and the rows written
after the backup are in the saved file with the counts the rollback printed.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import orjson
import pymysql  # type: ignore[import-untyped]  # no stubs installed (types-PyMySQL)
import pytest
import redis

from chat.settings import parse_database_url
from chat.store.legacy_mapping import DEFAULT_NAMESPACE
from tests.conftest import TEST_DATABASE_URL
from tests.faults.servers import Process, RedisServer, free_port
from tests.legacy_tables import create_legacy_mysql, fresh_mysql_database
from tests.wsclient import WS

ROOT = Path(__file__).resolve().parents[1]
CHAT_API = str(Path(sys.executable).with_name("chat-api"))
REDIS_PASSWORD = "r3d@s:pw"
DB_PASSWORD = "my@sql:pw"
JWT_SECRET = "old-node-secret-0123456789abcdef-0123"
HOUR_MS = 3_600_000
JUNK = {"session:junk-text": b"not json at all", "session:junk-noid": b'{"agent": "ai"}',
        "session:junk-list": b"[1, 2, 3]"}
OLD_SESSIONS = {
    # ISO created, epoch-ms updated, a TTL
    "s-ttl": ({"userId": "cust-ttl", "agent": "ai", "context": {"topic": "order"},
               "createdAt": "2025-05-01T08:00:00.000Z", "updatedAt": 1746086700000}, HOUR_MS),
    # a human agent, epoch-ms created, no TTL
    "s-human": ({"userId": "cust-human", "agent": "human", "context": {}, "createdAt": 1746090000000}, None),
    # naive times (read in Asia/Shanghai), a TTL
    "s-naive": ({"userId": "cust-naive", "agent": "ai", "context": {"lang": "zh"},
                 "createdAt": "2025-04-30 18:00:00", "updatedAt": "2025-04-30 18:05:00"}, 2 * HOUR_MS),
    # no times at all, no TTL
    "s-plain": ({"userId": "cust-plain", "agent": "ai", "context": {}}, None),
}


def run(argv: list[str], cwd: Path, env: dict[str, str], expect: int = 0) -> str:
    """One command as the operator types it; its stdout and stderr together."""
    proc = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=300, check=False)
    out = proc.stdout + proc.stderr
    print(f"$ {' '.join(argv[1:] if argv[0] == sys.executable else argv)}\n{out}")
    assert proc.returncode == expect, f"{' '.join(argv)} exited {proc.returncode}:\n{out}"
    return out


@pytest.fixture
def old_mysql() -> Iterator[tuple[str, str]]:
    """(database, user): a fresh database on the test server and a user with a password holding @ and :."""
    with fresh_mysql_database(TEST_DATABASE_URL) as url:
        config = parse_database_url(url)
        user = f"rb_{uuid.uuid4().hex[:8]}"
        admin = pymysql.connect(host=config.host, port=config.port, user=config.user, password=config.password,
                                autocommit=True)
        try:
            with admin.cursor() as cur:
                cur.execute(f"CREATE USER '{user}'@'%%' IDENTIFIED BY %s", (DB_PASSWORD,))
                cur.execute(f"GRANT ALL ON {config.database}.* TO '{user}'@'%'")
            create_legacy_mysql(config)
            yield config.database, user
        finally:
            with admin.cursor() as cur:
                cur.execute(f"DROP USER IF EXISTS '{user}'@'%'")
            admin.close()


@pytest.fixture
def old_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A private redis-server with a password, holding the old sessions and junk in db 0."""
    server = RedisServer(tmp_path / "redis")
    server.start()
    try:
        client = redis.Redis.from_url(server.url)
        client.config_set("requirepass", REDIS_PASSWORD)
        client.close()
        yield server
    finally:
        server.process.kill()


def redis_url(server: RedisServer, db: int) -> str:
    return f"redis://:{quote(REDIS_PASSWORD, safe='')}@127.0.0.1:{server.port}/{db}"


def seed_redis(server: RedisServer) -> redis.Redis:
    client = redis.Redis.from_url(redis_url(server, 0))
    for sid, (record, ttl_ms) in OLD_SESSIONS.items():
        client.set(f"session:{sid}", orjson.dumps(record), px=ttl_ms)
    for key, value in JUNK.items():
        client.set(key, value)
    return client


def operator_env(**extra: str) -> dict[str, str]:
    """The shell of the operator: no service variable set (the .env files carry them)."""
    keep = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR")
    return {**{k: v for k, v in os.environ.items() if k in keep}, **extra}


def write_old_env(folder: Path, database: str, user: str, redis_port: int, port: int) -> Path:
    db = parse_database_url(TEST_DATABASE_URL)
    path = folder / "old.env"
    path.write_text(
        f"PORT={port}\nDB_HOST={db.host}\nDB_PORT={db.port}\nDB_USER={user}\nDB_PASSWORD=\"{DB_PASSWORD}\"\n"
        f"DB_NAME={database}\nREDIS_HOST=127.0.0.1\nREDIS_PORT={redis_port}\nREDIS_PASSWORD='{REDIS_PASSWORD}'\n"
        f"REDIS_DB=0\nJWT_SECRET={JWT_SECRET}\nDASHSCOPE_MODEL=qwen-plus\nLOG_LEVEL=info\n"
        "SOME_NODE_ONLY_SETTING=1\n"
    )
    return path


async def test_the_cutover_runbook_end_to_end(tmp_path, old_mysql, old_redis):  # noqa: PLR0915 - one runbook
    database, user = old_mysql
    old = seed_redis(old_redis)
    ttls_before = {k.decode(): old.pttl(k) for k in old.keys("*")}
    port = free_port()
    folder = tmp_path / "cutover"
    folder.mkdir()
    write_old_env(folder, database, user, old_redis.port, port)
    db = parse_database_url(TEST_DATABASE_URL)
    database_url = f"mysql://{user}:{quote(DB_PASSWORD, safe='')}@{db.host}:{db.port}/{database}"
    shell = operator_env(DB_TABLE_PREFIX="chat_")  # the backup takes the service's tables under their prefix

    # 1. backup (the service's Redis db 1 and its tables, which do not exist yet; the old .env)
    out = run([CHAT_API, "backup", "--out", "backup", "--redis-url", redis_url(old_redis, 1), "--database-url",
               database_url, "--config", "old.env", "--no-mysqldump", "--quiet"], folder, shell)
    assert (folder / "backup" / "manifest.json").exists(), out
    assert REDIS_PASSWORD not in out and DB_PASSWORD not in out

    # 2. migrate_config: the new .env, then the two lines the runbook adds by hand
    out = run([CHAT_API, "migrate-config", "--input", "old.env", "--output", ".env"], folder, shell)
    assert "SOME_NODE_ONLY_SETTING" in out and REDIS_PASSWORD not in out
    new_env = (folder / ".env").read_text()
    assert new_env.split("REDIS_URL=", 1)[1].splitlines()[0].endswith("/1")  # the migration's target db
    assert "AI_MODEL=qwen-plus" in new_env and "LOG_LEVEL=" in new_env
    # the old tables hold the service's names: without a prefix nothing is written and the differences are listed
    out = run([CHAT_API, "db", "upgrade"], folder, operator_env(), expect=2)
    assert "conversations: missing column(s)" in out and "DB_TABLE_PREFIX" in out
    with (folder / ".env").open("a") as env_file:
        env_file.write("DB_TABLE_PREFIX=chat_\nAI_PROVIDER=echo\n")

    # 3. migrate_redis: db 0 -> db 1, the three junk keys accepted, naive times in Shanghai time
    out = run([CHAT_API, "migrate-redis", "--source", redis_url(old_redis, 0), "--target", redis_url(old_redis, 1),
               "--naive-tz", "Asia/Shanghai", "--max-failures", str(len(JUNK)), "--verify", "--quiet",
               "--report", "migrate_redis_report.jsonl"], folder, operator_env())
    report = [json.loads(line) for line in (folder / "migrate_redis_report.jsonl").read_text().splitlines()]
    assert {r["key"] for r in report if r.get("level") != "info"} >= set(JUNK), report

    # 4. db import-legacy (reads ./.env)
    out = run([CHAT_API, "db", "import-legacy", "--mapping", str(ROOT / "docs" / "legacy-mapping.example.toml")],
              folder, operator_env())
    assert "conversations: 3 read, 3 added" in out and "messages: 6 read, 6 added" in out, out

    # 5. serve from the folder with only the new .env
    log = await _serving(folder, tmp_path / "serve.log", _use_the_service(folder, port))
    assert f"read {folder / '.env'}" in log, log  # the file read is said at start
    assert "echo" in log and REDIS_PASSWORD not in log and DB_PASSWORD not in log

    # 6. rollback as the monitor's hook runs it: db 1 and the database from ./.env, changed sessions to db 0
    out = run([CHAT_API, "rollback", "--from", "backup", "--reverse-migrate", "--reverse-target",
               redis_url(old_redis, 0), "--naive-tz", "Asia/Shanghai", "--yes"], folder, operator_env())
    assert f"(from REDIS_URL in {folder / '.env'})" in out and f"(from DATABASE_URL in {folder / '.env'})" in out
    assert REDIS_PASSWORD not in out and quote(REDIS_PASSWORD, safe="") not in out
    _check_the_rollback(folder, out, old, ttls_before, database_url)

    # the old services carry on meanwhile: s-ttl goes to a human, an old conversation gets a message
    window_ms = int(time.time() * 1000)
    record = orjson.loads(old.get("session:s-ttl"))
    old.set("session:s-ttl", orjson.dumps({**record, "agent": "human", "updatedAt": window_ms}), keepttl=True)
    conn = pymysql.connect(host=db.host, port=db.port, user=user, password=DB_PASSWORD, database=database,
                           autocommit=True)
    try:
        with conn.cursor() as cur:
            cur.execute("INSERT INTO messages VALUES (1006, 100, 'contact', NULL, 'still waiting', 0, NOW())")
    finally:
        conn.close()

    # 9. roll forward again (docs/cutover.md): a new backup, the same .env, the sessions, their rows, the saved
    # rows, then the old rows, then the service
    run([CHAT_API, "backup", "--out", "backup-2", "--config", ".env", "--no-mysqldump", "--quiet"], folder,
        operator_env())
    run([CHAT_API, "migrate-redis", "--source", redis_url(old_redis, 0), "--target", redis_url(old_redis, 1),
         "--naive-tz", "Asia/Shanghai", "--max-failures", str(len(JUNK)), "--verify", "--quiet"], folder,
        operator_env())
    run([CHAT_API, "db", "adopt"], folder, operator_env())
    saved = next((folder / "backup").glob("saved-since-backup-*.jsonl"))
    out = run([CHAT_API, "rollback", "--restore-saved", str(saved)], folder, operator_env())
    assert "result: OK" in out, out
    run([CHAT_API, "db", "import-legacy", "--mapping", str(ROOT / "docs" / "legacy-mapping.example.toml")],
        folder, operator_env())
    await _serving(folder, tmp_path / "serve-again.log", _use_it_again(folder, port))
    # every row is where its event log leads (the statistics' source), restored ones included
    out = run([CHAT_API, "stats", "rebuild"], folder, operator_env())
    assert "0 differing (0 repaired), 0 broken logs" in out, out


async def _serving(folder: Path, log: Path, use: Coroutine[Any, Any, None]) -> str:
    """`chat-api serve` in the cut-over folder (only its .env) while `use` runs; the end of its log."""
    service = Process("chat-api", ["/bin/sh", "-c", f'cd "{folder}" && exec "{CHAT_API}" serve --host 127.0.0.1'],
                      log, "Running on", operator_env())
    try:
        service.start()
    except BaseException:
        use.close()  # never started
        raise
    try:
        await use
    finally:
        service.terminate()
    return service.tail(200)


async def _use_the_service(folder: Path, port: int) -> None:
    env = operator_env()
    customer = run([CHAT_API, "token", "--sub", "cust-ttl", "--role", "customer"], folder, env).split()[-1]
    admin = run([CHAT_API, "token", "--sub", "1", "--role", "admin"], folder, env).split()[-1]
    old_customer = run([CHAT_API, "token", "--sub", "cust-100", "--role", "customer"], folder, env).split()[-1]
    newcomer = run([CHAT_API, "token", "--sub", "new-cust", "--role", "customer"], folder, env).split()[-1]
    base = f"http://127.0.0.1:{port}"
    async with aiohttp.ClientSession() as http:
        # a migrated customer resumes and gets an AI reply
        ws = WS(await http.ws_connect(f"{base}/ws?token={customer}"))
        resumed = await ws.ok("conversation.resume", conversation_id="s-ttl")
        assert resumed["conversation"]["state"] == "ai"
        await ws.ok("message.send", conversation_id="s-ttl", client_msg_id="m1", content="where is my order?")
        await ws.event("message.created", lambda f: f["data"]["message"]["sender_type"] == "ai")
        # an old conversation is visible over REST
        old_id = str(uuid.uuid5(DEFAULT_NAMESPACE, "conversations:101"))
        headers = {"Authorization": f"Bearer {admin}"}
        async with http.get(f"{base}/api/v1/conversations/{old_id}", headers=headers) as resp:
            assert resp.status == 200, await resp.text()
            assert (await resp.json())["state"] == "closed"
        async with http.get(f"{base}/api/v1/conversations/{old_id}/messages", headers=headers) as resp:
            assert [m["content"] for m in (await resp.json())["items"]][:2] == [
                "I was charged twice", "Refund issued, sorry!"]
        # new conversations and messages, and a message in an imported one
        mine = WS(await http.ws_connect(f"{base}/ws?token={old_customer}"))
        imported = str(uuid.uuid5(DEFAULT_NAMESPACE, "conversations:100"))
        await mine.ok("conversation.resume", conversation_id=imported)
        await mine.ok("message.send", conversation_id=imported, client_msg_id="m1", content="any news?")
        await mine.event("message.created", lambda f: f["data"]["message"]["sender_type"] == "ai")
        fresh = WS(await http.ws_connect(f"{base}/ws?token={newcomer}"))
        started = (await fresh.ok("conversation.start"))["conversation"]["id"]
        await fresh.ok("message.send", conversation_id=started, client_msg_id="m1", content="hello")
        await fresh.event("message.created", lambda f: f["data"]["message"]["sender_type"] == "ai")


async def _use_it_again(folder: Path, port: int) -> None:
    """After the roll-forward: what was written in the first cut-over is there once, and the conversations
    take new messages."""
    env = operator_env()
    customer = run([CHAT_API, "token", "--sub", "cust-ttl", "--role", "customer"], folder, env).split()[-1]
    old_customer = run([CHAT_API, "token", "--sub", "cust-100", "--role", "customer"], folder, env).split()[-1]
    imported = str(uuid.uuid5(DEFAULT_NAMESPACE, "conversations:100"))
    admin = run([CHAT_API, "token", "--sub", "1", "--role", "admin"], folder, env).split()[-1]
    base = f"http://127.0.0.1:{port}"
    async with aiohttp.ClientSession() as http:
        # what the old services did meanwhile wins: s-ttl waits for a human, in the queue too
        async with http.get(f"{base}/api/v1/conversations?state=handoff",
                            headers={"Authorization": f"Bearer {admin}"}) as resp:
            assert "s-ttl" in [c["id"] for c in (await resp.json())["items"]]
        for token, cid, question, later in ((customer, "s-ttl", "where is my order?", None),
                                            (old_customer, imported, "any news?", "still waiting")):
            ws = WS(await http.ws_connect(f"{base}/ws?token={token}"))
            resumed = await ws.ok("conversation.resume", conversation_id=cid)
            history = resumed["messages"]
            contents = [m["content"] for m in history]
            assert contents.count(question) == 1, contents  # the first cut-over's message, once
            if later is not None:  # the old services' message after it
                assert contents.index(later) > contents.index(question), contents
            assert [m["seq"] for m in history] == list(range(1, len(history) + 1)), history
            sent = await ws.ok("message.send", conversation_id=cid, client_msg_id="again", content="back again")
            assert sent["message"]["seq"] == history[-1]["seq"] + 1, (sent, history)
            if cid == "s-ttl":
                assert resumed["conversation"]["state"] == "handoff", resumed
            else:
                await ws.event("message.created", lambda f: f["data"]["message"]["sender_type"] == "ai")


def _check_the_rollback(folder: Path, out: str, old: redis.Redis, ttls_before: dict[str, int],
                        database_url: str) -> None:
    # the old records are back in db 0 with their TTLs (the changed one rewritten in the old format)
    for sid, (_record, ttl_ms) in OLD_SESSIONS.items():
        pttl = old.pttl(f"session:{sid}")
        assert (pttl > 0) if ttl_ms else (pttl == -1), (sid, pttl, out)
        if ttl_ms:
            assert pttl <= ttls_before[f"session:{sid}"]
    for key, value in JUNK.items():
        assert old.get(key) == value
    back = orjson.loads(old.get("session:s-ttl"))
    assert back["userId"] == "cust-ttl" and back["agent"] == "ai" and back["context"] == {"topic": "order"}
    # the rows written after the backup: saved, with the counts the rollback printed
    saved = sorted((folder / "backup").glob("saved-since-backup-*.jsonl"))
    assert len(saved) == 1, out
    lines = [json.loads(line) for line in saved[0].read_text().splitlines()]
    header, rows = lines[0], lines[1:]
    assert header["counts"]["chat_conversations"] >= 3 and header["counts"]["chat_messages"] >= 6, header
    for table, count in header["counts"].items():  # the plan said so, table by table, and the file holds it
        assert re.search(rf"table {table} +[\d,]+ now, {count:,} to save first \(", out), (table, count, out)
        assert sum(1 for r in rows if r["table"] == table) == count
    contents = {r["row"].get("content") for r in rows if r["table"].endswith("messages")}
    assert {"where is my order?", "any news?", "hello"} <= contents
    # the service's tables are as the backup had them (empty); the old ones untouched
    config = parse_database_url(database_url)
    conn = pymysql.connect(host=config.host, port=config.port, user=config.user, password=config.password,
                           database=config.database)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT COUNT(*) FROM chat_conversations")
            assert cur.fetchone()[0] == 0
            cur.execute("SELECT COUNT(*) FROM conversations")
            assert cur.fetchone()[0] == 3
    finally:
        conn.close()


def test_the_runbook_commands_work_from_the_cutover_folder():
    """docs/cutover.md is typed from `cutover/`: `chat-api X`, never `python scripts/X.py` (a path from the repo
    root); every reverse migration names db 0, the old services' database; db 0 is backed up first."""
    docs = [ROOT / "docs" / "cutover.md", ROOT / "docs" / "migration.md", ROOT / "README.md"]
    runbook = docs[0].read_text()
    commands = re.findall(r"`([^`\n]*(?:chat-api|scripts/)[^`\n]*)`|^(chat-api .*)$", runbook, re.MULTILINE)
    assert not [c for pair in commands for c in pair if "python scripts/" in c]
    assert "chat-api backup --out backup-db0 --redis-url 'redis://:PASS@HOST:6379/0'" in runbook
    for doc in docs:
        for line in doc.read_text().splitlines():
            if "--reverse-migrate" in line and "rollback" in line and "--from" in line:
                assert re.search(r"--reverse-target '?redis://\S*/0\b", line), (doc.name, line)
