"""Service faults: SIGTERM and SIGKILL mid AI stream, under load and after the last message; one of
two instances killed."""

from __future__ import annotations

import asyncio
import signal

import aiohttp
import pytest

from tests.faults.load import Connect, Load, Plan, run_case
from tests.faults.servers import Services
from tests.faults.slow_ai import SlowAI

# when the fault lands: while customers still send (later messages start new turns), or once every
# message is acknowledged (the turns in flight are the last ones: only recovery answers them)
MOMENTS = {"mid-load": 0.35, "after-last-ack": 1.0}
SIGNALS = {"sigterm": signal.SIGTERM, "sigkill": signal.SIGKILL}


@pytest.mark.parametrize("when", [f"{sig}-{moment}" for sig in SIGNALS for moment in MOMENTS])
async def test_service_restart_mid_ai_stream(when: str, services: Services, slow_ai: SlowAI,
                                             http: aiohttp.ClientSession, sql: Connect) -> None:
    """The service gets the signal while AI replies stream, then starts again: every acked message
    stored once, every customer message in `ai` answered (turns recovered), nothing stuck."""
    service = await services.start("svc", AI_PROVIDER="openai", AI_BASE_URL=slow_ai.base_url, AI_MODEL="slow")
    sig, moment = when.split("-", 1)
    signum = SIGNALS[sig]
    plan = Plan(customers=10, messages=6, agents=1, handoff_every=0, break_at=MOMENTS[moment])
    load = Load(http, [service.url], plan, f"svc-{when}")

    async def fault() -> None:
        await slow_ai.streaming.wait()
        await asyncio.to_thread(service.process.signal, signum)
        load.books.counts["streams_cut"] = slow_ai.started - slow_ai.finished
        await asyncio.to_thread(service.start)

    await run_case(load, fault, sql)


@pytest.mark.parametrize("moment", MOMENTS)
async def test_one_of_two_instances_killed(moment: str, services: Services, slow_ai: SlowAI,
                                           http: aiohttp.ClientSession, sql: Connect) -> None:
    """Customers and agents spread over two instances; one is SIGKILLed mid AI stream and stays
    down: its clients move to the other, which recovers the turns and keeps routing."""
    env = {"AI_PROVIDER": "openai", "AI_BASE_URL": slow_ai.base_url, "AI_MODEL": "slow"}
    first, second = await services.start("svc-a", **env), await services.start("svc-b", **env)
    plan = Plan(customers=12, messages=6, agents=2, break_at=MOMENTS[moment])
    load = Load(http, [first.url, second.url], plan, f"two-instances-{moment}")

    async def fault() -> None:
        await slow_ai.streaming.wait()
        await asyncio.to_thread(first.process.kill)
        load.books.counts["streams_cut"] = slow_ai.started - slow_ai.finished

    await run_case(load, fault, sql)
