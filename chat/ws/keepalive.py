"""Every socket's timers in one task, in rounds every WS_HEARTBEAT_S / 2.

The heartbeat (PROTOCOL 2: a socket quiet for WS_HEARTBEAT_S is pinged, and dropped (1006) when
nothing came back within half of that), and the token expiry of the sessions whose `exp` comes
before the round after next (their precise timer is armed then). One timer per socket (aiohttp's
heartbeat, a `call_at` per session) costs about half a kilobyte each, idle or not, and aiohttp
re-arms its heartbeat on every frame received.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING

from chat.ws.connection import SEND_ERRORS

if TYPE_CHECKING:
    from chat.ws.connection import Connection

log = logging.getLogger(__name__)


class Keepalive:
    """The rounds over this process's sockets."""

    def __init__(self, heartbeat_s: float, sockets: set[Connection]) -> None:
        """`sockets`: the open ones (the app's set)."""
        self.heartbeat_s = heartbeat_s
        self.round_s = heartbeat_s / 2
        self._sockets = sockets
        self._late_pings: set[asyncio.Task[None]] = set()  # to peers that are behind (kept till sent)

    async def run(self) -> None:
        """Rounds until cancelled."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self.round_s)
            await self.round(loop.time())

    async def round(self, now: float) -> None:
        """Drop the sockets that did not answer the last round's ping, ping the quiet ones, and arm
        the expiry of the sessions that run out before the round after next."""
        arm_before = now + self.heartbeat_s
        for conn in tuple(self._sockets):
            if conn.closing:
                continue
            if conn.pinged_at is not None and conn.received_at < conn.pinged_at:
                log.info("websocket %s (%s) did not answer a ping: dropped", conn.id, conn.user_id)
                conn.drop()
                continue
            if conn.session is not None:
                conn.session.arm_expiry(before=arm_before)
            if now - conn.received_at >= self.heartbeat_s:
                conn.pinged_at = now
                if conn.behind():  # the send would wait until the peer catches up: not in this loop
                    task = asyncio.create_task(self._ping(conn))
                    self._late_pings.add(task)
                    task.add_done_callback(self._late_pings.discard)
                else:
                    await self._ping(conn)  # a control frame, written at once

    @staticmethod
    async def _ping(conn: Connection) -> None:
        with contextlib.suppress(*SEND_ERRORS):
            await conn.ws.ping()
