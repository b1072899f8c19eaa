"""`chat-api db import-legacy` (issue 12.5): the old system's tables (tests/legacy_tables.py) copied by
the shipped example mapping into the service's tables beside them (DB_TABLE_PREFIX), on MariaDB and
SQLite: counts, a second run adds nothing, a dry run writes nothing, and an old conversation is
resumed by its customer and answered by the AI."""

from __future__ import annotations

import asyncio
import re
import uuid
from dataclasses import replace
from pathlib import Path

import pytest

from chat import cli
from chat.settings import DatabaseConfig, parse_database_url
from chat.store import Store, connect
from chat.store.legacy_import import import_legacy, run_command
from chat.store.legacy_mapping import DEFAULT_NAMESPACE, MappingError, load_mapping
from tests.conftest import TEST_DATABASE_URL, redis_url
from tests.legacy_tables import IMPORTED, LEGACY_ROWS, create_legacy, fresh_mysql_database

EXAMPLE = Path(__file__).parents[1] / "docs" / "legacy-mapping.example.toml"
PREFIX = "chat_"


def conversation_id(old_id: int) -> str:
    """The new id the example mapping gives an old conversation."""
    return str(uuid.uuid5(DEFAULT_NAMESPACE, f"conversations:{old_id}"))


@pytest.fixture(params=["mysql", "sqlite"])
def legacy_url(request, tmp_path):
    """A database holding only the old system's tables and rows."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path}/old.db"
        create_legacy(parse_database_url(url))
        yield url
        return
    with fresh_mysql_database(TEST_DATABASE_URL) as url:
        create_legacy(parse_database_url(url))
        yield url


def prefixed(url: str) -> DatabaseConfig:
    return replace(parse_database_url(url), table_prefix=PREFIX)


async def service_counts(config: DatabaseConfig) -> dict[str, int]:
    db = await connect(config)
    try:
        return {t: (await db.fetchone(f"SELECT COUNT(*) FROM {db.tables.of(t)}"))[0] for t in IMPORTED}
    finally:
        await db.close()


async def test_import_copies_every_old_row_once(legacy_url):
    config, mapping = prefixed(legacy_url), load_mapping(EXAMPLE)
    lines: list[str] = []
    counts = await import_legacy(config, mapping, batch=2, progress=lines.append)
    assert {t: c.added for t, c in counts.items()} == IMPORTED
    assert {t: c.read for t, c in counts.items()} == {t: len(LEGACY_ROWS[t]) for t in IMPORTED}
    assert not any(c.invalid or c.refused for c in counts.values())
    assert next(x for x in lines if x.startswith("conversations")) == (
        "conversations: 2 read, 2 added, 0 already there, 0 invalid, 0 refused")  # progress per batch
    assert await service_counts(config) == IMPORTED

    again = await import_legacy(config, mapping)
    assert {t: c.added for t, c in again.items()} == dict.fromkeys(IMPORTED, 0)
    assert {t: c.present for t, c in again.items()} == IMPORTED
    assert await service_counts(config) == IMPORTED


async def test_imported_rows_follow_the_service_rules(legacy_url):
    config = prefixed(legacy_url)
    await import_legacy(config, load_mapping(EXAMPLE))
    db = await connect(config)
    try:
        store = Store(db)
        open_, resolved, pending = [await store.conversations.load(conversation_id(i)) for i in (100, 101, 102)]
        assert (open_.state, open_.agent_type, open_.user_id, open_.agent_id) == ("ai", "ai", "cust-100", None)
        assert (resolved.state, resolved.agent_id, resolved.team_id, resolved.user_id) == (
            "closed", "2", "team-5", "cust-101")
        assert (pending.state, pending.agent_type, pending.handoff_at) == ("handoff", "human", pending.updated_at)
        assert open_.created_at == "2024-04-01T02:00:00.000Z"  # Asia/Shanghai DATETIMEs, as the mapping says
        assert open_.metadata == {"legacy_id": 100}
        messages = await store.messages.list_of(conversation_id(101))
        assert [(m.seq, m.sender_type, m.sender_id, m.private) for m in messages] == [
            (1, "customer", "cust-101", False), (2, "agent", "2", False), (3, "agent", "2", True)]
        assert (await store.conversations.extras(conversation_id(101)))[0] == 3  # last_seq follows
        staff = {m.id: m.role for m in await store.staff.list_staff()}
        assert staff == {"1": "admin", "2": "agent"}
        assert [t["name"] for t in await store.teams.all()] == ["Billing"]
        assert [label["title"] for label in await store.labels.all()] == ["refund", "vip"]
    finally:
        await db.close()


async def test_a_dry_run_writes_nothing(legacy_url):
    config = prefixed(legacy_url)
    counts = await import_legacy(config, load_mapping(EXAMPLE), dry_run=True)
    assert {t: c.added for t, c in counts.items()} == IMPORTED  # what a real run would add
    db = await connect(config)
    try:
        assert await Store(db).migrations.existing_columns() == {}  # not even the schema
    finally:
        await db.close()


async def test_an_imported_conversation_is_resumed_and_answered(harness_factory, legacy_url):
    config = prefixed(legacy_url)
    await import_legacy(config, load_mapping(EXAMPLE))
    h = await harness_factory(database_url=legacy_url, database=config, db_table_prefix=PREFIX)
    ws = await h.connect("cust-100")
    cid = conversation_id(100)
    resumed = await ws.ok("conversation.resume", conversation_id=cid)  # no live record yet: rebuilt from SQL
    assert resumed["conversation"]["state"] == "ai"
    assert [m["content"] for m in resumed["messages"]] == ["Where is my order?", "It left the warehouse yesterday."]
    sent = await ws.ok("message.send", conversation_id=cid, client_msg_id="c1", content="still there?")
    assert sent["message"]["seq"] == 3
    reply = await ws.event("message.created", lambda f: f["data"]["message"]["sender_type"] == "ai")
    assert reply["data"]["message"]["seq"] == 4
    await h.drain_ai()
    assert h.provider.calls[-1][-1] == {"role": "user", "content": "still there?"}
    stranger = await h.connect("cust-101")
    assert (await stranger.request("conversation.resume", conversation_id=cid))["code"] == "not_found"


def test_the_command_line_reports_and_exits(legacy_url, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    for name, value in {"DATABASE_URL": legacy_url, "REDIS_URL": redis_url(), "DB_TABLE_PREFIX": PREFIX,
                        "JWT_SECRET_KEY": "test-secret-0123456789abcdef0123456789"}.items():
        monkeypatch.setenv(name, value)
    assert cli.main(["db", "import-legacy", "--mapping", str(EXAMPLE), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "messages: 6 read, 6 to add" in out
    total = sum(int(n) for n in re.findall(r": \d+ read, (\d+) to add", out))
    assert out.splitlines()[-1] == f"result: OK ({total} row(s) to add, 0 already there; dry run, nothing written)"
    assert cli.main(["db", "import-legacy", "--mapping", str(EXAMPLE)]) == 0
    out = capsys.readouterr().out
    assert "messages: 6 read, 6 added" in out
    assert out.splitlines()[-1] == f"result: OK ({total} row(s) added, 0 already there)"
    assert cli.main(["db", "import-legacy", "--mapping", str(EXAMPLE)]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == f"result: OK (0 row(s) added, {total} already there)"
    monkeypatch.delenv("DB_TABLE_PREFIX")  # the old tables under the service's own names: refused, nothing written
    assert cli.main(["db", "import-legacy", "--mapping", str(EXAMPLE)]) == 2
    captured = capsys.readouterr()
    assert "DB_TABLE_PREFIX" in captured.err
    assert captured.out.splitlines()[-1] == (
        "result: FAILED (the service's tables collide with others: see above; nothing written)")


def test_a_bad_mapping_is_refused_before_anything_runs(tmp_path):
    bad = tmp_path / "m.toml"
    bad.write_text('[users]\nfrom = "users; DROP TABLE users"\n[users.columns]\nrole = "role"\n'
                   'created_ms = "c"\nupdated_ms = "u"\n')
    with pytest.raises(MappingError, match="not a plain table or column name"):
        load_mapping(bad)
    bad.write_text('[labels]\nid = "{title}"\n[labels.columns]\ntitle = "title"\ncreated_ms = "created_at"\n')
    with pytest.raises(MappingError, match="must use the key column"):
        load_mapping(bad)
    bad.write_text('[labels]\n[labels.columns]\ntitle = "title"\nnope = "x"\ncreated_ms = "c"\n')
    with pytest.raises(MappingError, match="nope not a column"):
        load_mapping(bad)


async def test_rows_that_cannot_be_imported_are_listed_and_fail_the_run(tmp_path, capsys):
    url = f"sqlite:///{tmp_path}/old.db"
    create_legacy(parse_database_url(url))
    db = await connect(parse_database_url(url))
    try:
        await db.execute("INSERT INTO conversations VALUES (103, 10, NULL, NULL, 'archived', "
                         "'2024-04-04 10:00:00', '2024-04-04 10:00:00')")
    finally:
        await db.close()
    config = prefixed(url)
    service = await connect(config)
    try:  # a label the service already has, under another id: its title is taken
        await Store(service).migrations.upgrade()
        await Store(service).labels.create("vip", None, None)
    finally:
        await service.close()
    assert await asyncio.to_thread(run_command, config, EXAMPLE, dry_run=False, batch=500) == 1
    out = capsys.readouterr().out
    assert "labels: 2 read, 1 added, 0 already there, 0 invalid, 1 refused" in out
    assert "conversations: 4 read, 3 added, 0 already there, 1 invalid, 0 refused" in out
    assert "conversations id=103: status = 'archived' is not in its map" in out
    assert "labels id=7 (new id label-7): refused (a unique value is taken" in out  # the old key first
    assert out.splitlines()[-1].startswith("result: FAILED (1 invalid, 1 refused: the rows listed above; ")


async def test_a_message_whose_conversation_is_not_in_the_old_table_is_reported_and_fails_the_run(legacy_url,
                                                                                                  capsys):
    """No conversation batch reads it: it must still be counted, named by its old key, and fail the run."""
    db = await connect(parse_database_url(legacy_url))
    try:
        await db.execute("INSERT INTO messages VALUES (1006, 999, 'contact', NULL, 'lost', 0, '2024-04-05 10:00:00')")
    finally:
        await db.close()

    assert await asyncio.to_thread(run_command, prefixed(legacy_url), EXAMPLE, dry_run=False, batch=2) == 1

    out = capsys.readouterr().out
    assert "messages: 7 read, 6 added, 0 already there, 1 invalid, 0 refused" in out
    assert "messages id=1006: its conversation 999 is not in conversations (not imported)" in out
    assert re.fullmatch(r"result: FAILED \(1 invalid, 0 refused: the rows listed above; \d+ row\(s\) added, 0 already"
                        r" there; fix the mapping or the data and run again\)", out.splitlines()[-1])


async def test_a_row_fixed_after_a_run_that_refused_it_is_imported_by_the_next_run(tmp_path):
    """The first message of a conversation is invalid in the first run (a sender type the map lacks); the
    map is fixed and the import run again: the message comes in after those already stored, no seq taken
    twice, and last_seq says so."""
    url = f"sqlite:///{tmp_path}/old.db"
    create_legacy(parse_database_url(url))
    old = await connect(parse_database_url(url))
    try:
        await old.execute("UPDATE messages SET sender_type = 'system' WHERE id = 1000")
    finally:
        await old.close()
    config = prefixed(url)
    first = await import_legacy(config, load_mapping(EXAMPLE))
    assert (first["messages"].invalid, first["messages"].added) == (1, 5)

    fixed = tmp_path / "mapping.toml"
    fixed.write_text(EXAMPLE.read_text().replace('bot = "ai" }', 'bot = "ai", system = "ai" }'))
    second = await import_legacy(config, load_mapping(fixed))
    assert (second["messages"].added, second["messages"].refused, second["messages"].present) == (1, 0, 5)
    db = await connect(config)
    try:
        cid = conversation_id(100)
        seqs = await db.fetchall(f"SELECT seq, content FROM {db.tables.messages} WHERE conversation_id = %s "
                                 "ORDER BY seq", (cid,))
        assert seqs == [(1, "It left the warehouse yesterday."), (2, "Where is my order?")]
        assert (await db.fetchone(f"SELECT last_seq FROM {db.tables.conversations} WHERE id = %s", (cid,)))[0] == 2
    finally:
        await db.close()


def test_a_database_error_ends_with_a_failed_result(tmp_path, capsys):
    """The old tables are not there (a wrong database): the error, then `result: FAILED`."""
    config = prefixed(f"sqlite:///{tmp_path}/empty.db")

    assert run_command(config, EXAMPLE, dry_run=False, batch=500) == 1

    captured = capsys.readouterr()
    assert "db import-legacy failed on" in captured.err
    assert captured.out.splitlines()[-1] == ("result: FAILED (a database error: see the error above; rows imported "
                                             "before it stay, a new run adds only the rest)")
