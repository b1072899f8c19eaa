"""Helpers of the backup and rollback tests: seeding, snapshots, running (fixtures: conftest.py)."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import warnings
from pathlib import Path

import pymysql

from chat.cutover.backup import main as backup_main
from chat.cutover.backup_format import sha256_file
from chat.cutover.backup_sql import mysql_connect
from chat.cutover.rollback import main as rollback_main
from chat.settings import parse_database_url
from chat.store import Store, connect
from chat.store.schema import table_names
from tests.cutover.support import redis_url

LIVE, OLD_DB, SCRATCH = 10, 11, 13
HOUR_MS = 3_600_000
# MariaDB's client (mariadb-client, pulled in by mariadb-server) is on every machine ./dev test
# prepares; both backup methods are tested, neither is skipped
HAS_MYSQLDUMP = shutil.which("mysqldump") is not None and shutil.which("mysql") is not None
TABLES = [*table_names(), "schema_version"]


# --------------------------------------------------------------------------- SQL fixtures


async def upgrade_schema(url: str) -> None:
    db = await connect(parse_database_url(url), pool_size=2)
    try:
        await Store(db).migrations.upgrade()
    finally:
        await db.close()


def mysql_connection(url: str) -> pymysql.connections.Connection:
    """A connection like the cut-over programs' own (chat.cutover.backup_sql.mysql_connect)."""
    return mysql_connect(parse_database_url(url))


def reset_schema(url: str) -> None:
    """The full schema with its version row, every table empty.

    The database is shared with the other suites for the whole run: tests here drop tables,
    empty schema_version and leave rows behind, and none of that may reach them.
    """
    conn = mysql_connection(url)
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
        asyncio.run(upgrade_schema(url))
    conn = mysql_connection(url)
    try:
        with conn.cursor() as cur:
            for table in reversed(table_names()):
                cur.execute(f"DELETE FROM `{table}`")
        conn.commit()
    finally:
        conn.close()


# Tricky content on purpose: the mysqldump row counter must not be fooled by quotes,
# backslashes or "),(" inside strings.
ROWS = {
    "users": [
        ("agent-1", "agent", "Ann", 1, 3, 1_700_000_000_000, 1_700_000_000_001,
         "$argon2id$v=19$m=65536,t=3,p=4$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo", 1_700_000_000_001),
        ("cust-1", "customer", None, 1, None, 1_700_000_000_000, 1_700_000_000_000, None, None),
    ],
    "refresh_tokens": [("ab" * 32, "family-1", "agent-1", 1_700_000_000_000, 1_700_086_400_000, None, None)],
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
    conn = mysql_connection(url)
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
    conn = mysql_connection(url)
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
    conn = mysql_connection(url)
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
    return backup_main(argv)


def run_rollback(source: Path, *args: str, db: int = LIVE, database_url: str | None = None) -> int:
    argv = ["--from", str(source), "--redis-url", redis_url(db), "--quiet", *args]
    argv += ["--database-url", database_url] if database_url else ["--skip-database"]
    return rollback_main(argv)


def manifest(path: Path) -> dict:
    return json.loads((path / "manifest.json").read_text())


def rehash(path: Path) -> None:
    """Recompute the manifest's checksums after a test edits a file on purpose."""
    data = manifest(path)
    for rel in data["files"]:
        data["files"][rel] = {"sha256": sha256_file(path / rel), "bytes": (path / rel).stat().st_size}
    (path / "manifest.json").write_text(json.dumps(data))


def backed_up(dbs, mysql_url, tmp_path) -> Path:
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


def flip_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


