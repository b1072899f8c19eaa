"""Deactivation reaches everywhere (PROTOCOL 2.1): REST 401, no new socket, open sockets closed with
4403 on every instance (through the bus, or by each instance's own look when the message is lost)."""

from __future__ import annotations

from chat import keys
from chat.revocation import CLOSE_DEACTIVATED, ActiveUsers, announce_deactivated
from chat.store.staff import Staff

WITHIN_S = 5.0  # PROTOCOL 2.1: a deactivation takes effect everywhere within 5 s


async def set_active(h, user_id: str, active: bool) -> None:
    store = h.app[keys.STORE]
    await store.db.execute(f"UPDATE {store.db.tables.users} SET active = %s WHERE id = %s", (int(active), user_id))


async def connected(h, user_id: str, role: str = "agent"):
    """A socket whose session joined the hub (the read loop answers only after the auth phase)."""
    ws = await h.connect(user_id, role)
    assert (await ws.request("ping"))["type"] == "pong"
    return ws


async def rest_status(h, user_id: str, role: str = "agent") -> int:
    headers = {"Authorization": f"Bearer {h.token(user_id, role)}"}
    return (await h.client.get("/api/v1/conversations", headers=headers)).status


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def test_the_active_check_is_cached_for_at_most_its_ttl(store):
    staff = Staff(store.db)
    await staff.remember("agent-c", "agent", None)
    clock = Clock()
    active = ActiveUsers(staff, ttl_s=2.0, clock=clock)
    assert await active.check("agent-c") is True
    await store.db.execute(f"UPDATE {store.db.tables.users} SET active = 0 WHERE id = %s", ("agent-c",))
    clock.now += 1.9
    assert await active.check("agent-c") is True  # still the cached answer
    clock.now += 0.2
    assert await active.check("agent-c") is False
    assert await active.check("nobody-known") is True  # a token holder unknown to `users` (a customer)


async def test_inactive_among_finds_only_the_deactivated(store):
    staff = Staff(store.db)
    for user in ("s-1", "s-2", "s-3"):
        await staff.remember(user, "agent", None)
    await store.db.execute(f"UPDATE {store.db.tables.users} SET active = 0 WHERE id IN (%s, %s)", ("s-1", "s-3"))
    assert await staff.inactive_among(["s-1", "s-2", "s-3", "unknown"]) == {"s-1", "s-3"}
    assert await staff.inactive_among([]) == set()


async def test_deactivation_refuses_rest_and_closes_the_socket_here(harness):
    ws = await connected(harness, "agent-d")
    assert await rest_status(harness, "agent-d") == 200
    await set_active(harness, "agent-d", False)
    await harness.app[keys.REVOCATION].deactivated("agent-d")
    assert await ws.closed(timeout=WITHIN_S) == CLOSE_DEACTIVATED
    response = await harness.client.get("/api/v1/conversations",
                                         headers={"Authorization": f"Bearer {harness.token('agent-d', 'agent')}"})
    assert response.status == 401
    assert (await response.json())["error"]["code"] == "unauthenticated"


async def test_a_deactivated_user_cannot_open_a_socket(harness):
    ws = await connected(harness, "agent-e")
    await ws.close()
    await set_active(harness, "agent-e", False)
    harness.app[keys.ACCOUNTS].active.forget("agent-e")
    ws = await harness.connect()
    reply = await ws.request("auth", token=harness.token("agent-e", "agent"))
    assert reply["type"] == "error" and reply["code"] == "forbidden"
    assert await ws.closed() == CLOSE_DEACTIVATED
    await set_active(harness, "agent-e", True)
    harness.app[keys.ACCOUNTS].active.forget("agent-e")
    again = await harness.connect()
    assert (await again.ok("auth", token=harness.token("agent-e", "agent")))["user_id"] == "agent-e"


async def test_deactivation_closes_a_socket_on_another_instance(harness_factory, mysql_database_url):
    a = await harness_factory(database_url=mysql_database_url)
    b = await harness_factory(database_url=mysql_database_url)
    on_b = await connected(b, "agent-f")
    other = await connected(b, "agent-g")
    await set_active(a, "agent-f", False)
    await a.app[keys.REVOCATION].deactivated("agent-f")
    assert await on_b.closed(timeout=WITHIN_S) == CLOSE_DEACTIVATED
    assert await rest_status(b, "agent-f") == 401  # b's cached answer was dropped by the message
    assert (await other.request("ping"))["type"] == "pong"  # the other agent's socket stays open


async def test_the_cli_announcement_closes_sockets_on_running_instances(harness):
    ws = await connected(harness, "agent-h")
    await set_active(harness, "agent-h", False)
    assert await announce_deactivated(harness.settings, "agent-h") is True
    assert await ws.closed(timeout=WITHIN_S) == CLOSE_DEACTIVATED


async def test_the_sweep_closes_sockets_whose_message_was_lost(harness):
    ws = await connected(harness, "agent-i")
    customer = await connected(harness, "cust-i", "customer")
    await set_active(harness, "agent-i", False)  # no announcement: the bus message is lost
    await harness.app[keys.ACCOUNTS].sweep()
    assert await ws.closed(timeout=WITHIN_S) == CLOSE_DEACTIVATED
    assert not customer.ws.closed


async def test_announcing_without_a_shared_redis_says_so(make_settings):
    assert await announce_deactivated(make_settings(embedded=True), "agent-j") is False
