"""Cross-instance fan-out over Redis sharded pub/sub (SPUBLISH/SSUBSCRIBE), on a plain Redis 7
or a Redis Cluster.

Each message goes to one channel, that of those who need it (chat.bus.interest): an instance
subscribes only to the channels of its own sockets, so it receives its share of the traffic,
not all of it. The instance that publishes a message delivers it to its own sockets at once,
in publishing order, and skips its echo from Redis by the origin each payload starts with.

A payload is the publisher's origin (12 bytes) and the JSON message. One subscriber connection
per Redis node (chat.bus.shard); when one drops it reconnects and resubscribes by itself;
messages published during the gap are not replayed live, but clients resume by seq from the
store, so no stored message is lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from prometheus_client import Counter
from redis.asyncio import ConnectionPool, Redis
from redis.asyncio.client import PubSub
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ResponseError, SlotNotCoveredError

from chat.batching import Batcher
from chat.bus.interest import Interest
from chat.bus.messages import (
    BusMessage,
    BusMessageError,
    ToAgents,
    ToConversation,
    ToUser,
    decode,
    encode,
)
from chat.bus.shard import Shard
from chat.errors import log_failure
from chat.redis_client import send_batch

log = logging.getLogger(__name__)

PUBLISHED = Counter("chat_bus_published_messages_total", "Payloads this process published on the bus")
PUBLISHED_BYTES = Counter("chat_bus_published_bytes_total", "Bytes this process published on the bus")
RECEIVED = Counter("chat_bus_received_messages_total",
                   "Payloads this process received from the bus (its own echoes included)")
RECEIVED_BYTES = Counter("chat_bus_received_bytes_total", "Bytes this process received from the bus")
OWN_ECHOES = Counter("chat_bus_own_echoes_total", "Payloads received back from the bus that this process published "
                     "(delivered when published; skipped undecoded)")

Receiver = Callable[[BusMessage], object]
Payload = tuple[str, bytes]  # (channel, payload)


@dataclass(frozen=True, slots=True)
class Scripted:
    """A Lua script that publishes a message itself when it decides to (`publish_scripted`)."""

    message: BusMessage
    script: str
    keys: Sequence[str]
    args: Sequence[Any]  # the channel and the payload follow them


@dataclass(frozen=True, slots=True)
class Read:
    """A read that runs after everything published and every script queued before it (`read_in_order`)."""

    command: tuple[Any, ...]


Outgoing = Payload | Scripted | Read
ORIGIN_BYTES = 12
# The longest a command waits for Redis to confirm a new subscription before reading what it replays
# (a Redis that stopped answering on a connection not yet seen as lost); when the subscriber's
# connection is known to be down it does not wait at all. Either way it then answers from the store,
# and its client resumes by seq after the gap, as after any lost subscriber connection.
LISTEN_WAIT_S = 1.0


class Bus:
    """Publish typed messages (delivered here at once); hand the other instances' to the receiver."""

    def __init__(self, redis: Redis | RedisCluster, receive: Receiver, interest: Interest) -> None:
        self._redis = redis
        self._receive = receive
        self.interest = interest
        self.origin = uuid.uuid4().hex[:ORIGIN_BYTES].encode()
        self.subscribed = asyncio.Event()
        self.received = 0  # payloads from Redis, own echoes included (per instance; the counters are per process)
        self._shards: dict[str, Shard] = {}
        self._pools: list[ConnectionPool] = []
        self._started = False
        self._state = asyncio.Event()
        self._outbox: Batcher[Outgoing, Any] = Batcher(self._send, name="bus-publisher")
        interest.on_change(self._on_interest)
        interest.on_listening(self.listening)

    @property
    def reconnects(self) -> int:
        """How often a subscriber connection was lost."""
        return sum(shard.reconnects for shard in self._shards.values())

    async def publish(self, message: BusMessage) -> None:
        """Deliver to this instance's sockets now, and send to the instances that listen. Messages
        published while others are on their way go together in one pipeline, in order."""
        self._deliver(message)
        await self._outbox.submit(self._payload(message))

    def publish_soon(self, message: BusMessage) -> None:
        """`publish` without waiting for Redis: delivered to this instance's sockets now, sent to the
        other instances in order with everything else published; a failure is logged (the messages
        are stored, and the clients there resume by seq)."""
        self._deliver(message)
        sent = self._outbox.submit_nowait(self._payload(message))
        sent.add_done_callback(_log_unsent)

    async def publish_scripted(self, message: BusMessage, script: str, keys: Sequence[str],
                               args: Sequence[Any], *, deliver_first: bool = False) -> Any:
        """Run `script` (KEYS `keys`, ARGV `args` then the message's channel and payload), which
        SPUBLISHes the payload itself when it decides to, so a write and the publish that announces it
        are one atomic step; the script's keys must share the channel's cluster slot. Its result is
        returned. The message is delivered to this instance's sockets after the script ran, when its
        result is true (in the order of the publisher's queue, which the scripted and the plain messages
        share); or, with `deliver_first`, at once, before the script runs, whatever it then decides: for
        a caller that knows it will publish unless another instance intervened, and whose readers
        tolerate that (an `ai.delta` before the `ai.interrupted` that ends its turn)."""
        if deliver_first:
            self._deliver(message)
        result = await self._outbox.submit(Scripted(message, script, keys, args))
        if result and not deliver_first:
            self._deliver(message)
        return result

    async def read_in_order(self, *command: Any) -> Any:
        """Run a Redis read command after every publish and script queued before it (they share one
        queue, sent in order): it sees the writes of every script a `deliver_first` delivered here."""
        return await self._outbox.submit(Read(command))

    def _payload(self, message: BusMessage) -> Payload:
        """The message's channel, and its bytes as published: this instance's origin, then the JSON."""
        return channel_of(self.interest, message), self.origin + encode(message)

    def _deliver(self, message: BusMessage) -> None:
        try:
            self._receive(message)
        except Exception:  # a bad local delivery must not stop the others
            log.exception("could not deliver a bus message here")

    async def _send(self, batch: list[tuple[Outgoing, asyncio.Future[Any]]]) -> None:
        commands: list[tuple[Any, ...]] = []
        published = sent = 0
        for item, _ in batch:
            if isinstance(item, Read):
                commands.append(item.command)
                continue
            if isinstance(item, Scripted):
                channel, payload = self._payload(item.message)
                # EVAL, not EVALSHA: redis-py's cluster pipeline refuses EVALSHA
                commands.append(("EVAL", item.script, len(item.keys), *item.keys, *item.args, channel, payload))
            else:
                channel, payload = item
                commands.append(("SPUBLISH", channel, payload))
            published += 1
            sent += len(payload)
        results = await send_batch(self._redis, commands)
        PUBLISHED.inc(published)
        PUBLISHED_BYTES.inc(sent)
        for (_, future), result in zip(batch, results, strict=True):
            if future.done():
                continue
            if isinstance(result, ResponseError):
                future.set_exception(result)
            else:
                future.set_result(result)

    async def start(self, wait_s: float = 3.0) -> None:
        """Subscribe to what is wanted; wait a little for it (the service still starts with Redis
        down, reporting it in /health, and the subscribers keep trying)."""
        self._started = True
        if isinstance(self._redis, RedisCluster):
            await self._redis.initialize()  # the slot map routes each channel to its node
        for channel in list(self.interest.wanted):
            self._on_interest(channel, True)
        try:
            await asyncio.wait_for(self.subscribed.wait(), timeout=wait_s)
        except TimeoutError:
            log.warning("bus not subscribed yet: Redis does not answer; retrying in the background")

    async def stop(self) -> None:
        """Send what is still queued, then close the subscriber connections."""
        await self._outbox.drain()
        for shard in self._shards.values():
            await shard.stop()
        for pool in self._pools:
            await pool.disconnect()

    async def wait_resubscribed(self, reconnects: int) -> None:
        """Wait until every subscriber is subscribed after at least this many reconnects (tests)."""
        while not (self.reconnects >= reconnects and self.subscribed.is_set()):
            await self._state.wait()

    async def until_lost(self) -> None:
        """Return once a subscriber connection is lost (at once while one is down)."""
        while self.subscribed.is_set():
            await self._state.wait()

    async def settled(self) -> None:
        """Wait until Redis confirmed every subscription and unsubscription asked so far (tests,
        and a command that must hear a conversation's next event)."""
        while not all(shard.settled for shard in self._shards.values()):
            await self._state.wait()

    async def listening(self, channel: str) -> None:
        """Return once Redis confirmed this instance's subscription to a wanted channel, so what is
        published on it from now on arrives here: at once when it already did (the usual case: a second
        tab) or when its subscriber is down, else after at most LISTEN_WAIT_S."""
        if not self._started or channel not in self.interest.wanted:
            return
        shard = self._shard_of(channel)
        if shard.listening(channel):
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(LISTEN_WAIT_S):
                await shard.listen(channel)

    def _state_changed(self) -> None:
        if all(shard.ready for shard in self._shards.values()):
            self.subscribed.set()
        else:
            self.subscribed.clear()
        self._state.set()
        self._state = asyncio.Event()

    def _on_interest(self, channel: str, wanted: bool) -> None:
        if self._started:
            self._shard_of(channel).mark(channel, wanted)

    def _node_of(self, channel: str) -> str:
        return _node(self._redis, channel).name if isinstance(self._redis, RedisCluster) else "redis"

    def _shard_of(self, channel: str) -> Shard:
        name = self._node_of(channel)
        shard = self._shards.get(name)
        if shard is None:
            shard = self._shards[name] = Shard(name, self._pubsub_opener(channel), lambda: self._wanted_on(name),
                                               self._hand_over, self._state_changed)
            shard.start()
            self._state_changed()
        return shard

    def _wanted_on(self, name: str) -> list[str]:
        """What a node's subscriber should hold now; a channel whose slot moved to another node
        since is marked on that node's subscriber (failover, resharding)."""
        mine = []
        for channel in list(self.interest.wanted):
            if self._node_of(channel) == name:
                mine.append(channel)
            else:
                self._shard_of(channel).mark(channel, True)
        return mine

    def _pubsub_opener(self, channel: str) -> Callable[[], PubSub]:
        if not isinstance(self._redis, RedisCluster):
            return self._redis.pubsub
        node = _node(self._redis, channel)
        # a pool of its own without retries: a dropped subscription is seen, counted and resubscribed here
        pool = ConnectionPool(connection_class=node.connection_class,
                              **{**node.connection_kwargs, "retry": Retry(NoBackoff(), 0)})
        self._pools.append(pool)
        return lambda: PubSub(pool)

    def _hand_over(self, data: bytes) -> None:
        self.received += 1
        RECEIVED.inc()
        RECEIVED_BYTES.inc(len(data))
        if data.startswith(self.origin):
            OWN_ECHOES.inc()
            return  # delivered here when it was published
        try:
            self._receive(decode(memoryview(data)[ORIGIN_BYTES:]))
        except BusMessageError as exc:
            log.warning("ignored a bus message: %s", exc)
        except Exception:  # one bad message must not stop the listener
            log.exception("could not deliver a bus message")


def _log_unsent(sent: asyncio.Future[Any]) -> None:
    if not sent.cancelled() and (exc := sent.exception()) is not None:
        log_failure(log, exc, "a bus message was not sent to the other instances")


def channel_of(interest: Interest, message: BusMessage) -> str:
    """The channel a message goes to: its conversation's, its agent's, the agents', or the presence
    channel every instance listens to (presence and account changes)."""
    if isinstance(message, ToConversation):
        return interest.conversation(message.conversation_id)
    if isinstance(message, ToUser):
        return interest.user(message.user_id)
    if isinstance(message, ToAgents):
        return interest.agents
    return interest.presence


async def publish_from_outside(redis: Redis | RedisCluster, interest: Interest, message: BusMessage) -> None:
    """Publish from a process that runs no bus (the CLI): every instance that listens receives it."""
    origin = uuid.uuid4().hex[:ORIGIN_BYTES].encode()
    await redis.spublish(channel_of(interest, message), origin + encode(message))


def _node(cluster: RedisCluster, channel: str) -> ClusterNode:
    """The master that serves the channel's slot."""
    node = cluster.get_node_from_key(channel)
    if node is None:
        raise SlotNotCoveredError(f"no node serves the slot of {channel!r}")
    return node


__all__ = ["Bus", "Read", "Receiver", "Scripted", "channel_of", "publish_from_outside"]
