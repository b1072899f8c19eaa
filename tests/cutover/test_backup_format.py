"""chat/cutover/backup_format.py: the lines of redis/keys.jsonl."""

from __future__ import annotations

import base64
import json

from chat.cutover.backup_format import decode_entry, encode_entry


def test_entry_encoding_keeps_binary_keys():
    key = b"session:\xff\x00"
    line = encode_entry(key, b"\x00\x01a" + b"\x00" * 10, 5, 99)
    assert decode_entry(json.loads(line), "x") == (key, b"\x00\x01a" + b"\x00" * 10, 99)
    assert base64.b64decode(json.loads(line)["key_b64"]) == key
