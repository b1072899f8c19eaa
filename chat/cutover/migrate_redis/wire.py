"""The Redis side of the migration: RESP commands packed in batches, pipelined on a connection.

SCAN, MGET + PTTL reads and SET writes go out a whole batch per socket write; the replies
are read back in order later, so Redis works while Python converts the previous batch.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator
from typing import Any

import redis


def pack(*parts: bytes) -> bytes:
    """One command in RESP."""
    return b"*%d\r\n" % len(parts) + bulks(parts)


def bulks(parts: Iterable[bytes]) -> bytes:
    """Arguments as RESP bulk strings (a command is ``*count`` and its arguments' bulks)."""
    return b"".join([b"$%d\r\n%b\r\n" % (len(part), part) for part in parts])


# Every key's PTTL in one reply: reading a thousand one-integer replies costs more Python time
# than the conversion of the batch. A read-only script; the service's own saves need Lua too.
_PTTLS = b"local t = {} for i, k in ipairs(KEYS) do t[i] = redis.call('PTTL', k) end return t"


_SET_HEAD = b"*%d\r\n$3\r\nSET\r\n$%d\r\n%b\r\n$%d\r\n"


def set_commands(items: Iterable[tuple[bytes, bytes, int, int]], nx: bool = False) -> bytes:
    """``SET key value [PX pttl] [NX]`` for each ``(key, value, pttl, _)``, packed in one buffer.

    A source key without TTL (pttl < 0) gets no expiry. Each value is copied once, into the
    buffer (formatting a command around it and joining the commands would copy it twice).
    """
    parts: list[bytes] = []
    add = parts.extend
    nx_part = b"$2\r\nNX\r\n" if nx else b""
    for key, value, pttl, _ in items:
        if pttl >= 0:
            ttl = b"%d" % max(pttl, 1)  # PX 0 is refused; a key about to expire gets the shortest TTL
            tail = b"\r\n$2\r\nPX\r\n$%d\r\n%b\r\n" % (len(ttl), ttl)
            add((_SET_HEAD % (6 if nx else 5, len(key), key, len(value)), value, tail, nx_part))
        else:
            add((_SET_HEAD % (4 if nx else 3, len(key), key, len(value)), value, b"\r\n", nx_part))
    return b"".join(parts)


class Wire:
    """A dedicated connection for pipelines: a whole batch of commands goes out in one write.

    This is a pipeline without redis-py's Pipeline object, which spends more Python time per
    command than the server does. Replies are collected in the order the batches were sent,
    so the caller can put the next batch on the wire before reading the previous one's
    replies and keep Redis busy while Python converts. Only redis-py's public Connection API
    is used (make_connection, send_packed_command, read_response).
    """

    def __init__(self, client: redis.Redis) -> None:
        self._conn = client.connection_pool.make_connection()
        self._conn.connect()  # type: ignore[no-untyped-call]  # unannotated in redis-py
        self._pending: deque[int] = deque()

    def send(self, payload: bytes, count: int) -> None:
        """Write ``count`` packed commands without waiting for their replies."""
        self._conn.send_packed_command([payload])  # type: ignore[no-untyped-call]  # unannotated in redis-py
        self._pending.append(count)

    def collect(self) -> list[Any]:
        """The replies of the oldest batch sent; an error reply comes back as its exception."""
        count = self._pending.popleft()
        read = self._conn.read_response
        replies: list[Any] = []
        for _ in range(count):
            try:
                replies.append(read(disable_decoding=True))
            except redis.ResponseError as exc:
                replies.append(exc)
        return replies

    def call(self, payload: bytes, count: int) -> list[Any]:
        """Send and collect at once; only when nothing else is in flight."""
        assert not self._pending, "replies of an earlier batch are still unread"
        self.send(payload, count)
        return self.collect()

    def close(self) -> None:
        """Drop the connection (it never goes back to the pool)."""
        self._conn.disconnect()  # type: ignore[no-untyped-call]  # unannotated in redis-py


def send_read(wire: Wire, keys: list[bytes]) -> None:
    """Ask for every key's value and remaining TTL: MGET, then every PTTL in one script.

    Both commands end with the same keys: they are packed once.
    """
    n, packed_keys = len(keys), bulks(keys)
    mget = b"*%d\r\n$4\r\nMGET\r\n" % (n + 1)
    script = b"*%d\r\n" % (n + 3) + bulks((b"EVAL", _PTTLS, b"%d" % n))
    wire.send(b"".join((mget, packed_keys, script, packed_keys)), 2)


def collect_read(wire: Wire) -> list[tuple[bytes | None, int]]:
    """``(value, pttl)`` per key of the oldest ``send_read``.

    MGET answers nil both for a missing key and for one that is not a string; a PTTL other
    than -2 tells the second case apart.
    """
    values, ttls = wire.collect()
    for reply in (values, ttls):
        if isinstance(reply, redis.ResponseError):
            raise reply
    return list(zip(values, ttls, strict=True))


def key_types(client: redis.Redis, keys: list[bytes]) -> list[str]:
    """TYPE of each key (a rare question: the plain client will do)."""
    pipe = client.pipeline(transaction=False)
    for key in keys:
        pipe.type(key)
    return [r.decode() if isinstance(r, bytes) else str(r) for r in pipe.execute()]


def scan_fraction(cursor: int) -> float:
    """Share of the keyspace a SCAN has covered, estimated from its cursor.

    Redis walks its hash table in reverse-binary bucket order, so the cursor with its 64 bits
    reversed grows steadily from 0 to 2**64 whatever the table size.
    """
    return int(f"{cursor:064b}"[::-1], 2) / 2**64


def scan_batches(wire: Wire, pattern: str, batch: int) -> Iterator[tuple[list[bytes], float]]:
    """Keys matching ``pattern`` in batches of about ``batch``, with the share scanned so far.

    The next SCAN is sent before a batch is handed out, so Redis scans while Python converts;
    hence a wire of its own. SCAN may return a key twice (when the table is resized meanwhile):
    handling a key twice is harmless, the second time it is found already converted.
    """
    match, count = pattern.encode(), b"%d" % batch

    def ask(cursor: bytes) -> None:
        wire.send(pack(b"SCAN", cursor, b"MATCH", match, b"COUNT", count), 1)

    ask(b"0")
    pending: list[bytes] = []
    while True:
        reply = wire.collect()[0]
        if isinstance(reply, redis.ResponseError):
            raise reply
        cursor, keys = reply
        done = cursor == b"0"
        if not done:
            ask(cursor)
        pending.extend(keys)
        if done:
            break
        if len(pending) >= batch:
            yield pending, scan_fraction(int(cursor))
            pending = []
    if pending:
        yield pending, 1.0
