"""Agents and admins as the operations know them: remembered in `users` so they can be named."""

from __future__ import annotations

from chat.auth import Identity
from chat.errors import NotFound
from chat.events import SessionOpened
from chat.store import Store


class Staff:
    """Remember staff members once per process; check the agents and teams a request names."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._known: set[str] = set()

    async def remember(self, identity: Identity) -> None:
        """Keep agents and admins in `users` so they can be named in assign and transfer."""
        if identity.is_agent and identity.user_id not in self._known:
            await self.store.staff.remember(identity.user_id, identity.role, identity.name)
            self._known.add(identity.user_id)

    async def on_session_opened(self, event: SessionOpened) -> None:
        """A staff socket authenticated."""
        await self.remember(event.identity)

    async def check_agent(self, agent_id: str) -> None:
        """not_found unless the agent is known."""
        if not await self.store.staff.agent_exists(agent_id):
            raise NotFound(f"agent {agent_id} not found")

    async def check_team(self, team_id: str | None, *, required: bool = False) -> None:
        """not_found unless the team exists (None: nothing to check, unless a team is required)."""
        if team_id is None and not required:
            return
        if team_id is None or not await self.store.teams.exists(team_id):
            raise NotFound(f"team {team_id} not found")
