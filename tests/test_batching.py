"""The batcher: what arrives while a batch is handled goes in the next one; failures reach every submitter."""

import asyncio

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
