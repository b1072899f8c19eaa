"""migrate_redis on real data (issue 12.7): junk keys accepted by --max-failures, single counting
in --verify, naive timestamps read in --naive-tz. Redis dbs 10-13 only."""

from __future__ import annotations

import json

import pytest

from chat.cutover import migrate_redis
from tests.cutover.test_migrate_redis import SRC, TGT, errors, run, seed, summary

GOOD = {
    f"session:good-{n}": {"userId": f"u-{n}", "agent": "ai", "context": {"n": n}, "createdAt": 1704103200000 + n}
    for n in range(5)
}
JUNK = {
    "session:junk-json": "{not json",
    "session:junk-array": "[1, 2]",
    "session:junk-agent": json.dumps({"userId": "u", "agent": "robot"}),
    "session:junk-bytes": b"\xff\x00",
}


def test_known_junk_is_accepted_by_max_failures_on_every_rerun(dbs, tmp_path, capsys):
    seed(dbs[SRC], {**GOOD, **JUNK}, ttl_keys=set())

    assert run(tmp_path)[0] == 1  # without --max-failures the junk fails the run
    for _ in range(2):  # and with it, every rerun passes, the junk still listed
        rc, lines = run(tmp_path, "--max-failures", "4")
        assert rc == 0
        assert {line["key"] for line in errors(lines)} == set(JUNK)
        out = capsys.readouterr().out
        assert summary(out)["failed"] == 4
        assert "result: OK (4 unconvertible record(s) accepted by --max-failures 4" in out
    for key in GOOD:
        assert json.loads(dbs[TGT].get(key))["user_id"] == GOOD[key]["userId"]

    assert run(tmp_path, "--max-failures", "3")[0] == 1  # one more than accepted fails


def test_verify_counts_each_problem_once(dbs, tmp_path, capsys):
    seed(dbs[SRC], {**GOOD, **JUNK}, ttl_keys=set())

    rc, lines = run(tmp_path, "--verify")

    assert rc == 1
    out = capsys.readouterr().out
    counts = summary(out)
    assert (counts["failed"], counts["mismatches"], counts["known"]) == (4, 0, 4)
    assert "result: FAILED (4 problem(s)" in out
    assert len(errors(lines)) == 4
    assert run(tmp_path, "--verify", "--max-failures", "4")[0] == 0


NAIVE = {"userId": "u-n", "agent": "ai", "context": {}, "createdAt": "2025-04-30 18:00:00",
         "updatedAt": "2025-04-30T10:30:00.000Z"}  # created 18:00 in Shanghai, updated half an hour later


def test_naive_times_are_read_in_the_given_zone_and_counted(dbs, tmp_path, capsys):
    seed(dbs[SRC], {"session:naive": NAIVE}, ttl_keys=set())

    rc, _ = run(tmp_path, "--naive-tz", "Asia/Shanghai")

    assert rc == 0
    record = json.loads(dbs[TGT].get("session:naive"))
    assert (record["created_at"], record["updated_at"]) == ("2025-04-30T10:00:00.000Z", "2025-04-30T10:30:00.000Z")
    assert summary(capsys.readouterr().out)["naive time"] == 1


def test_a_naive_time_read_in_the_wrong_zone_never_puts_updated_before_created(dbs, tmp_path):
    seed(dbs[SRC], {"session:naive": NAIVE}, ttl_keys=set())

    rc, lines = run(tmp_path)  # read as UTC, 18:00Z would come after the 10:30Z update

    assert rc == 1
    assert dbs[TGT].get("session:naive") is None
    [line] = errors(lines)
    assert line["code"] == "naive_time_order"
    assert "--naive-tz" in line["reason"]


def test_naive_utc_default_is_counted(dbs, tmp_path, capsys):
    seed(dbs[SRC], {"session:naive": {**NAIVE, "updatedAt": "2025-04-30 18:05:00"}}, ttl_keys=set())

    assert run(tmp_path)[0] == 0
    assert json.loads(dbs[TGT].get("session:naive"))["created_at"] == "2025-04-30T18:00:00.000Z"
    assert summary(capsys.readouterr().out)["naive time"] == 1


@pytest.mark.parametrize("zone", ["Mars/Olympus", "../etc"])
def test_unknown_zone_is_a_usage_error(zone, capsys):
    with pytest.raises(SystemExit) as exc:
        migrate_redis.main(["--naive-tz", zone])
    assert exc.value.code == 2
    assert "not a time zone" in capsys.readouterr().err
