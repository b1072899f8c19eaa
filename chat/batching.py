"""One queue drained by one task, in batches: what arrives while a batch is being handled waits and
goes together in the next one. No timer: with no load an item is handled at once, under load many
share one round trip. The group commit of messages and the pipelined bus publishing both use it."""

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
                 max_batch: int | None = None) -> None:
        self._handle = handle
        self._name = name
        self._max = max_batch
        self._queue: list[tuple[T, asyncio.Future[R]]] = []
        self._task: asyncio.Task[None] | None = None

    async def submit(self, item: T) -> R:
        """Queue the item; its result once its batch is handled."""
        return await self.submit_nowait(item)

    def submit_nowait(self, item: T) -> asyncio.Future[R]:
        """Queue the item; the future of its result (handled in order with everything submitted)."""
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._queue.append((item, future))
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name=self._name)
        return future

    async def drain(self) -> None:
        """Wait until everything queued has been handled."""
        if self._task is not None and not self._task.done():
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        while self._queue:
            cut = len(self._queue) if self._max is None else self._max
            batch, self._queue = self._queue[:cut], self._queue[cut:]
            try:
                await self._handle(batch)
            except BaseException as exc:  # never leave a submitter waiting forever
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                if isinstance(exc, asyncio.CancelledError):
                    raise
