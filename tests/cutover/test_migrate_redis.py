"""chat.cutover.migrate_redis (scripts/migrate_redis.py) against the real Redis (dbs 10-13 only)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from chat.cutover import migrate_redis
from chat.cutover.migrate_redis import passes, wire
from tests.cutover.support import REPO, redis_url

SRC, TGT, INPLACE = 10, 11, 12
HOUR_MS = 3_600_000

# A mixed old data set: ISO and epoch times, offsets, a human agent, extra metadata,
# missing timestamps, TTLs on some keys.
OLD = {
    "session:iso-ttl": {
        "userId": "u-1",
        "agent": "ai",
        "context": {"lang": "zh", "history": [{"role": "user", "text": "你好"}]},
        "metadata": {"channel": "web", "vip": True, "score": 1.5},
        "createdAt": "2024-01-01T10:00:00.000Z",
        "updatedAt": "2024-01-01T10:05:00.000Z",
    },
    "session:epoch-human": {
        "userId": "u-2",
        "agent": "human",
        "context": {},
        "createdAt": 1704103200000,
        "updatedAt": 1704103500123,
    },
    "session:offset": {
        "userId": "u-3",
        "agent": "ai",
        "context": {"n": 1},
        "createdAt": "2024-01-01T18:00:00+08:00",
        "updatedAt": "2024-01-01T10:00:00.123456",
    },
    "session:numeric-string": {
        "userId": "u-4",
        "agent": "human",
        "context": {"k": "v"},
        "metadata": {"source": "app"},
        "createdAt": "1704103200000",
    },
    "session:no-times": {"userId": "u-5", "agent": "ai", "context": {"x": None}},
    "session:only-updated": {
        "userId": 42,
        "context": None,
        "updatedAt": "2024-02-29T23:59:59.999Z",
    },
}
TTL_KEYS = {"session:iso-ttl", "session:numeric-string", "session:no-times"}
NEW_FORMAT_SOURCE = {
    "user_id": "u-9",
    "agent_type": "human",
    "context": {},
    "created_at": "2023-12-31T00:00:00.000Z",
    "updated_at": "2023-12-31T00:00:00.000Z",
    "state": "human",
    "version": 3,
    "agent_id": "agent-7",
    "team_id": None,
    "metadata": {},
}


def new_record(user_id, agent, context, metadata, created, updated):  # noqa: PLR0917 - the record, field by field
    return {
        "user_id": user_id,
        "agent_type": agent,
        "context": context,
        "created_at": created,
        "updated_at": updated,
        "state": "ai" if agent == "ai" else "handoff",
        "version": 0,
        "agent_id": None,
        "team_id": None,
        "metadata": metadata,
    }


EXPECTED = {
    "session:iso-ttl": new_record(
        "u-1",
        "ai",
        OLD["session:iso-ttl"]["context"],
        {"channel": "web", "vip": True, "score": 1.5},
        "2024-01-01T10:00:00.000Z",
        "2024-01-01T10:05:00.000Z",
    ),
    "session:epoch-human": new_record(
        "u-2", "human", {}, {}, "2024-01-01T10:00:00.000Z", "2024-01-01T10:05:00.123Z"
    ),
    "session:offset": new_record(
        "u-3", "ai", {"n": 1}, {}, "2024-01-01T10:00:00.000Z", "2024-01-01T10:00:00.123Z"
    ),
    "session:numeric-string": new_record(
        "u-4",
        "human",
        {"k": "v"},
        {"source": "app"},
        "2024-01-01T10:00:00.000Z",
        "2024-01-01T10:00:00.000Z",
    ),
    "session:only-updated": new_record(
        "42", "ai", {}, {}, "2024-02-29T23:59:59.999Z", "2024-02-29T23:59:59.999Z"
    ),
}


def seed(client, records=OLD, ttl_keys=TTL_KEYS):
    for key, value in records.items():
        raw = value if isinstance(value, (str, bytes)) else json.dumps(value)
        client.set(key, raw, px=HOUR_MS if key in ttl_keys else None)


def run(tmp_path: Path, *args: str, source: int = SRC, target: int = TGT) -> tuple[int, list[dict]]:
    report = tmp_path / "report.jsonl"
    rc = migrate_redis.main(
        [
            "--source",
            redis_url(source),
            "--target",
            redis_url(target),
            "--report",
            str(report),
            "--batch",
            "2",
            "--quiet",
            *args,
        ]
    )
    lines = (
        [json.loads(line) for line in report.read_text().splitlines()] if report.exists() else []
    )
    return rc, lines


def snapshot(client) -> dict[bytes, tuple[bytes, bool]]:
    """Every key with its value and whether it has a TTL."""
    return {key: (client.get(key), client.pttl(key) >= 0) for key in client.scan_iter(count=100)}


def summary(out: str) -> dict[str, int]:
    """The counters of the closing table, by label."""
    rows = re.findall(r"^  ([a-zA-Z][a-zA-Z ]*?) +([\d,]+)  ", out, re.MULTILINE)
    return {label: int(count.replace(",", "")) for label, count in rows}


def errors(lines: list[dict]) -> list[dict]:
    return [line for line in lines if line["level"] == "error"]


# --------------------------------------------------------------------------- data


def test_converts_fields_timestamps_and_ttls(dbs, tmp_path, capsys):
    seed(dbs[SRC])
    dbs[SRC].set("session:already-new", json.dumps(NEW_FORMAT_SOURCE))
    before = snapshot(dbs[SRC])
    started = datetime.now(UTC) - timedelta(seconds=1)

    rc, lines = run(tmp_path)

    assert rc == 0, lines
    out = capsys.readouterr().out
    assert "result: OK" in out
    target = dbs[TGT]
    for key, expected in EXPECTED.items():
        assert json.loads(target.get(key)) == expected, key
    # Key order is the contract's order, and the JSON is compact.
    assert list(json.loads(target.get("session:iso-ttl"))) == list(EXPECTED["session:iso-ttl"])
    # No timestamps at all: the migration time, once, for both, counted in the summary.
    no_times = json.loads(target.get("session:no-times"))
    assert no_times["created_at"] == no_times["updated_at"]
    stamp = datetime.fromisoformat(no_times["created_at"])
    assert started <= stamp <= datetime.now(UTC)
    assert no_times["created_at"].endswith("Z") and len(no_times["created_at"]) == 24
    assert summary(out)["time defaulted"] == 1
    # A source record already in the new format is copied byte for byte.
    assert target.get("session:already-new") == dbs[SRC].get("session:already-new")
    # TTLs: kept (remaining time), and no TTL stays no TTL.
    for key in [*OLD, "session:already-new"]:
        ttl = target.pttl(key)
        if key in TTL_KEYS:
            assert HOUR_MS - 60_000 < ttl <= HOUR_MS, key
        else:
            assert ttl == -1, key
    # The source is left intact.
    assert snapshot(dbs[SRC]) == before
    assert lines == []


def test_second_run_changes_nothing(dbs, tmp_path, capsys):
    seed(dbs[SRC])
    assert run(tmp_path)[0] == 0
    first = snapshot(dbs[TGT])
    capsys.readouterr()

    rc, _ = run(tmp_path)

    assert rc == 0
    assert snapshot(dbs[TGT]) == first
    out = capsys.readouterr().out
    assert summary(out)["unchanged"] == len(OLD)
    assert summary(out)["converted"] == 0


def test_corrupt_records_are_reported_not_dropped(dbs, tmp_path, capsys):
    seed(dbs[SRC])
    bad = {
        "session:bad-json": '{"userId": "u", "agent": "ai",',
        "session:no-user": json.dumps({"agent": "ai", "context": {}}),
        "session:array": json.dumps([1, 2, 3]),
        "session:string": json.dumps("just a string"),
        "session:bad-agent": json.dumps({"userId": "u", "agent": "bot"}),
        "session:bad-time": json.dumps({"userId": "u", "createdAt": "yesterday"}),
        "session:bad-context": json.dumps({"userId": "u", "context": [1]}),
        "session:not-utf8": b"\xff\xfe",
    }
    seed(dbs[SRC], bad, ttl_keys=set())

    rc, lines = run(tmp_path)

    assert rc == 1
    codes = {line["key"]: line["code"] for line in errors(lines)}
    assert codes == {
        "session:bad-json": "bad_json",
        "session:no-user": "missing_user_id",
        "session:array": "not_object",
        "session:string": "not_object",
        "session:bad-agent": "bad_agent",
        "session:bad-time": "bad_timestamp",
        "session:bad-context": "bad_context",
        "session:not-utf8": "bad_json",
    }
    assert all(line["reason"] for line in lines)
    for key in bad:
        assert dbs[TGT].get(key) is None
    for key in EXPECTED:  # the good ones still went through
        assert json.loads(dbs[TGT].get(key)) == EXPECTED[key]
    out = capsys.readouterr().out
    counts = summary(out)
    assert counts["failed"] == 8
    outcomes = (
        "converted",
        "copied",
        "unchanged",
        "failed",
        "not a string",
        "target conflict",
        "vanished",
    )
    assert sum(counts[name] for name in outcomes) == counts["scanned"] == len(OLD) + len(bad)
    assert "result: FAILED" in out


def test_unknown_old_fields_are_reported_as_a_warning(dbs, tmp_path):
    dbs[SRC].set(
        "session:extra", json.dumps({"userId": "u", "agent": "ai", "lastSeen": 1, "tags": []})
    )

    rc, lines = run(tmp_path)

    assert rc == 0
    assert lines == [
        {
            "key": "session:extra",
            "code": "dropped_fields",
            "level": "warning",
            "reason": "old fields with no place in the new record left out: lastSeen, tags",
        }
    ]
    assert "lastSeen" not in json.loads(dbs[TGT].get("session:extra"))


def test_hash_under_the_pattern_is_reported_and_skipped(dbs, tmp_path):
    seed(dbs[SRC])
    dbs[SRC].hset("session:hash", mapping={"userId": "u", "agent": "ai"})

    rc, lines = run(tmp_path)

    assert rc == 1
    assert errors(lines) == [
        {
            "key": "session:hash",
            "code": "not_string",
            "level": "error",
            "reason": "a hash, not a string: skipped",
        }
    ]
    assert not dbs[TGT].exists("session:hash")
    assert all(dbs[TGT].exists(key) for key in OLD)


def test_key_deleted_between_scan_and_read_is_skipped(dbs, tmp_path, monkeypatch):
    seed(dbs[SRC])
    real_scan = passes.scan_batches

    def scan_then_delete(*args):
        for keys, fraction in real_scan(*args):
            if b"session:offset" in keys:
                dbs[SRC].delete("session:offset")  # gone after SCAN saw it, before the read
            yield keys, fraction

    monkeypatch.setattr(passes, "scan_batches", scan_then_delete)

    rc, lines = run(tmp_path)

    assert rc == 0
    assert lines == [
        {
            "key": "session:offset",
            "code": "vanished",
            "level": "warning",
            "reason": "expired or deleted before it was read",
        }
    ]
    assert not dbs[TGT].exists("session:offset")
    assert all(dbs[TGT].exists(key) for key in OLD if key != "session:offset")


def test_dry_run_writes_nothing(dbs, tmp_path, capsys):
    seed(dbs[SRC])
    dbs[SRC].set("session:bad", "{")
    before = snapshot(dbs[SRC])

    rc, lines = run(tmp_path, "--dry-run")

    assert rc == 1  # the corrupt record is still a failure worth knowing before the real run
    assert [line["key"] for line in errors(lines)] == ["session:bad"]
    assert dbs[TGT].dbsize() == 0
    assert snapshot(dbs[SRC]) == before
    out = capsys.readouterr().out
    assert summary(out)["converted"] == len(OLD)
    assert "would be written in the new format" in out

    # In place too.
    rc, _ = run(tmp_path, "--dry-run", target=SRC)
    assert snapshot(dbs[SRC]) == before


def test_dry_run_counts_target_records_it_would_keep(dbs, tmp_path, capsys):
    seed(dbs[SRC])
    assert run(tmp_path)[0] == 0
    capsys.readouterr()

    assert run(tmp_path, "--dry-run")[0] == 0

    out = capsys.readouterr().out
    assert summary(out)["unchanged"] == len(OLD)
    assert summary(out)["converted"] == 0


def test_verify_passes_after_a_clean_migration(dbs, tmp_path, capsys):
    seed(dbs[SRC])
    rc, lines = run(tmp_path, "--verify")
    assert rc == 0, lines
    assert summary(capsys.readouterr().out)["verified"] == len(OLD)

    # A later verification on its own (dry run) agrees, missing timestamps included.
    rc, lines = run(tmp_path, "--verify", "--dry-run")
    assert rc == 0, lines


def test_verify_catches_a_tampered_target(dbs, tmp_path, capsys):
    seed(dbs[SRC])
    assert run(tmp_path)[0] == 0
    tampered = json.loads(dbs[TGT].get("session:epoch-human"))
    tampered["user_id"] = "someone-else"
    dbs[TGT].set("session:epoch-human", json.dumps(tampered))  # still new format: kept as is
    dbs[TGT].persist("session:iso-ttl")
    dbs[TGT].delete("session:offset")
    wrong_type = json.loads(dbs[TGT].get("session:only-updated"))
    wrong_type["version"] = False  # == 0 in Python, not in JSON
    dbs[TGT].set("session:only-updated", json.dumps(wrong_type))

    rc, lines = run(tmp_path, "--verify", "--dry-run")

    assert rc == 1
    found = {line["key"]: (line["code"], line["reason"]) for line in errors(lines)}
    assert found == {
        "session:epoch-human": ("verify_differs", "verify: the target differs in user_id"),
        "session:iso-ttl": ("verify_ttl", "verify: the source has a TTL, the target none"),
        "session:offset": ("verify_missing", "verify: missing in the target"),
        "session:only-updated": ("verify_differs", "verify: the target differs in version"),
    }
    assert summary(capsys.readouterr().out)["mismatches"] == 4


def test_force_reconverts_new_format_targets(dbs, tmp_path):
    seed(dbs[SRC])
    assert run(tmp_path)[0] == 0
    tampered = dict(EXPECTED["session:iso-ttl"], user_id="someone-else")
    dbs[TGT].set("session:iso-ttl", json.dumps(tampered))

    assert run(tmp_path)[0] == 0
    assert json.loads(dbs[TGT].get("session:iso-ttl"))["user_id"] == "someone-else"

    rc, _ = run(tmp_path, "--force", "--verify")

    assert rc == 0
    assert json.loads(dbs[TGT].get("session:iso-ttl")) == EXPECTED["session:iso-ttl"]
    assert dbs[TGT].pttl("session:iso-ttl") > 0


def test_target_holding_something_else(dbs, tmp_path):
    seed(dbs[SRC])
    dbs[TGT].set("session:iso-ttl", json.dumps(OLD["session:iso-ttl"]))  # old format: replaced
    dbs[TGT].set("session:offset", "garbage")  # not a record: replaced
    dbs[TGT].rpush("session:epoch-human", "x")  # another type: never clobbered without --force

    rc, lines = run(tmp_path)

    assert rc == 1
    assert [(line["key"], line["code"]) for line in errors(lines)] == [
        ("session:epoch-human", "target_not_string")
    ]
    assert json.loads(dbs[TGT].get("session:iso-ttl")) == EXPECTED["session:iso-ttl"]
    assert dbs[TGT].pttl("session:iso-ttl") > 0
    assert json.loads(dbs[TGT].get("session:offset")) == EXPECTED["session:offset"]
    assert dbs[TGT].type("session:epoch-human") == b"list"


def test_same_source_and_target_converts_in_place(dbs, tmp_path, capsys):
    seed(dbs[INPLACE])
    dbs[INPLACE].set("session:already-new", json.dumps(NEW_FORMAT_SOURCE), px=HOUR_MS)
    dbs[INPLACE].set("other:key", "untouched")
    ttl_before = {key: dbs[INPLACE].pttl(key) for key in TTL_KEYS}

    rc, lines = run(tmp_path, "--verify", source=INPLACE, target=INPLACE)

    assert rc == 0, lines
    for key, expected in EXPECTED.items():
        assert json.loads(dbs[INPLACE].get(key)) == expected
    for key in TTL_KEYS:  # KEEPTTL: the TTL was not even re-set
        assert 0 < dbs[INPLACE].pttl(key) <= ttl_before[key]
    assert dbs[INPLACE].pttl("session:epoch-human") == -1
    assert json.loads(dbs[INPLACE].get("session:already-new")) == NEW_FORMAT_SOURCE
    assert dbs[INPLACE].get("other:key") == b"untouched"
    assert dbs[SRC].dbsize() == dbs[TGT].dbsize() == 0
    out = capsys.readouterr()
    assert "in place" in out.err
    assert summary(out.out)["unchanged"] == 1

    after = snapshot(dbs[INPLACE])
    assert run(tmp_path, source=INPLACE, target=INPLACE)[0] == 0
    assert snapshot(dbs[INPLACE]) == after


def test_interrupted_run_can_simply_be_run_again(dbs, tmp_path, monkeypatch, capsys):
    seed(dbs[SRC])
    real_convert_batch = passes.convert_batch
    calls = []

    def interrupt_on_second_batch(*args):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_convert_batch(*args)

    monkeypatch.setattr(passes, "convert_batch", interrupt_on_second_batch)
    rc, _ = run(tmp_path)
    assert rc == 1
    assert "INCOMPLETE" in capsys.readouterr().out
    assert 0 < dbs[TGT].dbsize() < len(OLD)

    monkeypatch.setattr(passes, "convert_batch", real_convert_batch)
    rc, _ = run(tmp_path, "--verify")

    assert rc == 0
    assert {key.decode() for key in dbs[TGT].scan_iter()} == set(OLD)


def test_many_batches_and_the_pattern(dbs, tmp_path):
    records = {
        f"session:{i:04d}": {"userId": f"u{i}", "createdAt": 1704103200000 + i} for i in range(250)
    }
    seed(dbs[SRC], records, ttl_keys={k for i, k in enumerate(records) if i % 3 == 0})
    dbs[SRC].set("cache:ignored", "{")

    rc, lines = run(tmp_path, "--batch", "7", "--verify")

    assert rc == 0, lines
    assert dbs[TGT].dbsize() == 250
    assert sum(dbs[TGT].pttl(k) > 0 for k in records) == 84


def test_default_report_in_cwd_and_masked_urls(dbs, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    dbs[SRC].set("session:bad", "[")
    rc = migrate_redis.main(["--source", redis_url(SRC), "--target", redis_url(TGT), "--quiet"])
    assert rc == 1
    assert (tmp_path / "migrate_redis_report.jsonl").read_text().count("session:bad") == 1

    rc = migrate_redis.main(
        ["--source", "redis://:hunter2-secret@127.0.0.1:1/0", "--target", redis_url(TGT), "--quiet"]
    )
    assert rc == 1
    captured = capsys.readouterr()
    assert "hunter2" not in captured.out + captured.err
    assert "redis://:***@127.0.0.1:1/0" in captured.err


def test_usage_errors_exit_2(capsys):
    with pytest.raises(SystemExit) as exc:
        migrate_redis.main(["--batch", "0"])
    assert exc.value.code == 2
    assert (
        migrate_redis.main(["--source", "http://example.invalid/0", "--target", redis_url(TGT)])
        == 2
    )
    assert "not a Redis URL" in capsys.readouterr().err


def test_runs_as_a_script_from_the_repo_root(dbs, tmp_path):
    help_run = subprocess.run(
        [sys.executable, "scripts/migrate_redis.py", "--help"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert help_run.returncode == 0
    assert "--dry-run" in help_run.stdout and "Exit codes" in help_run.stdout

    seed(dbs[SRC])
    done = subprocess.run(
        [
            sys.executable,
            "scripts/migrate_redis.py",
            "--source",
            redis_url(SRC),
            "--target",
            redis_url(TGT),
            "--report",
            str(tmp_path / "r.jsonl"),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "result: OK" in done.stdout
    assert "migrate: ~100%" in done.stderr  # periodic progress line when stderr is not a terminal
    assert dbs[TGT].dbsize() == len(OLD)


def test_runs_as_a_chat_api_subcommand(dbs, tmp_path):
    seed(dbs[SRC])
    done = subprocess.run(
        [sys.executable, "-m", "chat", "migrate-redis", "--source", redis_url(SRC), "--target", redis_url(TGT),
         "--report", str(tmp_path / "r.jsonl"), "--verify", "--quiet"],
        cwd=REPO, capture_output=True, text=True, timeout=120, check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "result: OK" in done.stdout
    assert summary(done.stdout)["verified"] == len(OLD)
    for key, expected in EXPECTED.items():
        assert json.loads(dbs[TGT].get(key)) == expected


def test_scan_fraction_estimates_progress(dbs):
    client = dbs[SRC]
    for start in range(0, 2000, 500):
        client.mset({f"session:{i}": "{}" for i in range(start, start + 500)})
    cursor, fractions = 0, []
    while True:
        cursor, _ = client.scan(cursor, count=100)
        if cursor == 0:
            break
        fractions.append(wire.scan_fraction(cursor))
    assert fractions == sorted(fractions)
    assert all(0 < f < 1 for f in fractions)
    assert fractions[len(fractions) // 2] == pytest.approx(0.5, abs=0.2)


def test_error_replies_are_read_as_values(dbs, tmp_path):
    """An error reply in a pipelined batch (GET on a list) is one key's problem, not the run's."""
    seed(dbs[SRC])
    dbs[TGT].rpush("session:epoch-human", "x")  # GET on it answers with an error reply

    rc, lines = run(tmp_path, "--verify")

    assert rc == 1
    assert [(line["key"], line["code"]) for line in errors(lines)] == [
        ("session:epoch-human", "target_not_string"),
        ("session:epoch-human", "verify_target_not_string"),
    ]
    assert json.loads(dbs[TGT].get("session:iso-ttl")) == EXPECTED["session:iso-ttl"]


def test_set_commands_pack_what_redis_reads_as_separate_sets(dbs):
    """A batch packed in one buffer: TTL or none, NX or not, a TTL about to run out as PX 1."""
    items = [(b"session:a", b'{"x":1}', -1, 0), (b"session:b", b"\x00\xff" * 500, 5000, 0), (b"session:c", b"", 0, 0)]
    expected = b"".join(
        wire.pack(b"SET", key, value, *((b"PX", b"%d" % max(pttl, 1)) if pttl >= 0 else ()), b"NX")
        for key, value, pttl, _ in items
    )
    assert wire.set_commands(items, nx=True) == expected

    client = dbs[TGT]
    client.set("session:a", "taken")
    conn = wire.Wire(client)
    try:
        assert conn.call(wire.set_commands(items, nx=True), 3) == [None, b"OK", b"OK"]
        assert conn.call(wire.set_commands(items[:1]), 1) == [b"OK"]
    finally:
        conn.close()
    assert client.get("session:a") == b'{"x":1}' and client.pttl("session:a") == -1
    assert client.get("session:b") == b"\x00\xff" * 500 and 0 < client.pttl("session:b") <= 5000
    assert client.get("session:c") in (b"", None)  # PX 1: gone within a millisecond, never kept
