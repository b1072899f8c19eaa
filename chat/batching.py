"""One queue drained by one task, in batches: what arrives while a batch is being handled waits and
goes together in the next one. No timer: with no load an item is handled at once, under load many
share one round trip. The group commit of messages and the pipelined bus publishing both use it.

An item submitted with `linger` may wait for company: while the queue holds only such items, its batch
goes `linger_s` after the first of them came (or at once when any other item is submitted, which takes
them along, in order). For writes nobody waits on item by item (the bus's AI deltas, delivered here
before they are sent): a few to a round trip instead of one each."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")

Batch = list[tuple[T, "asyncio.Future[R]"]]


class Batcher(Generic[T, R]):
    """`await submit(item)` returns what `handle` set on the item's future; `handle` gets the whole
    batch in submission order and must resolve every future it can (one that raises fails the rest)."""

    def __init__(self, handle: Callable[[list[tuple[T, asyncio.Future[R]]]], Awaitable[None]], *, name: str,
                 max_batch: int | None = None, linger_s: float = 0.0) -> None:
        if linger_s and max_batch is not None:
            raise ValueError("a batcher lingers only when it takes the whole queue at once")
        self._handle = handle
        self._name = name
        self._max = max_batch
        self._linger_s = linger_s
        self._queue: list[tuple[T, asyncio.Future[R]]] = []
        self._urgent = 0  # queued items that did not come with `linger`
        self._wake: asyncio.Future[None] | None = None  # set while lingering: an urgent item ends it
        self._task: asyncio.Task[None] | None = None

    async def submit(self, item: T) -> R:
        """Queue the item; its result once its batch is handled."""
        return await self.submit_nowait(item)

    def submit_nowait(self, item: T, *, linger: bool = False) -> asyncio.Future[R]:
        """Queue the item; the future of its result (handled in order with everything submitted).
        `linger`: it may wait up to the batcher's `linger_s` for others to go with it."""
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._queue.append((item, future))
        if not linger and self._linger_s:
            self._urgent += 1
            if self._wake is not None and not self._wake.done():
                self._wake.set_result(None)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name=self._name)
        return future

    async def drain(self) -> None:
        """Wait until everything queued has been handled."""
        if self._task is not None and not self._task.done():
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        while self._queue:
            if self._linger_s and not self._urgent:
                await self._linger()
            cut = len(self._queue) if self._max is None else self._max
            batch, self._queue = self._queue[:cut], self._queue[cut:]
            self._urgent = 0  # (counted only when lingering, which takes the whole queue)
            try:
                await self._handle(batch)
            except BaseException as exc:  # never leave a submitter waiting forever
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                if isinstance(exc, asyncio.CancelledError):
                    raise

    async def _linger(self) -> None:
        """Wait `linger_s`, or until an item that does not linger is submitted."""
        loop = asyncio.get_running_loop()
        self._wake = wake = loop.create_future()
        timer = loop.call_later(self._linger_s, _wake_up, wake)
        try:
            await wake
        finally:
            timer.cancel()
            self._wake = None


def _wake_up(wake: asyncio.Future[None]) -> None:
    if not wake.done():
        wake.set_result(None)
