"""chat/cutover/backup_sql.py: column values as JSON and row counts of mysqldump files."""

from __future__ import annotations

import json

from chat.cutover.backup_format import dumps
from chat.cutover.backup_sql import count_dump_rows, decode_sql_value, encode_sql_value


def test_count_dump_rows_ignores_parentheses_in_strings(tmp_path):
    text = (
        "CREATE TABLE `a` (\n"
        "CREATE TABLE `empty` (\n"
        "INSERT INTO `a` VALUES (1,'x),(y'),(2,'it\\'s (a) \\\\'),(3,NULL);\n"
        "INSERT INTO `a` VALUES (4,0x28);\n"
    )
    path = tmp_path / "dump.sql"
    path.write_text(text)
    assert count_dump_rows(path) == {"a": 4, "empty": 0}


def test_sql_values_round_trip():
    import datetime as dt
    import decimal

    values = [None, 1, -2**70, 1.5, "t", b"\x00\xff", decimal.Decimal("1.10"),
              dt.datetime(2024, 1, 2, 3, 4, 5, 6), dt.date(2024, 1, 2), dt.timedelta(hours=-1, microseconds=3)]
    encoded = json.loads(dumps([encode_sql_value(v) for v in values]))
    assert [decode_sql_value(v) for v in encoded] == values


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
    assert count_dump_rows(path) == {"m": 4}
