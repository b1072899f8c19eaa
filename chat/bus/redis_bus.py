"""Cross-instance fan-out over Redis pub/sub: one subscriber connection per instance.

Every message is published to one channel; each instance's listener decodes it and hands it
to its receiver (the app wires the hub and presence). When the subscriber connection drops,
the listener reconnects and resubscribes by itself; messages published during the gap are not
replayed live, but clients resume by seq from the store, so no stored message is lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable

from redis.asyncio import Redis
from redis.exceptions import RedisError

from chat.batching import Batcher
from chat.bus.messages import BusMessage, BusMessageError, decode, encode

log = logging.getLogger(__name__)

Receiver = Callable[[BusMessage], object]


class Bus:
    """Publish typed messages; listen and hand them to the receiver."""

    def __init__(self, redis: Redis, receive: Receiver, channel: str):
        self._redis = redis
        self._receive = receive
        self.channel = channel
        self._task: asyncio.Task[None] | None = None
        self.subscribed = asyncio.Event()
        self.reconnects = 0
        self._resubscribed = asyncio.Condition()
        self._outbox: Batcher[bytes, None] = Batcher(self._send, name="bus-publisher")

    async def publish(self, message: BusMessage) -> None:
        """Send a message to every instance (this one included). Messages published while
        others are on their way go together in one pipeline, in order."""
        await self._outbox.submit(encode(message))

    async def _send(self, batch: list[tuple[bytes, asyncio.Future[None]]]) -> None:
        if len(batch) == 1:
            await self._redis.publish(self.channel, batch[0][0])
        else:
            pipe = self._redis.pipeline(transaction=False)
            for payload, _ in batch:
                pipe.publish(self.channel, payload)
            await pipe.execute()
        for _, future in batch:
            if not future.done():
                future.set_result(None)

    async def start(self, wait_s: float = 3.0) -> None:
        """Start listening; wait a little for the subscription (the service still starts with
        Redis down, reporting it in /health, and the listener keeps trying)."""
        self._task = asyncio.create_task(self._listen(), name="bus-listener")
        try:
            await asyncio.wait_for(self.subscribed.wait(), timeout=wait_s)
        except TimeoutError:
            log.warning("bus not subscribed yet: Redis does not answer; retrying in the background")

    async def stop(self) -> None:
        """Send what is still queued, then stop listening."""
        await self._outbox.drain()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def wait_resubscribed(self, reconnects: int) -> None:
        """Wait until the listener is subscribed after at least this many reconnects (tests)."""
        async with self._resubscribed:
            await self._resubscribed.wait_for(lambda: self.reconnects >= reconnects and self.subscribed.is_set())

    def _hand_over(self, data: bytes) -> None:
        try:
            self._receive(decode(data))
        except BusMessageError as exc:
            log.warning("ignored a bus message: %s", exc)
        except Exception:  # one bad message must not stop the listener
            log.exception("could not deliver a bus message")

    async def _listen(self) -> None:
        backoff_s = 0.05
        while True:
            pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self.channel)
                self.subscribed.set()
                async with self._resubscribed:
                    self._resubscribed.notify_all()
                backoff_s = 0.05
                while True:
                    message = await pubsub.get_message(timeout=30.0)
                    if message is not None and message.get("type") == "message":
                        self._hand_over(message["data"])
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as exc:
                self.subscribed.clear()
                self.reconnects += 1
                log.warning("bus subscriber lost its connection (%s); reconnecting", type(exc).__name__)
                await asyncio.sleep(backoff_s * (1 + random.random()))
                backoff_s = min(backoff_s * 2, 2.0)
            finally:
                with contextlib.suppress(Exception):  # the connection is already gone
                    await pubsub.aclose()  # type: ignore[no-untyped-call]  # redis-py leaves PubSub.aclose unannotated
