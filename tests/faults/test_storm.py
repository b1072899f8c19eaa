"""A reconnect storm: every socket dropped at once reconnects and resumes by seq."""

from __future__ import annotations

import aiohttp

from tests.faults.load import Connect, Load, Plan, check
from tests.faults.servers import Services, TcpProxy

SOCKETS = 500


async def test_reconnect_storm(services: Services, http: aiohttp.ClientSession, sql: Connect) -> None:
    """SOCKETS customers, each with a conversation and answered messages; a proxy in front of the
    service resets every connection at once; all reconnect together, resume by seq and go on."""
    service = await services.start("svc")
    proxy = TcpProxy(service.port)
    await proxy.start()
    load = Load(http, [f"http://127.0.0.1:{proxy.port}"], Plan(customers=SOCKETS, messages=3, agents=0,
                                                               handoff_every=0), "storm")
    try:
        await load.open()
        await load.talk(range(2))
        dropped = proxy.drop_all()
        load.books.counts["dropped"] = dropped
        await load.talk(range(2, 3))
        await load.settle(sql, final_resume=False)
        check(load.books)
    finally:
        await load.close()
        await proxy.close()
