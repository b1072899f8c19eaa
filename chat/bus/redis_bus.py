"""Cross-instance fan-out over Redis pub/sub: one subscriber connection per instance.

Every event is published to one channel; each instance's listener routes it to its own
sockets through the Hub. When the subscriber connection drops, the listener reconnects and
resubscribes by itself; events published during the gap are not replayed live, but clients
resume by seq from the store, so no stored message is lost.
"""

from __future__ import annotations

import asyncio
import logging
import random

import orjson
from redis.exceptions import RedisError

from chat.hub import Hub
from states import redis_keys

log = logging.getLogger(__name__)


class Bus:
    """Publish envelopes; listen and hand them to the local hub."""

    def __init__(self, redis, hub: Hub, channel: str = redis_keys.EVENTS_CHANNEL):
        self._redis = redis
        self.hub = hub
        self.channel = channel
        self._task: asyncio.Task | None = None
        self.subscribed = asyncio.Event()
        self.reconnects = 0
        self._outbox: list[tuple[bytes, asyncio.Future]] = []
        self._sender: asyncio.Task | None = None

    async def publish(self, envelope: dict) -> None:
        """Send an envelope to every instance (this one included). Envelopes published while
        others are on their way go together in one pipeline, in order."""
        future = asyncio.get_running_loop().create_future()
        self._outbox.append((orjson.dumps(envelope), future))
        if self._sender is None or self._sender.done():
            self._sender = asyncio.create_task(self._send(), name="bus-publisher")
        await future

    async def _send(self) -> None:
        while self._outbox:
            batch, self._outbox = self._outbox, []
            try:
                if len(batch) == 1:
                    await self._redis.publish(self.channel, batch[0][0])
                else:
                    pipe = self._redis.pipeline(transaction=False)
                    for payload, _ in batch:
                        pipe.publish(self.channel, payload)
                    await pipe.execute()
            except BaseException as exc:  # every waiting publisher learns of it
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                if isinstance(exc, asyncio.CancelledError):
                    raise
                continue
            for _, future in batch:
                if not future.done():
                    future.set_result(None)

    async def start(self, wait_s: float = 3.0) -> None:
        """Start listening; wait a little for the subscription (the service still starts with
        Redis down, reporting it in /health, and the listener keeps trying)."""
        self._task = asyncio.create_task(self._listen(), name="bus-listener")
        try:
            await asyncio.wait_for(self.subscribed.wait(), timeout=wait_s)
        except asyncio.TimeoutError:
            log.warning("bus not subscribed yet: Redis does not answer; retrying in the background")

    async def stop(self) -> None:
        """Send what is still queued, then stop listening."""
        if self._sender is not None and not self._sender.done():
            await asyncio.gather(self._sender, return_exceptions=True)
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass

    async def _listen(self) -> None:
        backoff_s = 0.05
        while True:
            pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self.channel)
                self.subscribed.set()
                backoff_s = 0.05
                while True:
                    message = await pubsub.get_message(timeout=30.0)
                    if message is None or message.get("type") != "message":
                        continue
                    try:
                        self.hub.deliver(orjson.loads(message["data"]))
                    except Exception:  # one bad envelope must not stop the listener
                        log.exception("could not deliver a bus envelope")
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as exc:
                self.subscribed.clear()
                self.reconnects += 1
                log.warning("bus subscriber lost its connection (%s); reconnecting", type(exc).__name__)
                await asyncio.sleep(backoff_s * (1 + random.random()))
                backoff_s = min(backoff_s * 2, 2.0)
            finally:
                try:
                    await pubsub.aclose()
                except Exception:  # the connection is already gone
                    pass
