"""The rollback never loses what was written after the backup (issue 12.8, PROTOCOL 8): it saves
those rows to a file in the backup folder before restoring, and --restore-saved brings them back.
Real Redis (dbs 10-13) and MariaDB."""

from __future__ import annotations

import json
import re
import sqlite3
import stat
from pathlib import Path

import pytest

from chat.cutover.backup import main as backup_main
from chat.cutover.rollback import main as rollback_main
from chat.store.log_stats import Replayed, replay
from chat.store.models import EVENT_COLUMNS, event_from_row
from tests.cutover.backups import manifest, mysql_connection, run_backup, run_rollback, seed_sql
from tests.cutover.test_cutover_review import sqlite_schema


def write_after_backup(url: str, since_ms: int) -> None:
    """What the new service writes after the backup: a new conversation with a message and an
    event, and a change to an old conversation."""
    conn = mysql_connection(url)
    try:
        with conn.cursor() as cur:
            cur.execute(
                "INSERT INTO conversations VALUES "
                "('conv-new', 'cust-2', 'ai', 'ai', NULL, NULL, 0, 1, NULL, NULL, %s, %s)",
                (since_ms + 1, since_ms + 1),
            )
            cur.execute(
                "INSERT INTO messages VALUES ('m-new', 'conv-new', 1, 'customer', 'cust-2', 'where is my order?', 0, "
                "'c-9', %s)",
                (since_ms + 2,),
            )
            cur.execute(
                "INSERT INTO conversation_events VALUES ('e-new', 'conv-1', 4, 'close', 'human', 'closed', 'agent', "
                "'agent-1', NULL, NULL, NULL, %s)",
                (since_ms + 3,),
            )
            cur.execute(
                "UPDATE conversations SET state = 'closed', version = 4, updated_ms = %s WHERE id = 'conv-1'",
                (since_ms + 3,),
            )
        conn.commit()
    finally:
        conn.close()


def rows(url: str, sql: str) -> list[tuple]:
    conn = mysql_connection(url)
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
            return list(cur.fetchall())
    finally:
        conn.close()


def rolled_back(mysql_url: str, tmp_path, capsys, write) -> tuple[Path, str]:
    """Seed, back up, `write(url, backup_ms)` after the backup, roll back: the backup folder and what it printed."""
    seed_sql(mysql_url)
    bk = tmp_path / "bk"
    assert run_backup(bk, "--no-mysqldump", database_url=mysql_url) == 0
    write(mysql_url, manifest(bk)["backup_ms"])
    capsys.readouterr()
    assert run_rollback(bk, "--yes", database_url=mysql_url) == 0
    return bk, capsys.readouterr().out


def test_rows_written_after_the_backup_are_saved_then_brought_back(dbs, mysql_url, tmp_path, capsys):
    bk, out = rolled_back(mysql_url, tmp_path, capsys, write_after_backup)
    # conv-1's label comes with it (its conversation is saved): conversation_labels has no time column
    found = re.search(r"saved since the backup: 2 conversations, 1 conversation_labels, 1 messages, "
                      r"1 conversation_events -> (\S+)", out)
    assert found, out
    printed = {"conversations": 2, "conversation_labels": 1, "messages": 1, "conversation_events": 1}
    saved = Path(found[1])
    assert saved.parent == bk and stat.S_IMODE(saved.stat().st_mode) == 0o600
    lines = [json.loads(line) for line in saved.read_text().splitlines()]
    assert lines[0]["type"] == "saved" and {t: n for t, n in lines[0]["counts"].items() if n} == printed
    in_file = {table: sum(1 for line in lines[1:] if line["table"] == table) for table in printed}
    assert in_file == printed
    assert {line["row"].get("id") for line in lines[1:]} == {"conv-new", "conv-1", "m-new", "e-new", None}
    assert re.search(r"saved messages +1 ", out)
    # The database is the backup's again ...
    assert rows(mysql_url, "SELECT id FROM messages WHERE id = 'm-new'") == []
    assert rows(mysql_url, "SELECT state FROM conversations WHERE id = 'conv-1'") != [("closed",)]

    # ... and the saved rows come back on request.
    argv = ["--restore-saved", str(saved), "--database-url", mysql_url]
    assert rollback_main(argv) == 0
    out = capsys.readouterr().out
    assert re.search(r"conversations +2  written", out) and re.search(r"messages +1  written", out)
    assert rows(mysql_url, "SELECT content FROM messages WHERE id = 'm-new'") == [("where is my order?",)]
    assert rows(mysql_url, "SELECT state, version FROM conversations WHERE id = 'conv-1'") == [("closed", 4)]
    assert rows(mysql_url, "SELECT trigger_name FROM conversation_events WHERE id = 'e-new'") == [("close",)]

    # A second time adds nothing.
    assert rollback_main(argv) == 0
    assert re.search(r"messages +0  written \(1 already there", capsys.readouterr().out)


def test_restore_saved_needs_a_database(tmp_path, capsys):
    assert rollback_main(["--restore-saved", str(tmp_path / "x.jsonl"), "--skip-database"]) == 2
    assert rollback_main([]) == 2


def test_a_saved_message_whose_seq_another_holds_now_stops_the_restore_and_writes_nothing(dbs, mysql_url,
                                                                                            tmp_path, capsys):
    """After the rollback the old system went on with the conversation, and a later import gave its
    message the saved message's seq: the restore must not drop the saved one quietly."""
    seed_sql(mysql_url)
    bk = tmp_path / "bk"
    assert run_backup(bk, "--no-mysqldump", database_url=mysql_url) == 0
    since = manifest(bk)["backup_ms"]
    write_after_backup(mysql_url, since)
    assert run_rollback(bk, "--yes", database_url=mysql_url) == 0
    saved = Path(re.search(r"-> (\S+saved-since-backup\S+)", capsys.readouterr().out)[1])
    conn = mysql_connection(mysql_url)
    try:
        with conn.cursor() as cur:
            cur.execute("INSERT INTO conversations VALUES "
                        "('conv-new', 'cust-2', 'ai', 'ai', NULL, NULL, 0, 1, NULL, NULL, %s, %s)", (since, since))
            cur.execute("INSERT INTO messages VALUES ('m-old', 'conv-new', 1, 'customer', 'cust-2', "
                        "'written by the old system', 0, NULL, %s)", (since + 10,))
        conn.commit()
    finally:
        conn.close()

    for dry_run in (["--dry-run"], []):  # a dry run meets the clash a run would meet
        assert rollback_main(["--restore-saved", str(saved), "--database-url", mysql_url, *dry_run]) == 1
        captured = capsys.readouterr()
        assert "m-new" in captured.err and "seq 1" in captured.err and "result: FAILED" in captured.out
        assert rows(mysql_url, "SELECT id FROM messages WHERE conversation_id = 'conv-new'") == [("m-old",)]
    assert rows(mysql_url, "SELECT state FROM conversations WHERE id = 'conv-1'") != [("closed",)]  # all or nothing


def write_elsewhere_after_backup(url: str, since_ms: int) -> None:
    """Rows of the other tables written after the backup: a rating, a new agent and a new password,
    a contact, a label, a canned response, a webhook, and a label put on an old conversation."""
    later = since_ms + 5
    conn = mysql_connection(url)
    try:
        with conn.cursor() as cur:
            cur.execute("INSERT INTO csat_responses VALUES ('csat-1', 'conv-1', 3, 'cust-1', 'agent-1', NULL, 5, "
                        "'great', %s, %s)", (later, later))
            cur.execute("INSERT INTO users VALUES ('agent-2', 'agent', 'Bo', 1, 2, %s, %s, '$argon2id$new', NULL)",
                        (later, later))
            cur.execute("UPDATE users SET password_hash = '$argon2id$changed', updated_ms = %s "
                        "WHERE id = 'agent-1'", (later,))
            cur.execute("INSERT INTO customer_contacts VALUES ('cc-2', 'cust-1', 'Ed', NULL, '555', NULL, %s)",
                        (later,))
            cur.execute("INSERT INTO labels VALUES ('label-2', 'refund', NULL, NULL, %s)", (later,))
            cur.execute("INSERT INTO canned_responses VALUES ('cr-1', 'hi', 'Hello!', %s, %s)", (later, later))
            cur.execute("INSERT INTO webhooks VALUES ('wh-1', 'https://example.com/h', 'message', 's3cret', %s)",
                        (later,))
            cur.execute("INSERT INTO conversation_labels VALUES ('conv-2', 'label-2')")
            cur.execute("UPDATE conversations SET updated_ms = %s WHERE id = 'conv-2'", (later,))  # as labels.py does
        conn.commit()
    finally:
        conn.close()


def test_every_table_written_after_the_backup_is_saved_and_brought_back(dbs, mysql_url, tmp_path, capsys):
    """The plan says what is saved, table by table, and the file holds exactly that (issue 12.8 review)."""
    bk, out = rolled_back(mysql_url, tmp_path, capsys, write_elsewhere_after_backup)
    expected = {"users": 2, "customer_contacts": 1, "labels": 1, "conversations": 1, "conversation_labels": 1,
                "csat_responses": 1, "canned_responses": 1, "webhooks": 1}
    for table, count in expected.items():
        assert re.search(rf"table {table} +\d+ now, {count} to save first \(", out), (table, out)
    saved = Path(re.search(r"-> (\S+saved-since-backup\S+)", out)[1])
    lines = [json.loads(line) for line in saved.read_text().splitlines()]
    assert {t: n for t, n in lines[0]["counts"].items() if n} == expected
    assert rows(mysql_url, "SELECT COUNT(*) FROM csat_responses") == [(0,)]
    assert rows(mysql_url, "SELECT password_hash FROM users WHERE id = 'agent-1'") != [("$argon2id$changed",)]

    assert rollback_main(["--restore-saved", str(saved), "--database-url", mysql_url]) == 0
    assert rows(mysql_url, "SELECT score, comment FROM csat_responses") == [(5, "great")]
    assert rows(mysql_url, "SELECT id, password_hash FROM users WHERE id LIKE 'agent-%' ORDER BY id") == [
        ("agent-1", "$argon2id$changed"), ("agent-2", "$argon2id$new")]
    assert rows(mysql_url, "SELECT name FROM customer_contacts WHERE id = 'cc-2'") == [("Ed",)]
    assert rows(mysql_url, "SELECT content FROM canned_responses") == [("Hello!",)]
    assert rows(mysql_url, "SELECT secret FROM webhooks") == [("s3cret",)]
    assert rows(mysql_url, "SELECT conversation_id, label_id FROM conversation_labels ORDER BY 1") == [
        ("conv-1", "label-1"), ("conv-2", "label-2")]


def saved_then_changed(mysql_url: str, tmp_path, capsys, sql: list[tuple[str, tuple]]) -> Path:
    """Seed, back up, write after the backup, roll back; then run ``sql`` (what happens in the database
    between the rollback and --restore-saved): the saved file."""
    bk, out = rolled_back(mysql_url, tmp_path, capsys, write_after_backup)
    saved = Path(re.search(r"-> (\S+saved-since-backup\S+)", out)[1])
    conn = mysql_connection(mysql_url)
    try:
        with conn.cursor() as cur:
            for statement, args in sql:
                cur.execute(statement, args)
        conn.commit()
    finally:
        conn.close()
    return saved


def test_a_kept_newer_conversation_is_raised_to_the_seq_of_the_saved_messages_put_into_it(dbs, mysql_url,
                                                                                          tmp_path, capsys):
    """Finding 1: a later import or adopt made conv-new again, newer and with last_seq 0: it is kept, the
    saved message goes into it and its last_seq follows, so the next message gets seq 2, not a duplicate 1."""
    later = 4_000_000_000_000
    saved = saved_then_changed(mysql_url, tmp_path, capsys, [(
        "INSERT INTO conversations VALUES ('conv-new', 'cust-2', 'human', 'human', NULL, NULL, 0, 0, NULL, NULL, "
        "%s, %s)", (later, later))])

    # a dry run counts what the run then does, and writes nothing
    assert rollback_main(["--restore-saved", str(saved), "--database-url", mysql_url, "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"conversations +1  written \(1 already there", out) and "nothing written" in out, out
    assert rows(mysql_url, "SELECT last_seq FROM conversations WHERE id = 'conv-new'") == [(0,)]
    assert rows(mysql_url, "SELECT COUNT(*) FROM messages WHERE conversation_id = 'conv-new'") == [(0,)]

    assert rollback_main(["--restore-saved", str(saved), "--database-url", mysql_url]) == 0
    out = capsys.readouterr().out
    assert re.search(r"conversations +1  written \(1 already there", out), out
    assert rows(mysql_url, "SELECT state, last_seq, updated_ms FROM conversations WHERE id = 'conv-new'") == [
        ("human", 1, later)]
    assert rows(mysql_url, "SELECT id, seq FROM messages WHERE conversation_id = 'conv-new'") == [("m-new", 1)]
    # a conversation already past the saved seqs keeps its own last_seq (GREATEST, never lowered)
    conn = mysql_connection(mysql_url)
    try:
        with conn.cursor() as cur:
            cur.execute("UPDATE conversations SET last_seq = 7 WHERE id = 'conv-new'")
        conn.commit()
    finally:
        conn.close()
    assert rollback_main(["--restore-saved", str(saved), "--database-url", mysql_url]) == 0
    assert rows(mysql_url, "SELECT last_seq FROM conversations WHERE id = 'conv-new'") == [(7,)]


def test_running_the_restore_again_repairs_a_conversation_an_earlier_restore_left_below_its_messages(
        dbs, mysql_url, tmp_path, capsys):
    """What the restore did before finding 1 was fixed: conv-new kept at last_seq 0 with m-new (seq 1) in it.
    Running it again finds m-new already there and still raises last_seq to it."""
    later = 4_000_000_000_000
    saved = saved_then_changed(mysql_url, tmp_path, capsys, [
        ("INSERT INTO conversations VALUES ('conv-new', 'cust-2', 'human', 'human', NULL, NULL, 0, 0, NULL, NULL, "
         "%s, %s)", (later, later)),
        ("INSERT INTO messages VALUES ('m-new', 'conv-new', 1, 'customer', 'cust-2', 'where is my order?', 0, "
         "'c-9', %s)", (later,))])

    assert rollback_main(["--restore-saved", str(saved), "--database-url", mysql_url]) == 0
    assert re.search(r"messages +0  written \(1 already there", capsys.readouterr().out)
    assert rows(mysql_url, "SELECT last_seq FROM conversations WHERE id = 'conv-new'") == [(1,)]


def test_a_saved_event_above_the_version_of_its_kept_conversation_raises_its_version(dbs, mysql_url, tmp_path,
                                                                                     capsys):
    """conv-1 changed in the database after the rollback (kept: newer) and is at version 3; the saved close
    event is version 4: it is put back, then a `restore` entry (version 5) leads from where it ends to the
    state conv-1 is kept in, and conv-1 is at version 5: its log replays to its row, its next transition
    takes 6."""
    saved = saved_then_changed(mysql_url, tmp_path, capsys, [
        ("UPDATE conversations SET updated_ms = %s WHERE id = 'conv-1'", (4_000_000_000_000,))])
    (state_before, agent_before), = rows(mysql_url, "SELECT state, agent_id FROM conversations WHERE id = 'conv-1'")

    assert rollback_main(["--restore-saved", str(saved), "--database-url", mysql_url]) == 0, capsys.readouterr()
    assert rows(mysql_url, "SELECT version FROM conversation_events WHERE id = 'e-new'") == [(4,)]
    assert rows(mysql_url, "SELECT version, state FROM conversations WHERE id = 'conv-1'") == [(5, state_before)]
    assert rows(mysql_url, "SELECT trigger_name, actor_type, to_state, agent_id FROM conversation_events "
                           "WHERE conversation_id = 'conv-1' AND version = 5") == [
        ("restore", "system", state_before, agent_before)]
    log = [event_from_row(r) for r in rows(mysql_url, f"SELECT {EVENT_COLUMNS} FROM conversation_events "
                                                      "WHERE conversation_id = 'conv-1' ORDER BY version")]
    # the restore entry follows the saved one (the seed's own log has gaps before it) and ends at the row
    assert replay(log[-2:]) == Replayed(state_before, 5, agent_before, log[-1].team_id)
    assert rows(mysql_url, "SELECT COUNT(*) FROM messages WHERE id = 'm-new'") == [(1,)]


def count_columns(lines: list[str]) -> set[int]:
    """Where the count of each line ends (its first number after the label)."""
    return {found.end() for line in lines if (found := re.match(r"\s+\S+(?: \S+)*? +[\d,]+(?= |$)", line))}


def test_the_plan_and_the_summaries_keep_their_columns_and_name_the_command_to_run(tmp_path, capsys,
                                                                                    monkeypatch):
    """Findings 12 and 15: long table names (chat_conversation_labels) do not push the counts out of
    their column, and the summary names the command the operator has (chat-api rollback), with the file."""
    for name in ("REDIS_URL", "DATABASE_URL", "DB_TABLE_PREFIX"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DB_TABLE_PREFIX", "chat_")
    monkeypatch.chdir(tmp_path)
    db = tmp_path / "chat.db"
    sqlite_schema(db, "chat_")
    url = f"sqlite:///{db}"
    bk = tmp_path / "bk"
    assert backup_main(["--out", str(bk), "--skip-redis", "--skip-config", "--database-url", url]) == 0
    summary = capsys.readouterr().out.split("summary:\n")[1].splitlines()
    counted = [line for line in summary if re.match(r"  (table|config|files) ", line)]  # the backup's too
    assert any("table chat_conversation_labels " in line for line in counted) and len(count_columns(counted)) == 1
    later = manifest(bk)["backup_ms"] + 1
    conn = sqlite3.connect(db)
    conn.execute("INSERT INTO chat_conversations (id, user_id, state, agent_type, created_ms, updated_ms) "
                 "VALUES ('c-1', 'u-1', 'ai', 'ai', ?, ?)", (later, later))
    conn.execute("INSERT INTO chat_labels (id, title, created_ms) VALUES ('l-1', 'vip', ?)", (later,))
    conn.execute("INSERT INTO chat_conversation_labels VALUES ('c-1', 'l-1')")
    conn.commit()
    conn.close()
    capsys.readouterr()

    assert rollback_main(["--from", str(bk), "--skip-redis", "--database-url", url, "--yes", "--quiet"]) == 0
    out = capsys.readouterr().out
    plan = [line for line in out.splitlines() if line.startswith("    table ")]
    assert len(plan) > 10 and any("chat_conversation_labels" in line for line in plan), out
    assert len(count_columns(plan)) == 1, plan
    summary = out.split("summary:\n")[1].splitlines()
    counted = [line for line in summary if re.match(r"  (saved|table|config) ", line)]
    assert any(line.startswith("  saved chat_conversation_labels ") for line in counted), out
    assert len(count_columns(counted)) == 1, counted
    saved = re.search(r"-> (\S+saved-since-backup\S+)", out)[1]
    assert f"\n  bring them back later with: chat-api rollback --restore-saved {saved}\n" in out
    assert "rollback.py" not in out

    assert rollback_main(["--restore-saved", saved, "--database-url", url]) == 0
    lines = capsys.readouterr().out.split("summary:\n")[1].splitlines()[:-1]
    assert any("chat_conversation_labels" in line for line in lines) and len(count_columns(lines)) == 1, lines


@pytest.mark.parametrize("method", ["logical", "mysqldump"])
def test_rows_restore_saved_wrote_after_a_later_backup_are_saved_by_the_next_rollback(dbs, mysql_url, tmp_path,
                                                                                      capsys, method):
    """Finding 4: --restore-saved puts rows back with their own (older) times after a second backup; a
    rollback to that backup must save them (not in it as they are) rather than empty them away."""
    _bk, out = rolled_back(mysql_url, tmp_path, capsys, write_after_backup)
    first = Path(re.search(r"-> (\S+saved-since-backup\S+)", out)[1])
    bk2 = tmp_path / "bk2"
    assert run_backup(bk2, *(["--no-mysqldump"] if method == "logical" else []), database_url=mysql_url) == 0
    assert manifest(bk2)["database"]["method"] == method
    assert rollback_main(["--restore-saved", str(first), "--database-url", mysql_url]) == 0
    capsys.readouterr()

    assert run_rollback(bk2, "--yes", database_url=mysql_url) == 0
    out = capsys.readouterr().out
    assert re.search(r"table messages +4 now, 1 to save first \(", out), out
    assert re.search(r"table conversations +3 now, 2 to save first \(", out), out
    found = re.search(r"saved since the backup: 2 conversations, 1 conversation_labels, 1 messages, "
                      r"1 conversation_events -> (\S+)", out)
    assert found, out
    lines = [json.loads(line) for line in Path(found[1]).read_text().splitlines()[1:]]
    assert {line["row"].get("id") for line in lines} == {"conv-new", "conv-1", "m-new", "e-new", None}
    assert rows(mysql_url, "SELECT COUNT(*) FROM messages WHERE id = 'm-new'") == [(0,)]

    assert rollback_main(["--restore-saved", found[1], "--database-url", mysql_url]) == 0
    assert rows(mysql_url, "SELECT content FROM messages WHERE id = 'm-new'") == [("where is my order?",)]
    assert rows(mysql_url, "SELECT state, version FROM conversations WHERE id = 'conv-1'") == [("closed", 4)]


def test_an_sqlite_rollback_saves_rows_written_since_with_older_times(tmp_path, capsys, monkeypatch):
    """Finding 4 with an SQLite backup: a row added after it (an import: an old created_ms) is saved."""
    for name in ("REDIS_URL", "DATABASE_URL", "DB_TABLE_PREFIX"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    db = tmp_path / "chat.db"
    sqlite_schema(db, "")
    url = f"sqlite:///{db}"
    conn = sqlite3.connect(db)
    conn.execute("INSERT INTO labels (id, title, created_ms) VALUES ('l-1', 'vip', 5)")
    conn.commit()
    assert backup_main(["--out", str(tmp_path / "bk"), "--skip-redis", "--skip-config", "--database-url", url,
                        "--quiet"]) == 0
    conn.execute("INSERT INTO labels (id, title, created_ms) VALUES ('l-2', 'refund', 7)")
    conn.execute("UPDATE labels SET description = 'changed' WHERE id = 'l-1'")
    conn.commit()
    conn.close()
    capsys.readouterr()

    assert rollback_main(["--from", str(tmp_path / "bk"), "--skip-redis", "--database-url", url, "--yes",
                          "--quiet"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"table labels +2 now, 2 to save first", out), out
    saved = Path(re.search(r"-> (\S+saved-since-backup\S+)", out)[1])
    assert {json.loads(line)["row"]["id"] for line in saved.read_text().splitlines()[1:]} == {"l-1", "l-2"}
