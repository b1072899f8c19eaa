"""The ids of the rows the service creates: conversations, messages, transition log entries, SLA marks,
CSAT ratings, labels, teams, canned responses, webhooks, their events and deliveries, and
refresh-token rows. (Ids that must not be guessed, such as token ids, bus origins, locks and visitor ids,
stay random: uuid4.)

Time-ordered UUIDs (version 7, RFC 9562: the Unix time in milliseconds, then 74 random bits), not
random ones (version 4): the new rows' keys land at one place in their index, after the time-ordered ids
made before them, instead of anywhere in it. On MariaDB/MySQL the primary key is the table itself
(InnoDB's clustered index), so with random keys every insert into a table larger than the buffer pool
reads and dirties a page of its own; on SQLite every insert dirties a leaf of the key's index (a WAL
frame per message). docs/performance.md measures both.

Written here, not taken from a package: `uuid6.uuid7()` moves its timestamp 1 ms ahead for each id made
within the same millisecond, so under thousands of messages a second its ids claim times hours ahead.
Python 3.14's `uuid.uuid7()` is no drop-in replacement either: it reads the real clock, not
`states.clock.now_ms` (which the tests simulate), and keeps a counter within each millisecond.
"""

from __future__ import annotations

import os

from states.clock import now_ms

_MS_BITS = 0xFFFF_FFFF_FFFF


def new_id() -> str:
    """A new UUID version 7, as the canonical 36-character string. Ids made in different milliseconds
    (of `now_ms`, the service's clock) sort by time; within one millisecond their order is random."""
    random = int.from_bytes(os.urandom(10), "big")  # 80 bits: 12 for rand_a, 62 for rand_b (6 unused)
    value = (now_ms() & _MS_BITS) << 80 | 0x7 << 76 | (random >> 68) << 64 \
        | 0b10 << 62 | (random & ((1 << 62) - 1))
    text = f"{value:032x}"  # str(uuid.UUID(int=value)) without the object: 2.1 -> 1.4 µs an id
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"
