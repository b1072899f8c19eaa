"""chat.cutover.rollback (scripts/rollback.py) against the real Redis (dbs 10-13) and MariaDB."""

from __future__ import annotations

import asyncio
import io
import json
import re
import sqlite3
import subprocess
import sys
import time

import pytest

from chat.cutover.backup_format import REDIS_FILE
from chat.cutover.migrate_redis import main as migrate_redis_main
from chat.cutover.rollback import main as rollback_main
from chat.store.schema import MIGRATIONS
from states.clock import iso_from_ms, ms_from_iso
from tests.cutover.backups import (
    HOUR_MS,
    LIVE,
    OLD_DB,
    backed_up,
    change_sql,
    flip_byte,
    manifest,
    mysql_connection,
    new_session,
    redis_snapshot,
    rehash,
    run_backup,
    run_rollback,
    seed_redis,
    seed_sql,
    sql_snapshot,
    summary,
    ttls,
    upgrade_schema,
)
from tests.cutover.support import REPO, redis_url

# --------------------------------------------------------------------------- round trip


@pytest.mark.parametrize(
    "method",
    [
        "logical",
        "mysqldump",
    ],
)
def test_rollback_gives_back_keys_ttls_rows_and_files(dbs, mysql_url, tmp_path, capsys, method):  # noqa: PLR0915
    live = dbs[LIVE]
    seed_redis(live)
    seed_sql(mysql_url)
    old_env = tmp_path / "old" / ".env"
    new_env = tmp_path / "new" / ".env"
    for path, text in ((old_env, "DB_PASSWORD=old-secret\n"), (new_env, "JWT_SECRET_KEY=new\n")):
        path.parent.mkdir()
        path.write_text(text)
    old_env.chmod(0o600)
    started = time.monotonic()  # before the TTLs are read: the elapsed time below bounds what they lost
    keys_before, ttls_before, rows_before = redis_snapshot(live), ttls(live), sql_snapshot(mysql_url)

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
    ttls_after = {key: live.pttl(key) for key in ttls_before}
    elapsed_ms = (time.monotonic() - started) * 1000  # measured after every TTL was read: an upper bound
    for key, before in ttls_before.items():
        after = ttls_after[key]
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
    # m-new, and m-1 edited without a new created_ms (finding 4: not in the backup as it was)
    rule = r"created_ms after the backup, or not in the backup as it was"
    assert re.search(rf"table messages +3 now, 2 to save first \({rule}\) -> 3", out)
    rule = r"created_ms or updated_ms after the backup, or not in the backup as it was"
    assert re.search(rf"table users +2 now, 1 to save first \({rule}\) -> 2", out)  # agent-1 renamed
    assert re.search(rf"table schema_version +0 now, not saved \(schema bookkeeping\) -> {len(MIGRATIONS)}", out)


def test_sqlite_database_round_trip(dbs, tmp_path, capsys):
    path = tmp_path / "chat.db"
    url = f"sqlite:///{path}"
    asyncio.run(upgrade_schema(url))
    with sqlite3.connect(path) as conn:
        conn.execute("INSERT INTO users VALUES ('u1', 'agent', 'A', 1, NULL, 1, 2, '$argon2id$x', 2)")
    assert run_backup(tmp_path / "bk", database_url=url) == 0
    assert manifest(tmp_path / "bk")["database"]["method"] == "sqlite"
    assert manifest(tmp_path / "bk")["database"]["url"] == url  # the path as given, all slashes
    with sqlite3.connect(path) as conn:
        conn.execute("DELETE FROM users")
        conn.execute("INSERT INTO teams VALUES ('t', 'T', NULL, 1, 1)")

    assert run_rollback(tmp_path / "bk", "--yes", database_url=url) == 0

    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT * FROM users").fetchall() == [("u1", "agent", "A", 1, None, 1, 2, "$argon2id$x", 2)]
        assert conn.execute("SELECT COUNT(*) FROM teams").fetchone() == (0,)


# --------------------------------------------------------------------------- refusing

TAMPERINGS = {
    "redis file": lambda bk: flip_byte(bk / REDIS_FILE),
    "table file": lambda bk: (bk / "database/messages.jsonl").write_text(
        "".join((bk / "database/messages.jsonl").read_text().splitlines(True)[:-1])
    ),
    "config file": lambda bk: flip_byte(next((bk / "config").iterdir())),
    "missing file": lambda bk: (bk / "database/users.jsonl").unlink(),
    "manifest count": lambda bk: (bk / "manifest.json").write_text(
        json.dumps({**manifest(bk), "counts": {**manifest(bk)["counts"], "redis_keys": 1}})
    ),
    "manifest gone": lambda bk: (bk / "manifest.json").unlink(),
    "manifest not json": lambda bk: (bk / "manifest.json").write_text("{"),
}


@pytest.mark.parametrize("how", list(TAMPERINGS))
def test_tampered_backup_is_refused_and_nothing_changes(dbs, mysql_url, tmp_path, capsys, how):
    bk = backed_up(dbs, mysql_url, tmp_path)
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
    bk = backed_up(dbs, mysql_url, tmp_path)
    lines = (bk / REDIS_FILE).read_text().splitlines(True)
    (bk / REDIS_FILE).write_text("".join(lines[1:]))
    rehash(bk)  # a consistent-looking manifest that still claims one key more

    assert run_rollback(bk, "--yes", database_url=mysql_url) == 1
    assert dbs[LIVE].get("session:new") == b"new"
    assert re.search(r"keys in redis/keys.jsonl, the manifest says", capsys.readouterr().err)


def test_dry_run_changes_nothing(dbs, mysql_url, tmp_path, capsys):
    bk = backed_up(dbs, mysql_url, tmp_path)
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
    bk = backed_up(dbs, mysql_url, tmp_path)
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
    path = tmp_path / "bk" / REDIS_FILE
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

# Old Node.js records in every shape the migration accepts.
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
    return iso_from_ms(backup_ms + plus_ms)


def test_reverse_migrate_in_place(dbs, tmp_path, capsys):
    live = dbs[LIVE]
    raws = _seed_old(live)
    # The backup before the in-place migration holds the old records.
    assert run_backup(tmp_path / "bk") == 0
    backup_ms = manifest(tmp_path / "bk")["backup_ms"]
    assert migrate_redis_main(["--source", redis_url(LIVE), "--target", redis_url(LIVE), "--quiet",
                               "--report", str(tmp_path / "report.jsonl")]) == 0
    migrated_at = json.loads(live.get("session:no-times"))["created_at"]
    # The new service: a conversation taken by an agent, a new one, presence.
    _service_touch(live, "session:epoch", "ai", _future_stamp(backup_ms))
    _service_touch(live, "session:canonical", "human", _future_stamp(backup_ms))
    live.set("session:created-after", new_session("u-new", "handoff", _future_stamp(backup_ms)), px=HOUR_MS)
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
    later = ms_from_iso(migrated_at) > backup_ms
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
    assert migrate_redis_main(["--source", redis_url(OLD_DB), "--target", redis_url(LIVE), "--quiet",
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


def _reverse_plan(out: str) -> dict[str, int]:
    """The counts of the plan's reverse-migration lines (chat/cutover/rollback/reverse_report.py)."""
    rows = re.findall(r"^    (delete \w+|not written back) +([\d,]+)  ", out, re.MULTILINE)
    return {label: int(count.replace(",", "")) for label, count in rows}


def _rebuilt(user_id: str, state: str, stamp_ms: int) -> bytes:
    """What the service writes when it rebuilds a live record from its SQL row on a read
    (states/repository.py): the row's times, an empty context."""
    stamp = iso_from_ms(stamp_ms)
    return json.dumps({"user_id": user_id, "agent_type": "human", "context": {}, "created_at": stamp,
                       "updated_at": stamp, "state": state, "version": 2, "agent_id": None, "team_id": None,
                       "metadata": {}, "handoff_at": None}).encode()


def test_records_rebuilt_on_a_read_and_closed_ones_are_not_written_back(dbs, tmp_path, capsys):
    """Finding 2: an admin's read of an imported conversation rebuilds its live record; it is not a
    session started or changed since, and a closed conversation is never a live old session."""
    old, live = dbs[OLD_DB], dbs[LIVE]
    raws = _seed_old(old)
    assert migrate_redis_main(["--source", redis_url(OLD_DB), "--target", redis_url(LIVE), "--quiet",
                               "--report", str(tmp_path / "report.jsonl")]) == 0
    assert run_backup(tmp_path / "bk") == 0
    backup_ms = manifest(tmp_path / "bk")["backup_ms"]
    # after the backup: two imported conversations read by an admin (rebuilt from SQL, with a TTL),
    # a migrated session closed on chat-api, and a new conversation closed already
    live.set("session:imported-101", _rebuilt("cust-101", "closed", 1_712_052_000_000), px=HOUR_MS)
    live.set("session:imported-102", _rebuilt("cust-102", "handoff", 1_712_052_000_000), px=HOUR_MS)
    _service_touch(live, "session:canonical", "closed", _future_stamp(backup_ms))
    live.set("session:new-closed", new_session("u-new", "closed", _future_stamp(backup_ms)), px=HOUR_MS)
    live.set("session:new-open", new_session("u-open", "ai", _future_stamp(backup_ms)), px=HOUR_MS)
    capsys.readouterr()

    rc = run_rollback(tmp_path / "bk", "--yes", "--reverse-migrate", "--reverse-target", redis_url(OLD_DB))

    out = capsys.readouterr().out
    assert rc == 0, out
    for key in ("session:imported-101", "session:imported-102", "session:new-closed", "session:canonical"):
        assert not old.exists(key), key  # the closed one's old live copy is gone: it ended
    assert json.loads(old.get("session:new-open"))["userId"] == "u-open"
    for key in ("session:epoch", "session:sparse", "session:no-times", "session:only-updated"):
        assert old.get(key) == raws[key], key
    plan = _reverse_plan(out)
    assert plan == {"delete closed": 1, "delete erased": 0, "delete purged": 0, "not written back": 3}
    assert "session:canonical" in out
    assert "1 old session cop(ies) deleted" in out


def test_sessions_erased_or_purged_since_the_backup_are_deleted_from_the_old_db(dbs, mysql_url, tmp_path, capsys):
    """Finding 3: a customer erased (or a conversation purged) on chat-api during the cut-over does
    not come back in the old services' database, nor in the restored one."""
    old, live = dbs[OLD_DB], dbs[LIVE]
    for key in ("session:conv-1", "session:conv-2", "session:kept"):
        old.set(key, json.dumps({"userId": "cust-1", "agent": "ai", "context": {"n": 7}}))
    assert migrate_redis_main(["--source", redis_url(OLD_DB), "--target", redis_url(LIVE), "--quiet",
                               "--report", str(tmp_path / "report.jsonl")]) == 0
    old.hset("session:conv-3", "userId", "cust-1")  # another type, only in the old db: erased all the same
    seed_sql(mysql_url)
    assert run_backup(tmp_path / "bk", "--no-mysqldump", database_url=mysql_url) == 0
    backup_ms = manifest(tmp_path / "bk")["backup_ms"]
    # chat-api erases cust-1's conv-1 (its live record deleted) and purges conv-2 (chat/erasure.py)
    live.delete("session:conv-1", "session:conv-2")
    conn = mysql_connection(mysql_url)
    with conn.cursor() as cur:
        cur.execute("INSERT INTO conversations VALUES ('conv-3', 'cust-1', 'ai', 'ai', NULL, NULL, 3, 0, NULL, NULL, "
                    "%s, %s)", (backup_ms + 500, backup_ms + 500))
        for event, conversation in (("e-erase", "conv-1"), ("e-erase-3", "conv-3")):
            cur.execute("INSERT INTO conversation_events (id, conversation_id, version, trigger_name, from_state, "
                        "to_state, actor_type, actor_id, reason, agent_id, team_id, created_ms) VALUES "
                        "(%s, %s, 4, 'erase', 'human', 'erased', 'admin', 'admin-1', 'customer erased', "
                        "NULL, NULL, %s)", (event, conversation, backup_ms + 1_000))
        cur.execute("INSERT INTO conversation_purges (conversation_id, purged_ms) VALUES ('conv-1', %s), "
                    "('conv-2', %s)", (backup_ms + 1_000, backup_ms + 2_000))
    conn.commit()
    conn.close()
    capsys.readouterr()

    rc = run_rollback(tmp_path / "bk", "--yes", "--reverse-migrate", "--reverse-target", redis_url(OLD_DB),
                      database_url=mysql_url)

    out = capsys.readouterr().out
    assert rc == 0, out
    assert not old.exists("session:conv-1") and not old.exists("session:conv-2") and not old.exists("session:conv-3")
    assert not live.exists("session:conv-1") and not live.exists("session:conv-2")  # not restored either
    assert json.loads(old.get("session:kept"))["context"] == {"n": 7}
    assert live.exists("session:kept")
    plan = _reverse_plan(out)
    assert plan["delete erased"] == 2 and plan["delete purged"] == 1
    redis_block = re.findall(r"^    (?:restore|expired|remove|reverse-migrate|delete \w+|not written back) +[\d,]+",
                             out, re.MULTILINE)
    assert len(redis_block) >= 7 and len({len(line) for line in redis_block}) == 1, redis_block  # one column
    assert "3 old session cop(ies) deleted" in out and "not overwritten" not in out


def test_naive_times_come_back_byte_for_byte_with_the_migrations_zone(dbs, tmp_path, capsys):
    """Finding 7: the rollback given the migration's --naive-tz writes an unchanged record with naive
    times back exactly as the old services wrote it."""
    old, live = dbs[OLD_DB], dbs[LIVE]
    raw = json.dumps({"userId": "cust-naive", "agent": "ai", "context": {"lang": "zh"},
                      "createdAt": "2025-04-30 18:00:00", "updatedAt": "2025-04-30 18:05:00"}).encode()
    old.set("session:s-naive", raw, px=HOUR_MS)
    assert run_backup(tmp_path / "bk") == 0  # the runbook's order: the backup, then the migration
    assert migrate_redis_main(["--source", redis_url(OLD_DB), "--target", redis_url(LIVE), "--quiet",
                               "--naive-tz", "Asia/Shanghai", "--report", str(tmp_path / "report.jsonl")]) == 0
    assert json.loads(live.get("session:s-naive"))["created_at"] == "2025-04-30T10:00:00.000Z"
    capsys.readouterr()

    rc = run_rollback(tmp_path / "bk", "--yes", "--reverse-migrate", "--reverse-target", redis_url(OLD_DB),
                      "--naive-tz", "Asia/Shanghai")

    out = capsys.readouterr().out
    assert rc == 0, out
    assert old.get("session:s-naive") == raw
    assert "(1 byte-identical to their original)" in out


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
    assert rollback_main(["--from", str(tmp_path), "--reverse-target", redis_url(LIVE)]) == 2
    assert rollback_main(["--from", str(tmp_path), "--reverse-migrate", "--skip-redis"]) == 2
    assert rollback_main(["--from", str(tmp_path), "--redis-url", "http://x"]) == 2
    assert rollback_main(["--from", str(tmp_path / "none"), "--skip-redis", "--skip-database"]) == 1


# --------------------------------------------------------------------------- DUMP decoding


def test_both_run_as_scripts_from_the_repo_root(dbs, tmp_path):
    dbs[LIVE].set("session:script", "x", px=HOUR_MS)
    common = ["--redis-url", redis_url(LIVE), "--skip-database"]

    def script(name: str, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, f"scripts/{name}", *args, *common],
            cwd=REPO, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=60, check=False,
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
    bk = backed_up(dbs, mysql_url, tmp_path)
    conn = mysql_connection(mysql_url)
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
