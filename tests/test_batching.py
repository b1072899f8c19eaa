"""The batcher: what arrives while a batch is handled goes in the next one; failures reach every submitter."""

import asyncio

import pytest

from chat.batching import Batcher


async def test_items_queued_meanwhile_go_together_in_order():
    seen: list[list[int]] = []
    gate = asyncio.Event()

    async def handle(batch):
        seen.append([item for item, _ in batch])
        if len(seen) == 1:
            await gate.wait()
        for item, future in batch:
            future.set_result(item * 10)

    batcher: Batcher[int, int] = Batcher(handle, name="test")
    first = asyncio.create_task(batcher.submit(1))
    await asyncio.sleep(0)  # let the drainer take the first batch
    rest = [asyncio.create_task(batcher.submit(i)) for i in (2, 3, 4)]
    await asyncio.sleep(0)
    gate.set()
    assert await first == 10 and [await t for t in rest] == [20, 30, 40]
    assert seen == [[1], [2, 3, 4]]


async def test_a_failing_batch_fails_its_submitters_and_the_next_batch_still_runs():
    calls = 0

    async def handle(batch):
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ConnectionError("down")
        for item, future in batch:
            future.set_result(item)

    batcher: Batcher[str, str] = Batcher(handle, name="test", max_batch=2)
    results = await asyncio.gather(*(batcher.submit(x) for x in "abc"), return_exceptions=True)
    assert [type(r) for r in results[:2]] == [ConnectionError, ConnectionError] and results[2] == "c"
    await batcher.drain()
    assert calls == 2


def _recording(seen: list[list[int]]):
    async def handle(batch):
        seen.append([item for item, _ in batch])
        for item, future in batch:
            future.set_result(item)

    return handle


async def test_lingering_items_wait_for_company_until_an_item_that_does_not_linger_takes_them_along():
    seen: list[list[int]] = []
    batcher: Batcher[int, int] = Batcher(_recording(seen), name="test", linger_s=3600)
    lingering = [batcher.submit_nowait(i, linger=True) for i in (1, 2)]
    for _ in range(5):
        await asyncio.sleep(0)  # the drainer runs, and waits
    assert seen == [] and not any(f.done() for f in lingering)
    assert await batcher.submit(3) == 3  # no linger: goes at once, the waiting ones first
    assert seen == [[1, 2, 3]] and [f.result() for f in lingering] == [1, 2]


async def test_lingering_items_go_alone_once_their_time_is_up():
    seen: list[list[int]] = []
    batcher: Batcher[int, int] = Batcher(_recording(seen), name="test", linger_s=0.02)
    assert await asyncio.gather(*(batcher.submit_nowait(i, linger=True) for i in (1, 2, 3))) == [1, 2, 3]
    assert seen == [[1, 2, 3]]  # nothing else came: they went together when the time was up


async def test_without_linger_an_item_goes_at_once():
    seen: list[list[int]] = []
    batcher: Batcher[int, int] = Batcher(_recording(seen), name="test")
    future = batcher.submit_nowait(1, linger=True)  # a batcher without linger_s sends it at once
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert future.done() and seen == [[1]]


def test_a_batcher_that_cuts_its_batches_cannot_linger():
    with pytest.raises(ValueError):
        Batcher(_recording([]), name="test", max_batch=10, linger_s=0.01)
