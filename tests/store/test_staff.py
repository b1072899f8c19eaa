"""Users on MariaDB and SQLite: who the service has seen, which of them are agents."""

import uuid

from chat.store.staff import StaffMember


def uid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


async def test_remember_inserts_then_refreshes(store):
    agent = uid("agent")
    await store.staff.remember(agent, "agent", "Ann")
    await store.staff.remember(agent, "admin", None)  # a missing name keeps the known one
    row = await store.db.fetchone(f"SELECT role, name FROM {store.db.tables.users} WHERE id = %s", (agent,))
    assert tuple(row) == ("admin", "Ann")


async def test_agents_and_staff(store):
    agent, customer = uid("agent"), uid("cust")
    await store.staff.remember(agent, "agent", None)
    await store.staff.remember(customer, "customer", None)
    assert await store.staff.agent_exists(agent) is True
    assert await store.staff.agent_exists(customer) is False
    assert await store.staff.agent_exists(uid("nobody")) is False
    staff = await store.staff.list_staff()
    assert StaffMember(agent, "agent", True, None) in staff
    assert customer not in [member.id for member in staff]
    assert [member.id for member in staff] == sorted(member.id for member in staff)


async def test_teams_and_capacity_of_a_user(store):
    agent = uid("agent")
    await store.staff.remember(agent, "agent", None)
    assert await store.staff.max_chats_of(agent) is None
    await store.db.execute(f"UPDATE {store.db.tables.users} SET max_chats = 3 WHERE id = %s", (agent,))
    assert await store.staff.max_chats_of(agent) == 3
    team = await store.teams.create(uid("team"), None)
    await store.teams.add_member(team["id"], agent)
    assert await store.staff.teams_of(agent) == [team["id"]]
