"""scripts/backup.py and scripts/rollback.py against the real Redis (dbs 10-13) and MariaDB."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import re
import shutil
import sqlite3
import subprocess
import sys
import time
import warnings
from pathlib import Path

import _backup_format as fmt
import backup
import migrate_redis
import pymysql
import pytest
import rollback
from _common import mask_url
from script_support import REPO, redis_url

from chat.settings import parse_database_url
from chat.store import Store, connect
from chat.store.schema import table_names

LIVE, OLD_DB, SCRATCH = 10, 11, 13
HOUR_MS = 3_600_000
# MariaDB's client (mariadb-client, pulled in by mariadb-server) is on every machine ./dev test
# prepares; both backup methods are tested, neither is skipped
HAS_MYSQLDUMP = shutil.which("mysqldump") is not None and shutil.which("mysql") is not None
TABLES = [*table_names(), "schema_version"]


# --------------------------------------------------------------------------- SQL fixtures


async def _upgrade(url: str) -> None:
    db = await connect(parse_database_url(url), pool_size=2)
    try:
        await Store(db).upgrade()
    finally:
        await db.close()


def _mysql(url: str) -> pymysql.connections.Connection:
    config = parse_database_url(url)
    return pymysql.connect(
        host=config.host,
        port=config.port,
        user=config.user,
        password=config.password,
        database=config.database,
        charset="utf8mb4",
        autocommit=False,
    )


def _reset_schema(url: str) -> None:
    """The full schema with its version row, every table empty.

    The database is shared with the other suites for the whole run: tests here drop tables,
    empty schema_version and leave rows behind, and none of that may reach them.
    """
    conn = _mysql(url)
    try:
        with conn.cursor() as cur, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # Without a version row, the upgrade recreates any table a test dropped.
            cur.execute("DROP TABLE IF EXISTS schema_version")
        conn.commit()
    finally:
        conn.close()
    with warnings.catch_warnings():  # "table already exists"
        warnings.simplefilter("ignore")
        asyncio.run(_upgrade(url))
    conn = _mysql(url)
    try:
        with conn.cursor() as cur:
            for table in reversed(table_names()):
                cur.execute(f"DELETE FROM `{table}`")
        conn.commit()
    finally:
        conn.close()


@pytest.fixture
def mysql_url(mysql_database_url):
    """The run's MariaDB database with the full schema and empty tables, before and after."""
    _reset_schema(mysql_database_url)
    yield mysql_database_url
    _reset_schema(mysql_database_url)


# Tricky content on purpose: the mysqldump row counter must not be fooled by quotes,
# backslashes or "),(" inside strings.
ROWS = {
    "users": [
        ("agent-1", "agent", "Ann", 1, 3, 1_700_000_000_000, 1_700_000_000_001),
        ("cust-1", "customer", None, 1, None, 1_700_000_000_000, 1_700_000_000_000),
    ],
    "customer_contacts": [
        ("cc-1", "cust-1", "O'Brien", "o@example.com", None, '{"a": "),("}', 1_700_000_000_000),
    ],
    "teams": [("team-1", "Support", "first line", 1_700_000_000_000, 1_700_000_000_000)],
    "team_members": [("team-1", "agent-1", 1_700_000_000_000)],
    "labels": [("label-1", "vip", "d\\e'sc", "#ff0000", 1_700_000_000_000)],
    "conversations": [
        ("conv-1", "cust-1", "human", "human", "agent-1", "team-1", 3, 2, "{}", None,
         1_700_000_000_000, 1_700_000_000_100),
        ("conv-2", "cust-1", "ai", "ai", None, None, 0, 1, None, None,
         1_700_000_000_200, 1_700_000_000_200),
    ],
    "conversation_labels": [("conv-1", "label-1")],
    "messages": [
        ("m-1", "conv-1", 1, "customer", "cust-1", "你好 'quoted' \\ back), ('x", 0, "c-1",
         1_700_000_000_010),
        ("m-2", "conv-1", 2, "agent", "agent-1", "line\nbreak\ttab 😀", 1, None, 1_700_000_000_020),
        ("m-3", "conv-2", 1, "customer", "cust-1", "(", 0, "c-2", 1_700_000_000_210),
    ],
    "conversation_events": [
        ("e-1", "conv-1", 1, "assign", "ai", "human", "agent", "agent-1", None, "agent-1", None,
         1_700_000_000_050),
    ],
}


def seed_sql(url: str) -> None:
    conn = _mysql(url)
    try:
        with conn.cursor() as cur:
            for table, rows in ROWS.items():
                marks = ", ".join(["%s"] * len(rows[0]))
                cur.executemany(f"INSERT INTO `{table}` VALUES ({marks})", rows)
        conn.commit()
    finally:
        conn.close()


def change_sql(url: str, since_ms: int) -> None:
    """Insert, update and delete rows in parents and children."""
    conn = _mysql(url)
    try:
        with conn.cursor() as cur:
            cur.execute(
                "INSERT INTO conversations VALUES (%s, %s, 'ai', 'ai', NULL, NULL, 0, 1, NULL, NULL, %s, %s)",
                ("conv-new", "cust-2", since_ms + 1, since_ms + 1),
            )
            cur.execute(
                "INSERT INTO messages VALUES ('m-new', 'conv-new', 1, 'customer', 'cust-2', 'hi', 0, NULL, %s)",
                (since_ms + 2,),
            )
            cur.execute("UPDATE messages SET content = %s WHERE id = %s", ("edited", "m-1"))
            cur.execute("UPDATE users SET name = %s, active = 0 WHERE id = %s", ("Bob", "agent-1"))
            cur.execute("DELETE FROM conversations WHERE id = %s", ("conv-2",))  # cascades to m-3
            cur.execute("DELETE FROM labels WHERE id = %s", ("label-1",))
            cur.execute("DELETE FROM schema_version")
        conn.commit()
    finally:
        conn.close()


def sql_snapshot(url: str) -> dict[str, list[tuple]]:
    """Every row of every table, in a stable order."""
    conn = _mysql(url)
    try:
        with conn.cursor() as cur:
            snapshot = {}
            for table in TABLES:
                cur.execute(f"SELECT * FROM `{table}`")
                snapshot[table] = sorted(cur.fetchall(), key=repr)
        conn.rollback()
        return snapshot
    finally:
        conn.close()


# --------------------------------------------------------------------------- Redis fixtures


def new_session(user_id: str, state: str = "ai", stamp: str = "2024-01-01T10:00:00.000Z", **extra) -> bytes:
    record = {
        "user_id": user_id,
        "agent_type": "ai" if state == "ai" else "human",
        "context": {"lang": "zh"},
        "created_at": stamp,
        "updated_at": stamp,
        "state": state,
        "version": 1,
        "agent_id": "agent-1" if state == "human" else None,
        "team_id": None,
        "metadata": {"channel": "web"},
        **extra,
    }
    return json.dumps(record).encode()


def seed_redis(client) -> None:
    client.set("session:ttl", new_session("u-1"), px=HOUR_MS)
    client.set("session:no-ttl", new_session("u-2", "human"))
    client.set("session:binary", b"\x00\xff not json \xfe", px=2 * HOUR_MS)
    client.set("session:" + "x" * 40, "long " * 200)  # compressible: an LZF payload
    client.hset("presence:agent-1", mapping={"status": "online", "max_chats": "3", "teams": '["t"]'})
    client.zadd("agents:online", {"agent-1": 1_700_000_000_000, "agent-2": 1.5})
    client.zadd("agents:lease", {"agent-1": 1_800_000_000_000})
    client.sadd("agent:agent-1:load", "conv-1", "conv-2")
    client.rpush("agents:queue-ish", "a", "b", "a")
    client.set("unrelated:key", "outside the patterns")


def redis_snapshot(client) -> dict[bytes, tuple[str, object]]:
    """Every key with its type and value (read by type, so encodings do not matter)."""
    snapshot = {}
    for key in client.scan_iter(count=100):
        kind = client.type(key).decode()
        if kind == "string":
            value = client.get(key)
        elif kind == "hash":
            value = client.hgetall(key)
        elif kind == "set":
            value = sorted(client.smembers(key))
        elif kind == "zset":
            value = client.zrange(key, 0, -1, withscores=True)
        elif kind == "list":
            value = client.lrange(key, 0, -1)
        else:
            raise AssertionError(kind)
        snapshot[key] = (kind, value)
    return snapshot


def ttls(client) -> dict[bytes, int]:
    return {key: client.pttl(key) for key in client.scan_iter(count=100)}


# --------------------------------------------------------------------------- running


def summary(out: str) -> dict[str, int]:
    rows = re.findall(r"^  ([a-zA-Z][a-zA-Z_ -]*?) +([\d,]+)  ", out, re.MULTILINE)
    return {label: int(count.replace(",", "")) for label, count in rows}


def run_backup(out: Path, *args: str, db: int = LIVE, database_url: str | None = None) -> int:
    argv = ["--out", str(out), "--redis-url", redis_url(db), "--quiet", *args]
    argv += ["--database-url", database_url] if database_url else ["--skip-database"]
    return backup.main(argv)


def run_rollback(source: Path, *args: str, db: int = LIVE, database_url: str | None = None) -> int:
    argv = ["--from", str(source), "--redis-url", redis_url(db), "--quiet", *args]
    argv += ["--database-url", database_url] if database_url else ["--skip-database"]
    return rollback.main(argv)


def manifest(path: Path) -> dict:
    return json.loads((path / "manifest.json").read_text())


def rehash(path: Path) -> None:
    """Recompute the manifest's checksums after a test edits a file on purpose."""
    data = manifest(path)
    for rel in data["files"]:
        data["files"][rel] = {"sha256": fmt.sha256_file(path / rel), "bytes": (path / rel).stat().st_size}
    (path / "manifest.json").write_text(json.dumps(data))


# --------------------------------------------------------------------------- round trip


@pytest.mark.parametrize(
    "method",
    [
        "logical",
        "mysqldump",
    ],
)
def test_rollback_gives_back_keys_ttls_rows_and_files(dbs, mysql_url, tmp_path, capsys, method):
    live = dbs[LIVE]
    seed_redis(live)
    seed_sql(mysql_url)
    old_env = tmp_path / "old" / ".env"
    new_env = tmp_path / "new" / ".env"
    for path, text in ((old_env, "DB_PASSWORD=old-secret\n"), (new_env, "JWT_SECRET_KEY=new\n")):
        path.parent.mkdir()
        path.write_text(text)
    old_env.chmod(0o600)
    keys_before, ttls_before, rows_before = redis_snapshot(live), ttls(live), sql_snapshot(mysql_url)
    started = time.monotonic()

    extra = ["--no-mysqldump"] if method == "logical" else []
    rc = run_backup(tmp_path / "bk", "--config", str(old_env), "--config", str(new_env),
                    *extra, database_url=mysql_url)

    assert rc == 0, capsys.readouterr()
    data = manifest(tmp_path / "bk")
    assert data["database"]["method"] == method
    assert data["counts"]["redis_keys"] == len(keys_before) - 1  # unrelated:key is outside the patterns
    assert data["counts"]["rows"]["messages"] == 3
    assert data["counts"]["rows"]["conversations"] == 2
    assert data["counts"]["config_files"] == 2
    assert data["redis"]["with_ttl"] == 2
    assert isinstance(data["backup_ms"], int)
    assert all(len(f["sha256"]) == 64 for f in data["files"].values())

    # Everything changes after the backup.
    live.set("session:ttl", new_session("u-1", "human"), keepttl=True)  # modified
    live.delete("session:no-ttl")  # deleted
    live.set("session:added", new_session("u-9"))  # added
    live.persist("session:binary")  # TTL removed
    live.pexpire("session:" + "x" * 40, 5000)  # TTL added
    live.hset("presence:agent-1", "status", "away")
    live.hset("presence:agent-2", "status", "online")
    live.zadd("agents:online", {"agent-3": 3})
    live.srem("agent:agent-1:load", "conv-1")
    live.set("unrelated:key", "changed")
    change_sql(mysql_url, data["backup_ms"])
    old_env.write_text("DB_PASSWORD=changed\n")
    new_env.unlink()
    capsys.readouterr()

    rc = run_rollback(tmp_path / "bk", "--yes", database_url=mysql_url)

    out = capsys.readouterr().out
    assert rc == 0, out
    expected = {**keys_before, b"unrelated:key": ("string", b"changed")}
    assert redis_snapshot(live) == expected
    elapsed_ms = (time.monotonic() - started) * 1000
    for key, before in ttls_before.items():
        after = live.pttl(key)
        if before < 0:
            assert after == before, key
        else:  # an absolute expiry: the time that passed is gone from the TTL, nothing else
            assert before - elapsed_ms - 100 <= after <= before, key
    assert sql_snapshot(mysql_url) == rows_before
    assert old_env.read_text() == "DB_PASSWORD=old-secret\n"
    assert new_env.read_text() == "JWT_SECRET_KEY=new\n"
    assert old_env.stat().st_mode & 0o777 == 0o600
    counts = summary(out)
    assert counts["keys restored"] == len(keys_before) - 1
    assert counts["keys removed"] == 2  # session:added, presence:agent-2
    assert counts["table messages"] == 3
    assert counts["config files"] == 2
    assert "result: OK" in out
    assert "old-secret" not in out


def test_plan_names_the_rows_written_since_the_backup(dbs, mysql_url, tmp_path, capsys):
    seed_sql(mysql_url)
    assert run_backup(tmp_path / "bk", "--no-mysqldump", database_url=mysql_url) == 0
    change_sql(mysql_url, manifest(tmp_path / "bk")["backup_ms"])
    capsys.readouterr()

    assert run_rollback(tmp_path / "bk", "--dry-run", database_url=mysql_url) == 0

    out = capsys.readouterr().out
    assert re.search(r"table messages +3 now, 1 created since the backup \(lost\) -> 3", out)


def test_sqlite_database_round_trip(dbs, tmp_path, capsys):
    path = tmp_path / "chat.db"
    url = f"sqlite:///{path}"
    asyncio.run(_upgrade(url))
    with sqlite3.connect(path) as conn:
        conn.execute("INSERT INTO users VALUES ('u1', 'agent', 'A', 1, NULL, 1, 2)")
    assert run_backup(tmp_path / "bk", database_url=url) == 0
    assert manifest(tmp_path / "bk")["database"]["method"] == "sqlite"
    assert manifest(tmp_path / "bk")["database"]["url"] == url  # the path as given, all slashes
    with sqlite3.connect(path) as conn:
        conn.execute("DELETE FROM users")
        conn.execute("INSERT INTO teams VALUES ('t', 'T', NULL, 1, 1)")

    assert run_rollback(tmp_path / "bk", "--yes", database_url=url) == 0

    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT * FROM users").fetchall() == [("u1", "agent", "A", 1, None, 1, 2)]
        assert conn.execute("SELECT COUNT(*) FROM teams").fetchone() == (0,)


def test_mysqldump_is_the_default_and_which_decides(dbs, mysql_url, tmp_path, monkeypatch):
    seed_sql(mysql_url)
    monkeypatch.setattr(backup.shutil, "which", lambda name: None)  # as if not installed
    assert run_backup(tmp_path / "logical", database_url=mysql_url) == 0
    assert manifest(tmp_path / "logical")["database"]["method"] == "logical"
    monkeypatch.undo()
    assert HAS_MYSQLDUMP, "mysqldump and mysql (mariadb-client) must be installed"
    assert run_backup(tmp_path / "dump", database_url=mysql_url) == 0
    part = manifest(tmp_path / "dump")["database"]
    assert part["method"] == "mysqldump"
    assert {t: part["tables"][t]["rows"] for t in ROWS} == {t: len(r) for t, r in ROWS.items()}


def test_env_variables_are_the_defaults(dbs, mysql_url, tmp_path, monkeypatch):
    dbs[LIVE].set("session:env", "x")
    monkeypatch.setenv("REDIS_URL", redis_url(LIVE))
    monkeypatch.setenv("DATABASE_URL", mysql_url)

    assert backup.main(["--out", str(tmp_path / "bk"), "--quiet", "--no-mysqldump"]) == 0

    data = manifest(tmp_path / "bk")
    assert data["redis"]["db"] == LIVE and data["redis"]["keys"] == 1
    assert data["database"]["url"] == mask_url(mysql_url)


# --------------------------------------------------------------------------- backup details


def test_key_vanishing_between_scan_and_dump_is_skipped_and_counted(dbs, tmp_path, monkeypatch):
    seed_redis(dbs[LIVE])
    real_scan = backup.scan_keys

    def scan_then_delete(*args):
        for keys, fraction in real_scan(*args):
            if b"session:ttl" in keys:
                dbs[LIVE].delete("session:ttl")
            yield keys, fraction

    monkeypatch.setattr(backup, "scan_keys", scan_then_delete)

    assert run_backup(tmp_path / "bk") == 0

    data = manifest(tmp_path / "bk")
    assert data["redis"]["vanished"] == 1
    assert "session:ttl" not in (tmp_path / "bk" / fmt.REDIS_FILE).read_text()


def test_patterns_limit_the_keys(dbs, tmp_path):
    seed_redis(dbs[LIVE])
    assert run_backup(tmp_path / "bk", "--pattern", "presence:*", "--pattern", "agents:*") == 0
    data = manifest(tmp_path / "bk")
    assert data["redis"]["patterns"] == ["presence:*", "agents:*"]
    assert data["redis"]["keys"] == 4


def test_non_empty_out_is_refused_without_force(dbs, tmp_path, capsys):
    out = tmp_path / "bk"
    out.mkdir()
    (out / "something").write_text("x")

    assert run_backup(out) == 2
    assert not (out / "manifest.json").exists()

    assert run_backup(out, "--force") == 0
    assert (out / "manifest.json").exists()


def test_backup_dry_run_writes_nothing(dbs, mysql_url, tmp_path, capsys):
    seed_redis(dbs[LIVE])
    seed_sql(mysql_url)

    assert run_backup(tmp_path / "bk", "--dry-run", database_url=mysql_url) == 0

    assert not (tmp_path / "bk").exists()
    out = capsys.readouterr().out
    assert re.search(r"redis keys +9 +would be backed up", out)
    assert re.search(r"table messages +3", out)


def test_unreachable_database_fails_without_a_manifest_or_a_leaked_password(dbs, tmp_path, capsys):
    url = "mysql://root:s3cret-pw@127.0.0.1:1/chat_api"

    rc = run_backup(tmp_path / "bk", "--no-mysqldump", database_url=url)

    assert rc == 1
    assert not (tmp_path / "bk" / "manifest.json").exists()
    captured = capsys.readouterr()
    assert "s3cret-pw" not in captured.out + captured.err
    assert "result: FAILED" in captured.out


def test_bad_urls_and_missing_config_are_usage_errors(tmp_path):
    assert backup.main(["--out", str(tmp_path / "a"), "--redis-url", "http://x", "--skip-database"]) == 2
    assert backup.main(["--out", str(tmp_path / "a"), "--skip-redis", "--database-url", "pg://x/y"]) == 2
    assert backup.main(["--out", str(tmp_path / "a"), "--skip-redis", "--skip-database",
                        "--config", str(tmp_path / "missing.env")]) == 2
    with pytest.raises(SystemExit) as exc:
        backup.main(["--help"])
    assert exc.value.code == 0


# --------------------------------------------------------------------------- refusing


def _backed_up(dbs, mysql_url, tmp_path) -> Path:
    seed_redis(dbs[LIVE])
    seed_sql(mysql_url)
    env = tmp_path / "app.env"
    env.write_text("A=1\n")
    assert run_backup(tmp_path / "bk", "--no-mysqldump", "--config", str(env), database_url=mysql_url) == 0
    # Changes a refused rollback must leave as they are.
    dbs[LIVE].set("session:ttl", "changed")
    dbs[LIVE].set("session:new", "new")
    change_sql(mysql_url, manifest(tmp_path / "bk")["backup_ms"])
    env.write_text("A=2\n")
    return tmp_path / "bk"


def _flip_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


TAMPERINGS = {
    "redis file": lambda bk: _flip_byte(bk / fmt.REDIS_FILE),
    "table file": lambda bk: (bk / "database/messages.jsonl").write_text(
        "".join((bk / "database/messages.jsonl").read_text().splitlines(True)[:-1])
    ),
    "config file": lambda bk: _flip_byte(next((bk / "config").iterdir())),
    "missing file": lambda bk: (bk / "database/users.jsonl").unlink(),
    "manifest count": lambda bk: (bk / "manifest.json").write_text(
        json.dumps({**manifest(bk), "counts": {**manifest(bk)["counts"], "redis_keys": 1}})
    ),
    "manifest gone": lambda bk: (bk / "manifest.json").unlink(),
    "manifest not json": lambda bk: (bk / "manifest.json").write_text("{"),
}


@pytest.mark.parametrize("how", list(TAMPERINGS))
def test_tampered_backup_is_refused_and_nothing_changes(dbs, mysql_url, tmp_path, capsys, how):
    bk = _backed_up(dbs, mysql_url, tmp_path)
    TAMPERINGS[how](bk)
    keys, rows = redis_snapshot(dbs[LIVE]), sql_snapshot(mysql_url)
    capsys.readouterr()

    rc = run_rollback(bk, "--yes", database_url=mysql_url)

    assert rc == 1
    assert redis_snapshot(dbs[LIVE]) == keys
    assert sql_snapshot(mysql_url) == rows
    assert (tmp_path / "app.env").read_text() == "A=2\n"
    assert "REFUSED" in capsys.readouterr().out


def test_count_mismatch_with_matching_checksums_is_refused(dbs, mysql_url, tmp_path, capsys):
    bk = _backed_up(dbs, mysql_url, tmp_path)
    lines = (bk / fmt.REDIS_FILE).read_text().splitlines(True)
    (bk / fmt.REDIS_FILE).write_text("".join(lines[1:]))
    rehash(bk)  # a consistent-looking manifest that still claims one key more

    assert run_rollback(bk, "--yes", database_url=mysql_url) == 1
    assert dbs[LIVE].get("session:new") == b"new"
    assert re.search(r"keys in redis/keys.jsonl, the manifest says", capsys.readouterr().err)


def test_dry_run_changes_nothing(dbs, mysql_url, tmp_path, capsys):
    bk = _backed_up(dbs, mysql_url, tmp_path)
    keys, rows = redis_snapshot(dbs[LIVE]), sql_snapshot(mysql_url)
    capsys.readouterr()

    assert run_rollback(bk, "--dry-run", "--reverse-migrate", database_url=mysql_url) == 0

    assert redis_snapshot(dbs[LIVE]) == keys
    assert sql_snapshot(mysql_url) == rows
    assert (tmp_path / "app.env").read_text() == "A=2\n"
    out = capsys.readouterr().out
    assert re.search(r"remove +1 +keys", out)
    assert "(replaced)" in out
    assert "dry run: nothing changed" in out


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_confirmation(dbs, mysql_url, tmp_path, monkeypatch, capsys):
    bk = _backed_up(dbs, mysql_url, tmp_path)
    keys = redis_snapshot(dbs[LIVE])

    monkeypatch.setattr("sys.stdin", io.StringIO("yes\n"))  # not a terminal: no way to ask
    assert run_rollback(bk, database_url=mysql_url) == 2
    assert "--yes" in capsys.readouterr().err
    monkeypatch.setattr("sys.stdin", _Terminal("no\n"))
    assert run_rollback(bk, database_url=mysql_url) == 1
    assert redis_snapshot(dbs[LIVE]) == keys

    monkeypatch.setattr("sys.stdin", _Terminal("yes\n"))
    assert run_rollback(bk, database_url=mysql_url) == 0
    assert dbs[LIVE].get("session:new") is None
    assert (tmp_path / "app.env").read_text() == "A=1\n"


def test_config_dir_receives_the_files(dbs, tmp_path):
    env = tmp_path / "svc" / ".env"
    env.parent.mkdir()
    env.write_text("X=1\n")
    assert run_backup(tmp_path / "bk", "--config", str(env)) == 0
    target = tmp_path / "restored"

    assert run_rollback(tmp_path / "bk", "--yes", "--config-dir", str(target)) == 0

    assert (target / ".env").read_text() == "X=1\n"


def test_key_expired_since_the_backup_is_not_restored(dbs, tmp_path, capsys):
    dbs[LIVE].set("session:short", "v", px=HOUR_MS)
    dbs[LIVE].set("session:long", "w", px=HOUR_MS)
    assert run_backup(tmp_path / "bk") == 0
    path = tmp_path / "bk" / fmt.REDIS_FILE
    entries = [json.loads(line) for line in path.read_text().splitlines()]
    for entry in entries:
        if entry["key"] == "session:short":
            entry["expire_at_ms"] = 1_000  # long gone
    path.write_text("".join(json.dumps(e) + "\n" for e in entries))
    rehash(tmp_path / "bk")

    assert run_rollback(tmp_path / "bk", "--yes") == 0

    assert not dbs[LIVE].exists("session:short")
    assert dbs[LIVE].get("session:long") == b"w"
    assert summary(capsys.readouterr().out)["keys expired"] == 1


# --------------------------------------------------------------------------- reverse migration

# Old Node.js records in every shape migrate_redis accepts.
OLD_RECORDS = {
    "session:canonical": {
        "userId": "u-1", "agent": "ai", "context": {"history": ["hi"]}, "metadata": {"ch": "web"},
        "createdAt": "2024-01-01T10:00:00.000Z", "updatedAt": "2024-01-01T10:05:00.000Z",
    },
    "session:epoch": {"userId": 42, "agent": "human", "context": {}, "createdAt": 1704103200000,
                      "updatedAt": "1704103500123"},
    "session:sparse": {"userId": "u-3", "agent": None, "context": None, "createdAt": "2024-01-01T18:00:00+08:00"},
    "session:no-times": {"userId": "u-4", "lastSeen": 5, "tags": ["x"]},
    "session:only-updated": {"updatedAt": 1704103200000.9, "userId": "u-5", "metadata": None},
}


def _seed_old(client, ttl_keys=("session:canonical", "session:no-times")) -> dict[str, bytes]:
    raws = {}
    for key, record in OLD_RECORDS.items():
        raws[key] = json.dumps(record, indent=1).encode()  # not compact: byte identity is a real test
        client.set(key, raws[key], px=HOUR_MS if key in ttl_keys else None)
    return raws


def _service_touch(client, key: str, state: str, stamp: str) -> None:
    """What the new service does to a migrated record: a transition, fields in its own order."""
    record = json.loads(client.get(key))
    record.update(state=state, version=record["version"] + 1, updated_at=stamp,
                  agent_id="agent-1" if state == "human" else None, handoff_at=None)
    client.set(key, json.dumps(record), keepttl=True)


def _future_stamp(backup_ms: int, plus_ms: int = 60_000) -> str:
    return migrate_redis.format_epoch_ms(backup_ms + plus_ms)


def test_reverse_migrate_in_place(dbs, tmp_path, capsys):
    live = dbs[LIVE]
    raws = _seed_old(live)
    # The backup before the in-place migration holds the old records.
    assert run_backup(tmp_path / "bk") == 0
    backup_ms = manifest(tmp_path / "bk")["backup_ms"]
    assert migrate_redis.main(["--source", redis_url(LIVE), "--target", redis_url(LIVE), "--quiet",
                               "--report", str(tmp_path / "report.jsonl")]) == 0
    migrated_at = json.loads(live.get("session:no-times"))["created_at"]
    # The new service: a conversation taken by an agent, a new one, presence.
    _service_touch(live, "session:epoch", "ai", _future_stamp(backup_ms))
    _service_touch(live, "session:canonical", "human", _future_stamp(backup_ms))
    live.set("session:created-after", new_session("u-new", "closed", _future_stamp(backup_ms)), px=HOUR_MS)
    live.hset("presence:agent-1", "status", "online")
    capsys.readouterr()

    assert run_rollback(tmp_path / "bk", "--yes", "--reverse-migrate") == 0

    out = capsys.readouterr().out
    # Untouched ones: the original bytes, whether restored or reverse-migrated (the no-times one
    # got the migration time, after the backup, and comes back exactly through its original).
    for key in ("session:sparse", "session:no-times", "session:only-updated"):
        assert live.get(key) == raws[key], key
    # Changed ones: old format, the change kept, the untouched fields in their original form.
    epoch = json.loads(live.get("session:epoch"))
    assert epoch == {"userId": 42, "agent": "ai", "context": {}, "createdAt": 1704103200000,
                     "updatedAt": str(backup_ms + 60_000)}
    canonical = json.loads(live.get("session:canonical"))
    assert canonical == {**OLD_RECORDS["session:canonical"], "agent": "human",
                         "updatedAt": _future_stamp(backup_ms)}
    assert 0 < live.pttl("session:canonical") <= HOUR_MS
    assert live.pttl("session:epoch") == -1
    # Created after the backup: converted, with its TTL, not lost.
    created = json.loads(live.get("session:created-after"))
    assert created == {"userId": "u-new", "agent": "human", "context": {"lang": "zh"},
                       "metadata": {"channel": "web"}, "createdAt": _future_stamp(backup_ms),
                       "updatedAt": _future_stamp(backup_ms)}
    assert HOUR_MS - 60_000 < live.pttl("session:created-after") <= HOUR_MS
    assert not live.exists("presence:agent-1")
    counts = summary(out)
    # epoch, canonical, created-after, and no-times when its migration time is after backup_ms
    # (a later millisecond, which it all but always is)
    later = rollback.iso_ms(migrated_at) > backup_ms
    assert counts["reverse-migrated"] == 3 + later
    assert counts["keys removed"] == 1

    # A second run finds old records newer than the backup and keeps them.
    capsys.readouterr()
    assert run_rollback(tmp_path / "bk", "--yes", "--reverse-migrate") == 0
    assert json.loads(live.get("session:created-after"))["userId"] == "u-new"
    assert json.loads(live.get("session:canonical"))["agent"] == "human"
    assert summary(capsys.readouterr().out)["kept"] == 3


def test_without_reverse_migrate_new_sessions_are_removed(dbs, tmp_path):
    live = dbs[LIVE]
    live.set("session:old", new_session("u-1"))
    assert run_backup(tmp_path / "bk") == 0
    live.set("session:after", new_session("u-2"))

    assert run_rollback(tmp_path / "bk", "--yes") == 0

    assert not live.exists("session:after")


def test_reverse_migrate_into_the_old_services_db(dbs, tmp_path, capsys):
    """Migration db 11 -> db 10; backup of db 10; rollback sends the new sessions to db 11."""
    old, live = dbs[OLD_DB], dbs[LIVE]
    raws = _seed_old(old)
    assert migrate_redis.main(["--source", redis_url(OLD_DB), "--target", redis_url(LIVE), "--quiet",
                               "--report", str(tmp_path / "report.jsonl")]) == 0
    assert run_backup(tmp_path / "bk") == 0
    backup_ms = manifest(tmp_path / "bk")["backup_ms"]
    migrated = redis_snapshot(live)
    _service_touch(live, "session:epoch", "human", _future_stamp(backup_ms))
    live.set("session:created-after", new_session("u-new", stamp=_future_stamp(backup_ms)), px=HOUR_MS)
    old.hset("not:a:session", "x", "1")
    capsys.readouterr()

    rc = run_rollback(tmp_path / "bk", "--yes", "--reverse-migrate", "--reverse-target", redis_url(OLD_DB))

    assert rc == 0, capsys.readouterr()
    # The restored db is as it was at the backup.
    assert redis_snapshot(live) == migrated
    # The old services' db: the two live conversations in the old format, the others untouched.
    assert json.loads(old.get("session:epoch")) == {
        **OLD_RECORDS["session:epoch"], "agent": "human", "updatedAt": str(backup_ms + 60_000)}
    assert json.loads(old.get("session:created-after"))["userId"] == "u-new"
    for key in ("session:canonical", "session:sparse", "session:no-times", "session:only-updated"):
        assert old.get(key) == raws[key], key
    assert old.hgetall("not:a:session") == {b"x": b"1"}


def test_record_that_cannot_go_back_is_reported_and_left_alone(dbs, tmp_path, capsys):
    live = dbs[LIVE]
    live.set("session:other", "before")
    assert run_backup(tmp_path / "bk") == 0
    live.set("session:other", "after")
    record = json.loads(new_session("u", "ai", _future_stamp(manifest(tmp_path / "bk")["backup_ms"])))
    bad = json.dumps({**record, "state": "weird"}).encode()
    live.set("session:bad", bad)
    capsys.readouterr()

    assert run_rollback(tmp_path / "bk", "--yes", "--reverse-migrate") == 1

    assert live.get("session:bad") == bad  # never dropped silently
    assert live.get("session:other") == b"before"  # the rest of the rollback still happened
    captured = capsys.readouterr()
    assert "session:bad" in captured.out + captured.err
    assert "result: FAILED" in captured.out


def test_rollback_usage_errors(tmp_path, capsys):
    assert rollback.main(["--from", str(tmp_path), "--reverse-target", redis_url(LIVE)]) == 2
    assert rollback.main(["--from", str(tmp_path), "--reverse-migrate", "--skip-redis"]) == 2
    assert rollback.main(["--from", str(tmp_path), "--redis-url", "http://x"]) == 2
    assert rollback.main(["--from", str(tmp_path / "none"), "--skip-redis", "--skip-database"]) == 1


# --------------------------------------------------------------------------- DUMP decoding


@pytest.mark.parametrize(
    "value",
    [b"", b"a", b"12345", b"-1", b"-32769", b"2147483648", b"9223372036854775807", b"0123",
     b"x" * 100, "你好".encode() * 30, bytes(range(256)) * 4, b"ab" * 5000, b"1" * 21],
)
def test_string_dump_payloads_decode(dbs, value):
    dbs[SCRATCH].set("k", value)
    assert fmt.decode_string_dump(dbs[SCRATCH].dump("k")) == value


def test_non_string_dump_payloads_are_not_strings(dbs):
    dbs[SCRATCH].hset("h", "a", "b")
    assert fmt.decode_string_dump(dbs[SCRATCH].dump("h")) is None
    assert fmt.decode_string_dump(b"\x00\xc3garbage") is None


def test_count_dump_rows_ignores_parentheses_in_strings(tmp_path):
    text = (
        "CREATE TABLE `a` (\n"
        "CREATE TABLE `empty` (\n"
        "INSERT INTO `a` VALUES (1,'x),(y'),(2,'it\\'s (a) \\\\'),(3,NULL);\n"
        "INSERT INTO `a` VALUES (4,0x28);\n"
    )
    path = tmp_path / "dump.sql"
    path.write_text(text)
    assert fmt.count_dump_rows(path) == {"a": 4, "empty": 0}


def test_sql_values_round_trip():
    import datetime as dt
    import decimal

    values = [None, 1, -2**70, 1.5, "t", b"\x00\xff", decimal.Decimal("1.10"),
              dt.datetime(2024, 1, 2, 3, 4, 5, 6), dt.date(2024, 1, 2), dt.timedelta(hours=-1, microseconds=3)]
    encoded = json.loads(fmt.dumps([fmt.encode_sql_value(v) for v in values]))
    assert [fmt.decode_sql_value(v) for v in encoded] == values


def test_entry_encoding_keeps_binary_keys():
    key = b"session:\xff\x00"
    line = fmt.encode_entry(key, b"\x00\x01a" + b"\x00" * 10, 5, 99)
    assert fmt.decode_entry(json.loads(line), "x") == (key, b"\x00\x01a" + b"\x00" * 10, 99)
    assert base64.b64decode(json.loads(line)["key_b64"]) == key


def test_count_dump_rows_reads_one_row_per_line_too(tmp_path):
    text = (
        "CREATE TABLE `m` (\n"
        "INSERT INTO `m` VALUES\n"
        "(1,'a (b)\\'; c'),\n"
        "(2,'tab\there;'),\n"
        "(3,NULL);\n"
        "-- a comment (with parentheses)\n"
        "INSERT INTO `m` (`id`, `c`) VALUES (4,'x');\n"
    )
    path = tmp_path / "dump.sql"
    path.write_text(text)
    assert fmt.count_dump_rows(path) == {"m": 4}


def test_both_run_as_scripts_from_the_repo_root(dbs, tmp_path):
    dbs[LIVE].set("session:script", "x", px=HOUR_MS)
    common = ["--redis-url", redis_url(LIVE), "--skip-database"]

    def script(name: str, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, f"scripts/{name}", *args, *common],
            cwd=REPO, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=60,
        )

    done = script("backup.py", "--out", str(tmp_path / "bk"))
    assert done.returncode == 0, done.stderr
    assert "result: OK" in done.stdout
    dbs[LIVE].set("session:later", "y")
    asked = script("rollback.py", "--from", str(tmp_path / "bk"))
    assert asked.returncode == 2 and "--yes" in asked.stderr
    assert dbs[LIVE].exists("session:later")
    done = script("rollback.py", "--from", str(tmp_path / "bk"), "--yes")
    assert done.returncode == 0, done.stderr
    assert not dbs[LIVE].exists("session:later")
    assert dbs[LIVE].get("session:script") == b"x"


def test_missing_table_is_refused_before_anything_changes(dbs, mysql_url, tmp_path, capsys):
    bk = _backed_up(dbs, mysql_url, tmp_path)
    conn = _mysql(mysql_url)
    with conn.cursor() as cur:
        cur.execute("DROP TABLE conversation_events")
    conn.close()
    keys = redis_snapshot(dbs[LIVE])

    assert run_rollback(bk, "--yes", database_url=mysql_url) == 1

    assert redis_snapshot(dbs[LIVE]) == keys
    assert "table conversation_events: missing (run `chat-api db upgrade` first)" in capsys.readouterr().err


def test_failed_insert_rolls_the_whole_database_back(dbs, mysql_url, tmp_path, capsys):
    seed_sql(mysql_url)
    assert run_backup(tmp_path / "bk", "--no-mysqldump", database_url=mysql_url) == 0
    bk = tmp_path / "bk"
    users = bk / "database/users.jsonl"
    users.write_text(users.read_text() * 2)  # every user twice: a duplicate primary key
    data = manifest(bk)
    data["database"]["tables"]["users"]["rows"] *= 2
    data["counts"]["rows"]["users"] *= 2
    (bk / "manifest.json").write_text(json.dumps(data))
    rehash(bk)
    change_sql(mysql_url, data["backup_ms"])
    rows = sql_snapshot(mysql_url)

    assert run_rollback(bk, "--yes", "--skip-redis", database_url=mysql_url) == 1

    assert sql_snapshot(mysql_url) == rows  # the deletes were rolled back with the failed insert
    out = capsys.readouterr().out
    assert "rolled back: nothing changed" in out and "result: FAILED" in out
