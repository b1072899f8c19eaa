"""The gauges an operator runs a desk on: sockets open by role (this instance's hub), agents online
(the roster), conversations waiting by team with the oldest wait and the webhook backlog (the SQL
rows), read when
/metrics is scraped, at most every REFRESH_S."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable

from chat import metrics
from chat.auth import ROLES
from chat.errors import log_failure
from chat.hub import Hub
from chat.presence import Roster
from chat.store import Store
from states.clock import now_ms

log = logging.getLogger(__name__)

REFRESH_S = 5.0  # many scrapers (or one impatient one) cost one query per instance per this
READ_TIMEOUT_S = 2.0
NO_TEAM = "none"


class Desk:
    """Keeps the desk gauges of chat.metrics."""

    def __init__(self, store: Store, roster: Roster, hub: Hub, *, clock: Callable[[], int] = now_ms,
                 refresh_s: float = REFRESH_S) -> None:
        self.store = store
        self.roster = roster
        self.hub = hub
        self.clock = clock
        self.refresh_s = refresh_s
        self._read_at: float | None = None
        self._teams: set[str] = set()  # every team seen waiting: shown at 0 once its queue empties

    async def refresh(self) -> None:
        """Read the deployment-wide figures unless they were read less than refresh_s ago; a database
        that fails keeps the last figures (logged; /health reports the database)."""
        loop = asyncio.get_running_loop()
        if self._read_at is not None and loop.time() - self._read_at < self.refresh_s:
            return
        self._read_at = loop.time()
        # counted from the hub, which every session joins and leaves whatever else fails
        sessions = Counter(peer.identity.role for peer in self.hub.peers.values())
        for role in ROLES:
            metrics.WS_SESSIONS.labels(role).set(sessions[role])
        metrics.AGENTS_ONLINE.set(len(self.roster))
        try:
            waiting = await asyncio.wait_for(self.store.conversations.waiting_by_team(), READ_TIMEOUT_S)
            backlog = await asyncio.wait_for(self.store.webhooks.backlog(), READ_TIMEOUT_S)
        except Exception as exc:  # noqa: BLE001 - a scrape never fails for it
            log_failure(log, exc, "the waiting conversations could not be read for /metrics")
            return
        metrics.WEBHOOK_BACKLOG.set(backlog)
        now = self.clock()
        by_team = {team or NO_TEAM: figures for team, figures in waiting.items()}
        self._teams |= by_team.keys()
        for team in self._teams:
            count, oldest_ms = by_team.get(team, (0, 0))
            metrics.CONVERSATIONS_WAITING.labels(team).set(count)
            metrics.OLDEST_WAIT.labels(team).set(max(now - oldest_ms, 0) / 1000 if count and oldest_ms else 0)
