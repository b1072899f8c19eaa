"""chat/cutover/backup_rdb.py: string values out of real DUMP payloads (Redis db 13)."""

from __future__ import annotations

import pytest

from chat.cutover.backup_rdb import decode_string_dump
from tests.cutover.backups import SCRATCH


@pytest.mark.parametrize(
    "value",
    [b"", b"a", b"12345", b"-1", b"-32769", b"2147483648", b"9223372036854775807", b"0123",
     b"x" * 100, "你好".encode() * 30, bytes(range(256)) * 4, b"ab" * 5000, b"1" * 21],
)
def test_string_dump_payloads_decode(dbs, value):
    dbs[SCRATCH].set("k", value)
    assert decode_string_dump(dbs[SCRATCH].dump("k")) == value


def test_non_string_dump_payloads_are_not_strings(dbs):
    dbs[SCRATCH].hset("h", "a", "b")
    assert decode_string_dump(dbs[SCRATCH].dump("h")) is None
    assert decode_string_dump(b"\x00\xc3garbage") is None
