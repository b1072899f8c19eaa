"""chat/cutover/common.py: URL masking, argparse types, progress output."""

from __future__ import annotations

import argparse
import io

import pytest

from chat.cutover.common import Progress, mask_url, percent, positive_int


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("redis://:s3cret@host:6379/0", "redis://:***@host:6379/0"),
        ("redis://user:s3cret@host:6379/0", "redis://user:***@host:6379/0"),
        ("mysql://root:p%40ss@db:3306/chat_api", "mysql://root:***@db:3306/chat_api"),
        ("redis://host:6379/0?password=s3cret&db=1", "redis://host:6379/0?password=***&db=1"),
        ("redis://host:6379/0", "redis://host:6379/0"),
        ("redis://:p@ss:w@host:6379", "redis://:***@host:6379"),
        ("http://u:p@h:notaport/", "http://u:***@h:notaport/"),
        # secret query values of every scheme (unix:// and sqlite:/// have no netloc to mask)
        ("unix:///tmp/redis.sock?db=1&password=TopSecret", "unix:///tmp/redis.sock?db=1&password=***"),
        ("unix:///tmp/redis.sock?db=1", "unix:///tmp/redis.sock?db=1"),
        ("redis://host:6379/0?auth_token=TopSecret&db=1", "redis://host:6379/0?auth_token=***&db=1"),
        ("sqlite:///data/chat.db?api_key=TopSecret", "sqlite:///data/chat.db?api_key=***"),
    ],
)
def test_mask_url(url, expected):
    assert mask_url(url) == expected


def test_argparse_types():
    assert positive_int("3") == 3
    assert percent("99.9") == 99.9
    for bad in ("0", "-1", "x"):
        with pytest.raises(argparse.ArgumentTypeError):
            positive_int(bad)
    with pytest.raises(argparse.ArgumentTypeError):
        percent("100.1")


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_draws_a_bar_on_a_terminal():
    stream = FakeTerminal()
    progress = Progress("migrate", stream, interval_s=0)
    progress.update(500, 0.5)
    progress.update(1000, 1.0)
    progress.close()
    text = stream.getvalue()
    assert "\r" in text and "[###############---------------]" in text
    assert "~100%" in text and text.endswith("\n")


def test_progress_writes_plain_lines_otherwise():
    stream = io.StringIO()
    progress = Progress("verify", stream, interval_s=3600)
    progress.update(10, 0.1)  # within the interval: nothing
    progress.update(20, None, force=True)
    progress.close()
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1 and lines[0].startswith("verify: 20 done")
    assert "\r" not in stream.getvalue()


def test_mask_url_keeps_sqlite_paths():
    from chat.cutover.common import mask_url

    assert mask_url("sqlite:////abs/path/chat.db") == "sqlite:////abs/path/chat.db"
    assert mask_url("sqlite:///data/chat.db") == "sqlite:///data/chat.db"
    assert mask_url("mysql://u:secret@h:3306/db") == "mysql://u:***@h:3306/db"
