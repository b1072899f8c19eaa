"""Teams and members on MariaDB and SQLite."""

import uuid

import pytest

from chat.store import DuplicateKey, IntegrityError


def uid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


async def test_create_get_update_delete(store):
    name = uid("team")
    team = await store.teams.create(name, "first line")
    assert set(team) == {"id", "name", "description", "created_at", "updated_at"}
    assert await store.teams.exists(team["id"]) and not await store.teams.exists(uid("no"))
    assert await store.teams.get(team["id"]) == team
    assert team in await store.teams.all()
    with pytest.raises(DuplicateKey):
        await store.teams.create(name, None)
    assert await store.teams.update(team["id"], {}) == team  # nothing to change
    renamed = await store.teams.update(team["id"], {"name": name + "-2", "description": None})
    assert (renamed["name"], renamed["description"]) == (name + "-2", None)
    assert await store.teams.update(uid("no"), {"name": uid("x")}) is None
    assert await store.teams.delete(team["id"]) is True
    assert await store.teams.delete(team["id"]) is False
    assert await store.teams.get(team["id"]) is None


async def test_members(store):
    team = await store.teams.create(uid("team"), None)
    agent = uid("agent")
    await store.staff.remember(agent, "agent", "Ann")
    member = await store.teams.add_member(team["id"], agent)
    assert (member["team_id"], member["user_id"], member["name"], member["role"]) == (team["id"], agent, "Ann", "agent")
    assert await store.teams.members(team["id"]) == [member]
    with pytest.raises(DuplicateKey):
        await store.teams.add_member(team["id"], agent)
    with pytest.raises(IntegrityError):
        await store.teams.add_member(uid("no-team"), agent)
    # only an active agent or admin is added: the user is read by the INSERT itself
    assert await store.teams.add_member(team["id"], uid("nobody")) is None
    inactive = uid("agent")
    await store.staff.remember(inactive, "agent", None)
    await store.accounts.update(inactive, {"active": False})
    assert await store.teams.add_member(team["id"], inactive) is None
    assert not await store.teams.is_member(team["id"], inactive) and await store.teams.is_member(team["id"], agent)
    assert await store.teams.remove_member(team["id"], agent) is True
    assert await store.teams.remove_member(team["id"], agent) is False
    await store.teams.add_member(team["id"], agent)
    await store.teams.delete(team["id"])  # memberships go with the team
    assert await store.staff.teams_of(agent) == []
