"""String values out of Redis DUMP payloads, without a Redis server (rollback reads backed-up records)."""

from __future__ import annotations


def decode_string_dump(payload: bytes) -> bytes | None:
    """The value of a string key from its DUMP payload; None for another type or an odd payload.

    Rollback needs the backed-up value of a few session records (the originals that make the
    reverse migration lossless) without writing them to Redis first. A string is one RDB
    string object: plain, an integer encoding, or LZF-compressed; then the 2-byte RDB version
    and the 8-byte CRC, which the backup's SHA-256 already covers.
    """
    if not payload or payload[0] != 0:
        return None
    try:
        value, end = _rdb_string(payload, 1)
    except (IndexError, ValueError):
        return None
    return value if end == len(payload) - 10 else None


def _rdb_length(data: bytes, pos: int) -> tuple[int, bool, int]:
    """``(length or encoding, is_encoded, next position)`` of an RDB length field."""
    first = data[pos]
    kind = first >> 6
    if kind == 0:
        return first & 0x3F, False, pos + 1
    if kind == 1:
        return ((first & 0x3F) << 8) | data[pos + 1], False, pos + 2
    if kind == 3:
        return first & 0x3F, True, pos + 1
    if first == 0x80:
        return int.from_bytes(data[pos + 1 : pos + 5], "big"), False, pos + 5
    if first == 0x81:
        return int.from_bytes(data[pos + 1 : pos + 9], "big"), False, pos + 9
    raise ValueError(f"unknown RDB length byte {first:#x}")


def _rdb_string(data: bytes, pos: int) -> tuple[bytes, int]:
    length, encoded, pos = _rdb_length(data, pos)
    if not encoded:
        if pos + length > len(data):
            raise ValueError("truncated string")
        return data[pos : pos + length], pos + length
    if length in (0, 1, 2):  # 8, 16, 32-bit little-endian signed integers
        size = 1 << length
        number = int.from_bytes(data[pos : pos + size], "little", signed=True)
        return str(number).encode("ascii"), pos + size
    if length == 3:  # LZF
        compressed_len, _, pos = _rdb_length(data, pos)
        plain_len, _, pos = _rdb_length(data, pos)
        end = pos + compressed_len
        return lzf_decompress(data[pos:end], plain_len), end
    raise ValueError(f"unknown RDB string encoding {length}")


def lzf_decompress(data: bytes, expected_len: int) -> bytes:
    """liblzf's format, as Redis writes it for strings over 20 bytes."""
    out = bytearray()
    pos, size = 0, len(data)
    while pos < size:
        ctrl = data[pos]
        pos += 1
        if ctrl < 32:  # a literal run of ctrl + 1 bytes
            run = ctrl + 1
            if pos + run > size:
                raise ValueError("truncated LZF literal")
            out += data[pos : pos + run]
            pos += run
            continue
        length = ctrl >> 5
        if length == 7:
            length += data[pos]
            pos += 1
        ref = len(out) - ((ctrl & 0x1F) << 8) - data[pos] - 1
        pos += 1
        length += 2
        if ref < 0:
            raise ValueError("LZF back reference before the start")
        if ref + length <= len(out):
            out += out[ref : ref + length]
        else:  # overlapping copy: byte by byte, as in C
            for i in range(length):
                out.append(out[ref + i])
    if len(out) != expected_len:
        raise ValueError("LZF length mismatch")
    return bytes(out)
