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

    async def publish(self, envelope: dict) -> None:
        """Send an envelope to every instance (this one included)."""
        await self._redis.publish(self.channel, orjson.dumps(envelope))

    async def start(self, wait_s: float = 3.0) -> None:
        """Start listening; wait a little for the subscription (the service still starts with
        Redis down, reporting it in /health, and the listener keeps trying)."""
        self._task = asyncio.create_task(self._listen(), name="bus-listener")
        try:
            await asyncio.wait_for(self.subscribed.wait(), timeout=wait_s)
        except asyncio.TimeoutError:
            log.warning("bus not subscribed yet: Redis does not answer; retrying in the background")

    async def stop(self) -> None:
        """Stop listening."""
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
