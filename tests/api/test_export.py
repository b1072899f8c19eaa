"""Conversations out of the service: the NDJSON export (read in bounded pages, every line whole and
exact), its REST endpoint and `chat-api export`, and transcripts as JSON, CSV and Markdown (Chinese
text and a comma, quote and line break round-trip through the CSV). MariaDB and SQLite."""

from __future__ import annotations

import csv
import io
import random
import uuid

import orjson
import pytest

from chat.api.export import TranscriptQuery
from chat.auth import Identity
from chat.cli import main
from chat.export import NdjsonExport
from chat.store import DatabaseError
from chat.store.models import EVENT_COLUMNS
from chat.store.timers import MARK_COLUMNS
from states.clock import iso_from_ms
from tests.api.support import assert_error, uid
from tests.api.test_conversations import insert_conversation

TRICKY = '你好，世界 — "quoted", comma, and a\nsecond line\r\nthird 😀 <b>&amp;</b> *star* `tick`'


def window_start() -> int:
    """A window of creation times no other test writes into (the MariaDB database is shared)."""
    return random.randrange(10**11, 9 * 10**11) // 10**6 * 10**6


async def add_event(db, conversation_id: str, version: int, created_ms: int) -> None:
    await db.execute(
        f"INSERT INTO conversation_events ({EVENT_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
        (str(uuid.uuid4()), conversation_id, version, "request_handoff", "ai", "handoff", "customer", "c", "keyword",
         None, None, created_ms),
    )


async def fill(store, count: int, base: int) -> dict[str, dict]:
    """`count` conversations created from `base` on (pairs share a millisecond), with messages (one
    long conversation, private notes, tricky text) and log entries; what each line must hold."""
    expected: dict[str, dict] = {}
    for i in range(count):
        cid = await insert_conversation(store.db, user_id=uid("exp"), created_ms=base + (i // 2))
        messages = 45 if i == 7 else i % 4
        for n in range(messages):
            await store.messages.append(cid, sender_type="agent" if n % 3 == 2 else "customer",
                                        sender_id="agent-x" if n % 3 == 2 else "cust",
                                        content=TRICKY if n == 0 else f"m{n}", private=n % 3 == 2)
        versions = 3 if i % 5 == 0 or i == 7 else 0
        for version in range(1, versions + 1):
            await add_event(store.db, cid, version, base + i)
        log = [(version, "request_handoff") for version in range(1, versions + 1)]
        if versions:  # an SLA breach logged at version 2 (not a transition): after that version's transition
            await store.db.execute(f"INSERT INTO conversation_marks ({MARK_COLUMNS}) VALUES "
                                   "(%s, %s, 2, 'sla_breached', 'human', 'agent-x', NULL, %s)",
                                   (str(uuid.uuid4()), cid, base + i))
            log.insert(2, (2, "sla_breached"))
        expected[cid] = {"messages": messages, "events": log}
    return expected


def counting(db):
    """Wrap db.fetchall: the number of rows each query returned."""
    sizes: list[int] = []
    inner = db.fetchall

    async def fetchall(sql, params=()):
        rows = await inner(sql, params)
        sizes.append(len(rows))
        return rows

    db.fetchall = fetchall
    return sizes


async def test_the_export_reads_in_pages_and_every_line_is_whole(store):
    base = window_start()
    expected = await fill(store, 230, base)
    sizes = counting(store.db)
    export = NdjsonExport(store, since_ms=base, until_ms=base + 10**6, page_size=50, rows_per_read=40)
    body = b"".join([chunk async for chunk in export.chunks()])
    lines = [orjson.loads(line) for line in body.splitlines()]
    assert export.conversations == 230 == len(lines) and body.endswith(b"\n")
    ids = [line["conversation"]["id"] for line in lines]
    created = [(line["conversation"]["created_at"], line["conversation"]["id"]) for line in lines]
    assert created == sorted(created) and set(ids) == set(expected)  # oldest first, each once
    for line in lines:
        want = expected[line["conversation"]["id"]]
        assert [m["seq"] for m in line["messages"]] == list(range(1, want["messages"] + 1))
        assert [(e["version"], e["trigger"]) for e in line["events"]] == want["events"]
        for m in line["messages"]:
            assert m["private"] is (m["sender_type"] == "agent")  # notes included and marked
            assert m["content"] == TRICKY if m["seq"] == 1 else m["content"] == f"m{m['seq'] - 1}"
    # bounded reads: no query returned more than a page of conversations or rows (plus the row that
    # tells there is more), and they were read a page at a time, never one conversation at a time
    assert max(sizes) <= 51
    assert len(sizes) < 230 / 3, sizes


async def test_a_long_event_log_is_read_in_pages_each_with_the_marks_of_its_versions(store):
    base = window_start()
    cid = await insert_conversation(store.db, user_id=uid("log"), created_ms=base)
    for version in range(1, 96):
        await add_event(store.db, cid, version, base + version)
    for version in (1, 40, 41, 80, 95):  # at the pages' edges (40 transitions a read)
        await store.db.execute(f"INSERT INTO conversation_marks ({MARK_COLUMNS}) VALUES "
                               "(%s, %s, %s, 'sla_breached', 'human', 'agent-x', NULL, %s)",
                               (str(uuid.uuid4()), cid, version, base + version))
    sizes = counting(store.db)
    export = NdjsonExport(store, since_ms=base, until_ms=base + 1, rows_per_read=40)
    [line] = [orjson.loads(x) for x in b"".join([c async for c in export.chunks()]).splitlines()]
    want = [(v, "request_handoff") for v in range(1, 96)]
    for version in (95, 80, 41, 40, 1):
        want.insert(version, (version, "sla_breached"))
    assert [(e["version"], e["trigger"]) for e in line["events"]] == want
    assert max(sizes) <= 41


async def test_the_export_window_is_half_open(store):
    base = window_start()
    inside = await insert_conversation(store.db, user_id=uid("w"), created_ms=base)
    await insert_conversation(store.db, user_id=uid("w"), created_ms=base + 1000)
    export = NdjsonExport(store, since_ms=base, until_ms=base + 1000)
    lines = [orjson.loads(x) for x in b"".join([c async for c in export.chunks()]).splitlines()]
    assert [line["conversation"]["id"] for line in lines] == [inside]
    assert lines[0]["messages"] == [] and lines[0]["events"] == []


async def test_the_export_endpoint_streams_the_same_lines(api):
    base = window_start()
    expected = await fill(api.store, 12, base)
    admin = Identity(uid("admin"), "admin")
    since, until = iso_from_ms(base), iso_from_ms(base + 10**6)
    resp = await api.client.get("/api/v1/export/conversations", params={"since": since, "until": until},
                                headers={"Authorization": f"Bearer {api.token(admin)}"})
    assert resp.status == 200 and resp.content_type == "application/x-ndjson"
    assert "attachment" in resp.headers["Content-Disposition"]
    body = await resp.read()
    assert {orjson.loads(line)["conversation"]["id"] for line in body.splitlines()} == set(expected)
    direct = NdjsonExport(api.store, since_ms=base, until_ms=base + 10**6)
    assert body == b"".join([chunk async for chunk in direct.chunks()])  # the very lines of chat-api export
    for who in (Identity(uid("agent"), "agent"), Identity(uid("cust"), "customer")):
        status, body = await api.call("GET", "/api/v1/export/conversations", as_=who)
        assert_error(status, body, 403, "forbidden")
    status, body = await api.call("GET", f"/api/v1/export/conversations?since={until}&until={since}", as_=admin)
    assert_error(status, body, 400, "invalid")
    resp = await api.client.get("/api/v1/export/conversations", params={"since": "1969-12-31", "until": until},
                                headers={"Authorization": f"Bearer {api.token(admin)}"})
    assert resp.status == 200  # a window from before 1970: everything up to `until`
    assert set(expected) <= {orjson.loads(line)["conversation"]["id"] for line in (await resp.read()).splitlines()}


def test_the_cli_writes_the_file_with_progress(tmp_path, capsys, monkeypatch):
    import asyncio

    from chat.settings import parse_database_url
    from chat.store import Store, connect

    db_url = f"sqlite:///{tmp_path}/export.db"

    async def prepare() -> dict[str, dict]:
        db = await connect(parse_database_url(db_url))
        store = Store(db)
        await store.migrations.upgrade()
        try:
            return await fill(store, 9, 1_700_000_000_000)
        finally:
            await db.close()

    expected = asyncio.run(prepare())
    monkeypatch.setenv("DATABASE_URL", db_url)
    monkeypatch.setenv("JWT_SECRET_KEY", "cli-secret-0123456789abcdef0123456789")
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "dump.ndjson"
    assert main(["export", "--since", "2023-11-14T22:13:20Z", "--until", "2023-11-15", "--out", str(out)]) == 0
    lines = [orjson.loads(x) for x in out.read_bytes().splitlines()]
    assert {line["conversation"]["id"] for line in lines} == set(expected)
    assert not (tmp_path / "dump.ndjson.partial").exists()
    assert "exported 9 conversations" in capsys.readouterr().err
    before_1970 = tmp_path / "all.ndjson"
    assert main(["export", "--since", "1900-01-01", "--until", "2023-11-15", "--out", str(before_1970)]) == 0
    assert before_1970.read_bytes() == out.read_bytes()
    assert main(["export", "--since", "tomorrow", "--out", str(tmp_path / "x")]) == 2
    assert not (tmp_path / "x").exists()
    capsys.readouterr()
    assert main(["export", "--out", str(tmp_path / "no-such-dir" / "x.ndjson")]) == 1  # one line, no traceback
    err = capsys.readouterr().err
    assert "chat-api export failed: FileNotFoundError" in err and "Traceback" not in err
    monkeypatch.setenv("PORT", "abc")  # a configuration error: exit 2, and no file left behind
    with pytest.raises(SystemExit) as exited:
        main(["export", "--out", str(tmp_path / "y.ndjson")])
    assert exited.value.code == 2
    assert not (tmp_path / "y.ndjson.partial").exists() and not (tmp_path / "y.ndjson").exists()


# --- transcripts ---------------------------------------------------------------------------------


async def conversation_with_notes(api) -> tuple[str, list]:
    customer = Identity(uid("cust"), "customer")
    cid = (await api.ops.conversations.start(customer)).id
    await api.store.messages.append(cid, sender_type="customer", sender_id=customer.user_id, content=TRICKY)
    await api.store.messages.append(cid, sender_type="agent", sender_id="agent-t", content="内部备注, \"note\"",
                                    private=True)
    await api.store.messages.append(cid, sender_type="ai", content="第三条\n\nthird")
    await api.store.messages.append(cid, sender_type="customer", sender_id=customer.user_id,
                                    content='=HYPERLINK("http://evil.example","click")')
    return cid, await api.store.messages.list_of(cid)


@pytest.mark.parametrize("fmt", ["json", "csv", "md"])
async def test_transcripts(api, fmt):
    cid, stored = await conversation_with_notes(api)
    agent = Identity(uid("agent"), "agent")
    resp = await api.client.get(f"/api/v1/conversations/{cid}/transcript", params={"format": fmt},
                                headers={"Authorization": f"Bearer {api.token(agent)}"})
    assert resp.status == 200
    raw = await resp.read()
    if fmt == "json":
        body = orjson.loads(raw)
        assert body["conversation"]["id"] == cid
        assert [(m["seq"], m["content"], m["private"], m["sender_type"]) for m in body["messages"]] == [
            (m.seq, m.content, m.private, m.sender_type) for m in stored]
    elif fmt == "csv":
        assert resp.headers["Content-Type"] == "text/csv; charset=utf-8"
        assert f'filename="conversation-{cid}.csv"' in resp.headers["Content-Disposition"]
        rows = list(csv.reader(io.StringIO(raw.decode("utf-8-sig"), newline="")))
        assert rows[0] == ["seq", "created_at", "sender_type", "sender_id", "private", "content"]
        assert [(int(r[0]), r[2], r[3], r[4], r[5]) for r in rows[1:-1]] == [
            (m.seq, m.sender_type, m.sender_id or "", "true" if m.private else "false", m.content)
            for m in stored[:-1]]
        assert rows[-1][5] == "'" + stored[-1].content  # never a formula in a spreadsheet program
        assert rows[1][5] == TRICKY  # Chinese, comma, quotes, CRLF and LF, an emoji: exactly as stored
        assert rows[1][1] == iso_from_ms(stored[0].created_ms)
    else:
        text = raw.decode()
        assert resp.headers["Content-Type"] == "text/markdown; charset=utf-8"
        assert text.startswith(f"# Conversation {cid}")
        assert "**private note**" in text and "内部备注" in text and "第三条" in text
        assert "<b>" not in text and "&lt;b>&amp;amp;&lt;/b>" in text  # no HTML for a Markdown viewer to run
        assert "\\*star\\*" in text
        assert text.count("**private note**") == 1


async def test_transcript_errors(api):
    cid, _ = await conversation_with_notes(api)
    agent = Identity(uid("agent"), "agent")
    status, body = await api.call("GET", f"/api/v1/conversations/{cid}/transcript?format=xml", as_=agent)
    assert_error(status, body, 400, "invalid")
    status, body = await api.call("GET", "/api/v1/conversations/nope/transcript", as_=agent)
    assert_error(status, body, 404, "not_found")
    status, body = await api.call("GET", f"/api/v1/conversations/{cid}/transcript",
                                  as_=Identity(uid("cust"), "customer"))
    assert_error(status, body, 403, "forbidden")
    assert TranscriptQuery().load({}) == {"format": "json"}


async def test_a_failure_after_the_headers_breaks_the_transfer(api, monkeypatch):
    import aiohttp

    base = window_start()
    await fill(api.store, 5, base)
    admin = Identity(uid("admin"), "admin")

    async def too_many(ids, *, limit):
        return None  # as if the page's messages were too many: each conversation is read by pages

    async def gone(*args, **kwargs):
        raise DatabaseError("database gone")

    monkeypatch.setattr(api.store.export, "messages_of", too_many)
    monkeypatch.setattr(api.store.messages, "list_of", gone)
    resp = await api.client.get("/api/v1/export/conversations", params={"since": iso_from_ms(base)},
                                headers={"Authorization": f"Bearer {api.token(admin)}"})
    assert resp.status == 200  # the first line had begun
    with pytest.raises(aiohttp.ClientPayloadError):
        await resp.read()
    # a failure before anything was sent is an ordinary error response
    monkeypatch.setattr(api.store.export, "conversations", gone)
    status, body = await api.call("GET", "/api/v1/export/conversations", as_=admin)
    assert_error(status, body, 503, "unavailable")
