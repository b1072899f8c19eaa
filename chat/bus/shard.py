"""One subscriber connection of the bus: the sharded channels (SSUBSCRIBE) one Redis node serves.

A plain Redis has one; a Redis Cluster one per master that serves a wanted channel (sharded
pub/sub delivers a channel's messages only on the node that owns its slot). The connection keeps
itself subscribed to what the bus wants of it: changes are sent as they come, and after a lost
connection it reconnects (with a growing backoff) and subscribes to every channel wanted at that
moment.

The connection is read and written directly (one reader task; commands are only written, their
confirmations arrive in the stream it reads), not through redis-py's PubSub, which reconnects and
resubscribes a failed connection by itself: here a lost connection ends the session, is counted,
and the next session starts from what is wanted then.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
from collections import defaultdict
from collections.abc import Callable, Iterable

from redis.asyncio.client import PubSub
from redis.asyncio.connection import AbstractConnection
from redis.crc import key_slot
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

log = logging.getLogger(__name__)

PING_S = 30.0  # an idle connection is checked this often; one silent for two checks is lost


def by_slot(channels: Iterable[str]) -> list[list[str]]:
    """The channels grouped by hash slot: one SSUBSCRIBE may only name channels of one slot."""
    groups: dict[int, list[str]] = defaultdict(list)
    for channel in channels:
        groups[key_slot(channel.encode())].append(channel)
    return list(groups.values())


async def _send(conn: AbstractConnection, *args: str) -> None:
    """Write a command on a connection the reader task reads: never a health check (a read) and
    never a reconnection behind the session's back."""
    if not conn.is_connected:
        raise RedisConnectionError("subscriber connection closed")
    await conn.send_command(*args, check_health=False)


class Shard:
    """One subscriber connection and the channels it should hold."""

    def __init__(self, name: str, open_pubsub: Callable[[], PubSub], wanted: Callable[[], Iterable[str]],
                 hand_over: Callable[[bytes], None], on_state: Callable[[], None]) -> None:
        self.name = name
        self._open = open_pubsub
        self._wanted = wanted
        self._hand_over = hand_over
        self._on_state = on_state
        self.ready = False  # connected, and Redis confirmed every channel wanted when it (re)connected
        self.down = False  # the last connection failed: no confirmation is coming until it is back
        self.reconnects = 0
        self.confirmed: set[str] = set()  # the channels Redis confirmed on this connection
        self._in_flight: dict[str, int] = {}  # channels with an (un)subscription sent and not answered yet
        self._listeners: dict[str, list[asyncio.Future[None]]] = {}
        self._awaiting: set[str] = set()  # of the channels subscribed at connect time, those not confirmed yet
        self._held: set[str] = set()
        self._pending: dict[str, bool] = {}
        self._changed = asyncio.Event()
        self._heard = True  # something arrived since the last PING
        self._check_at = 0.0  # loop time of the next liveness check (a change of interest does not put it off)
        self._stopping = False
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start the connection's task."""
        self._task = asyncio.create_task(self._run(), name=f"bus-shard-{self.name}")

    async def stop(self) -> None:
        """Close the connection."""
        self._stopping = True  # a cancellation can be lost (redis-py writes under wait_for): the loops check this too
        self._changed.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    @property
    def settled(self) -> bool:
        """Connected, and Redis confirmed every change asked of this connection so far."""
        return self.ready and not self._pending and self.confirmed == self._held

    def listening(self, channel: str) -> bool:
        """Redis confirmed the channel on this connection and no change of it is on its way: what is
        published on it from now on arrives here (its latest mark is a subscription: see Bus.listening)."""
        return channel in self.confirmed and channel not in self._in_flight

    async def listen(self, channel: str) -> None:
        """Return once the channel is listened to, or the connection failed (nothing to wait for then)."""
        if self.down or self.listening(channel):
            return
        waiter = asyncio.get_running_loop().create_future()
        self._listeners.setdefault(channel, []).append(waiter)
        try:
            await waiter
        finally:
            waiters = self._listeners.get(channel)
            if waiters is not None and waiter in waiters:
                waiters.remove(waiter)
                if not waiters:
                    del self._listeners[channel]

    def _wake(self, channels: Iterable[str]) -> None:
        for channel in channels:
            for waiter in self._listeners.pop(channel, ()):
                if not waiter.done():
                    waiter.set_result(None)

    def mark(self, channel: str, wanted: bool) -> None:
        """Subscribe to (or leave) the channel soon, in the order of the calls."""
        self._pending[channel] = wanted
        self._changed.set()

    async def _run(self) -> None:
        backoff_s = 0.05
        while not self._stopping:
            pubsub = self._open()
            try:
                await pubsub.connect()  # type: ignore[no-untyped-call]  # redis-py leaves it unannotated
                backoff_s = 0.05  # connected: a later loss starts again from the shortest wait
                await self._session(pubsub.connection)
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as exc:
                self.ready = False
                self.down = True
                self.confirmed.clear()
                self._in_flight.clear()
                self._wake(list(self._listeners))
                self.reconnects += 1
                self._on_state()
                log.warning("bus subscriber %s lost its connection (%s); reconnecting", self.name, type(exc).__name__)
                await asyncio.sleep(backoff_s * (1 + random.random()))
                backoff_s = min(backoff_s * 2, 2.0)
            finally:
                with contextlib.suppress(Exception):  # the connection is already gone
                    await pubsub.aclose()  # type: ignore[no-untyped-call]  # redis-py leaves PubSub.aclose unannotated

    async def _session(self, conn: AbstractConnection | None) -> None:
        """Subscribe to everything wanted, then read, and send changes, until the connection fails."""
        if conn is None:
            raise RedisConnectionError("no subscriber connection")
        self._pending.clear()
        self.confirmed.clear()
        self._in_flight.clear()
        self.down = False
        self._held = set(self._wanted())
        self._awaiting = set(self._held)
        await self._send_groups(conn, "SSUBSCRIBE", self._held)
        self._confirm()
        self._check_at = asyncio.get_running_loop().time() + PING_S
        reader = asyncio.create_task(self._read(conn), name=f"bus-reader-{self.name}")
        reader.add_done_callback(lambda _: self._changed.set())
        try:
            while True:
                await self._wait_or_ping(conn)
                if self._stopping:
                    return
                if reader.done():
                    reader.result()  # the connection's error
                    raise RedisConnectionError("subscriber connection closed")
                await self._apply(conn)
        finally:
            reader.cancel()
            # the embedded fakeredis reads under asyncio.wait_for, which on Python 3.11 can swallow the
            # cancellation: closing the connection ends the read whatever the client library does
            with contextlib.suppress(Exception):
                await conn.disconnect()
            with contextlib.suppress(asyncio.CancelledError, RedisError, OSError):
                await reader

    async def _wait_or_ping(self, conn: AbstractConnection) -> None:
        """Wait for a change; PING every PING_S, and give the connection up when a PING went unanswered. The
        checks keep their own schedule: sockets joining and leaving all the time do not put them off."""
        while True:
            try:
                async with asyncio.timeout_at(self._check_at):  # not wait_for: on 3.11 it can swallow a cancel
                    await self._changed.wait()
                self._changed.clear()
                return
            except TimeoutError:
                self._check_at = asyncio.get_running_loop().time() + PING_S
                if not self._heard:
                    raise RedisConnectionError(f"no answer to PING in {PING_S}s") from None
                self._heard = False
                await _send(conn, "PING")

    async def _apply(self, conn: AbstractConnection) -> None:
        pending, self._pending = self._pending, {}
        join = [c for c, wanted in pending.items() if wanted and c not in self._held]
        leave = [c for c, wanted in pending.items() if not wanted and c in self._held]
        self._held.update(join)
        self._held.difference_update(leave)
        # leaving first, so a channel left and joined in one batch is not missed
        await self._send_groups(conn, "SUNSUBSCRIBE", leave)
        await self._send_groups(conn, "SSUBSCRIBE", join)

    async def _send_groups(self, conn: AbstractConnection, command: str, channels: Iterable[str]) -> None:
        """Send the command for the channels, one per slot; each is in flight until Redis answers for it."""
        for group in by_slot(channels):
            for channel in group:
                self._in_flight[channel] = self._in_flight.get(channel, 0) + 1
            await _send(conn, command, *group)

    async def _read(self, conn: AbstractConnection) -> None:
        hand_over = self._hand_over
        while True:
            response = await conn.read_response(timeout=math.inf, push_request=True)
            self._heard = True
            if not isinstance(response, list):
                continue  # a PONG outside subscribed mode
            kind = response[0]
            if kind == b"smessage":
                hand_over(response[2])
            elif kind == b"ssubscribe":
                self._confirm(self._answered(response[1].decode()))
            elif kind == b"sunsubscribe":
                self.confirmed.discard(self._answered(response[1].decode()))
                self._on_state()

    def _answered(self, channel: str) -> str:
        left = self._in_flight.pop(channel, 1) - 1
        if left > 0:
            self._in_flight[channel] = left
        return channel

    def _confirm(self, channel: str | None = None) -> None:
        if channel is not None:
            self.confirmed.add(channel)
            self._awaiting.discard(channel)
            if channel not in self._in_flight:
                self._wake((channel,))
        if not self._awaiting:
            self.ready = True
        self._on_state()
