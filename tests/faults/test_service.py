"""Service faults: SIGTERM and SIGKILL under load and mid AI stream; one of two instances killed."""

from __future__ import annotations

import asyncio
import signal

import aiohttp
import pytest

from tests.faults.load import Connect, Load, Plan, check
from tests.faults.servers import Services
from tests.faults.slow_ai import SlowAI


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
async def test_service_restart_mid_ai_stream(signum: int, services: Services, slow_ai: SlowAI,
                                             http: aiohttp.ClientSession, sql: Connect) -> None:
    """The service gets the signal while AI replies stream, then starts again: every acked message
    stored once, every customer message in `ai` answered (turns recovered), nothing stuck."""
    service = await services.start("svc", AI_PROVIDER="openai", AI_BASE_URL=slow_ai.base_url, AI_MODEL="slow")
    plan = Plan(customers=10, messages=6, agents=1, handoff_every=0)
    load = Load(http, [service.url], plan, f"svc-{signal.Signals(signum).name.lower()}")

    async def fault() -> None:
        await slow_ai.streaming.wait()
        await asyncio.to_thread(service.process.signal, signum)
        load.books.counts["streams_cut"] = slow_ai.started - slow_ai.finished
        await asyncio.to_thread(service.start)

    try:
        check(await load.run(fault, sql))
    finally:
        await load.close()


async def test_one_of_two_instances_killed(services: Services, slow_ai: SlowAI, http: aiohttp.ClientSession,
                                           sql: Connect) -> None:
    """Customers and agents spread over two instances; one is SIGKILLed mid-load and mid AI stream and
    stays down: its clients move to the other, whose sweeps recover the turns and assignments."""
    env = {"AI_PROVIDER": "openai", "AI_BASE_URL": slow_ai.base_url, "AI_MODEL": "slow"}
    first, second = await services.start("svc-a", **env), await services.start("svc-b", **env)
    load = Load(http, [first.url, second.url], Plan(customers=12, messages=6, agents=2), "two-instances")

    async def fault() -> None:
        await slow_ai.streaming.wait()
        await asyncio.to_thread(first.process.kill)

    try:
        check(await load.run(fault, sql))
    finally:
        await load.close()
