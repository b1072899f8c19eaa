"""The rollback never loses what was written after the backup (issue 12.8, PROTOCOL 8): it saves
those rows to a file in the backup folder before restoring, and --restore-saved brings them back.
Real Redis (dbs 10-13) and MariaDB."""

from __future__ import annotations

import json
import re
import stat
from pathlib import Path

from chat.cutover.rollback import main as rollback_main
from tests.cutover.backups import manifest, mysql_connection, run_backup, run_rollback, seed_sql


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
                "INSERT INTO conversation_events VALUES ('e-new', 'conv-1', 2, 'close', 'human', 'closed', 'agent', "
                "'agent-1', NULL, NULL, NULL, %s)",
                (since_ms + 3,),
            )
            cur.execute(
                "UPDATE conversations SET state = 'closed', version = 2, updated_ms = %s WHERE id = 'conv-1'",
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


def test_rows_written_after_the_backup_are_saved_then_brought_back(dbs, mysql_url, tmp_path, capsys):
    seed_sql(mysql_url)
    bk = tmp_path / "bk"
    assert run_backup(bk, "--no-mysqldump", database_url=mysql_url) == 0
    write_after_backup(mysql_url, manifest(bk)["backup_ms"])
    capsys.readouterr()

    assert run_rollback(bk, "--yes", database_url=mysql_url) == 0

    out = capsys.readouterr().out
    found = re.search(
        r"saved since the backup: (\d+) conversations, (\d+) messages, (\d+) conversation_events -> (\S+)", out
    )
    assert found, out
    printed = {"conversations": int(found[1]), "messages": int(found[2]), "conversation_events": int(found[3])}
    assert printed == {"conversations": 2, "messages": 1, "conversation_events": 1}
    saved = Path(found[4])
    assert saved.parent == bk and stat.S_IMODE(saved.stat().st_mode) == 0o600
    lines = [json.loads(line) for line in saved.read_text().splitlines()]
    assert lines[0]["type"] == "saved" and lines[0]["counts"] == printed
    in_file = {table: sum(1 for line in lines[1:] if line["table"] == table) for table in printed}
    assert in_file == printed
    assert {line["row"]["id"] for line in lines[1:]} == {"conv-new", "conv-1", "m-new", "e-new"}
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
    assert rows(mysql_url, "SELECT state, version FROM conversations WHERE id = 'conv-1'") == [("closed", 2)]
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

    assert rollback_main(["--restore-saved", str(saved), "--database-url", mysql_url]) == 1
    captured = capsys.readouterr()
    assert "m-new" in captured.err and "seq 1" in captured.err and "result: FAILED" in captured.out
    assert rows(mysql_url, "SELECT id FROM messages WHERE conversation_id = 'conv-new'") == [("m-old",)]
    assert rows(mysql_url, "SELECT state FROM conversations WHERE id = 'conv-1'") != [("closed",)]  # all or nothing
